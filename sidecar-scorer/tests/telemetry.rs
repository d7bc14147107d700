//! Telemetry beyond counts: sampled requests carry the features and score the filter
//! read from the bodies; and whatever the scorer acknowledged survives a kill -9.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use hyper::Method;
use outrider_harness::client::HttpClient;
use outrider_harness::scorer::TELEMETRY_TOKEN;
use outrider_protocol::{ClassCounts, LATENCY_SLOTS, TelemetryBatch, VariantCounts};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_carry_features_and_scores() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "samples").await;
    create_rollout(&scorer, 50.0, 50.0).await;
    let mut config = linked_config(50.0, 50.0, 1_000, 300);
    config["telemetry"] = json!({
        "sample_rate": 1.0,
        "features": {"amount": "/inputs/0/data/0", "hour": "/inputs/0/data/1"},
        "score": "/outputs/0/data/0",
        "max_body_bytes": 2048,
        "max_samples_per_batch": 1000
    });
    let rollout = envoy_linked(&scorer, config, 2).await;
    let client = HttpClient::new();
    let url = format!("{}/v2/models/fraud/infer", rollout.url);

    let n = 40;
    let mut sent = HashMap::new();
    for i in 0..n {
        let key = format!("sampled-{i}");
        let (amount, hour, score) = (
            10.0 * f64::from(i) + 0.5,
            f64::from(i % 24),
            f64::from(i) / 100.0,
        );
        let body = json!({"inputs": [{"name": "tx", "datatype": "FP64", "shape": [1, 2], "data": [amount, hour]}]});
        let score_header = score.to_string();
        let reply = client
            .request(
                Method::POST,
                &url,
                &[
                    ("x-user-id", &key),
                    ("content-type", "application/json"),
                    ("x-test-score", &score_header),
                ],
                Bytes::from(body.to_string()),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        sent.insert(
            key,
            (
                reply.header("x-served-by").unwrap().to_owned(),
                amount,
                hour,
                score,
            ),
        );
    }
    // A body over max_body_bytes is not sampled, and the request is still served.
    let big = json!({"inputs": [{"data": vec![1.0; 600]}]}).to_string();
    let reply = client
        .request(
            Method::POST,
            &url,
            &[("x-user-id", "big")],
            Bytes::from(big),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    eventually(Duration::from_secs(10), "every sample stored", || async {
        call(
            &scorer,
            Method::GET,
            "/v1/rollouts/fraud/samples?limit=1000",
            None,
            None,
        )
        .await
        .json()
        .unwrap()["samples"]
            .as_array()
            .is_some_and(|s| s.len() == n as usize)
    })
    .await;
    let samples = call(
        &scorer,
        Method::GET,
        "/v1/rollouts/fraud/samples?limit=1000",
        None,
        None,
    )
    .await
    .json()
    .unwrap();
    for s in samples["samples"].as_array().unwrap() {
        let key = s["user_key"].as_str().unwrap();
        let (variant, amount, hour, score) = &sent[key];
        assert_eq!(s["variant"].as_str(), Some(variant.as_str()), "{key}");
        assert_eq!(s["features"]["amount"].as_f64(), Some(*amount), "{key}");
        assert_eq!(s["features"]["hour"].as_f64(), Some(*hour), "{key}");
        assert_eq!(s["score"].as_f64(), Some(*score), "{key}");
        assert!(
            s["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{key}: a request id to join feedback on"
        );
    }
    let stat = |result: &'static str| {
        let envoy = &rollout.envoy;
        async move {
            envoy
                .counter(&format!(
                    "wasmcustom.outrider.sample_total.rollout=fraud.result={result}"
                ))
                .await
                .unwrap()
        }
    };
    assert_eq!(stat("taken").await, n as u64);
    assert_eq!(stat("skipped").await, 1);
}

fn batch(id: usize, requests: u64) -> TelemetryBatch {
    let mut latency = vec![0; LATENCY_SLOTS];
    latency[3] = requests;
    TelemetryBatch {
        batch_id: format!("durability-{id}"),
        rollout: "fraud".into(),
        proxy: "p1".into(),
        worker: None,
        window_start_ms: 1_000,
        window_end_ms: 2_000,
        variants: vec![VariantCounts {
            variant: "canary".into(),
            requests,
            responses: ClassCounts {
                success: requests,
                ..ClassCounts::default()
            },
            grpc_errors: 0,
            latency_ms: latency,
            latency_sum_ms: requests * 3,
        }],
        samples: vec![],
        dropped_batches: 0,
        shadows: vec![],
        guardrail_trips: vec![],
    }
}

/// Posts batches concurrently, kills the scorer with SIGKILL in the middle, restarts
/// it and posts again every batch that was not acknowledged (as filters do): every
/// acknowledged batch is there, and nothing is counted twice.
async fn acknowledged_batches_survive_kill9(backend: Backend) {
    let mut scorer = start_scorer(&backend, "durable").await;
    create_rollout(&scorer, 50.0, 50.0).await;
    let batches: Vec<TelemetryBatch> = (0..600).map(|i| batch(i, 1 + (i as u64 % 7))).collect();
    let total: u64 = batches.iter().map(|b| b.variants[0].requests).sum();
    let url = format!("{}/v1/telemetry", scorer.url());
    let auth = format!("Bearer {TELEMETRY_TOKEN}");
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));

    let posting = {
        let (batches, url, auth, acked) =
            (batches.clone(), url.clone(), auth.clone(), acked.clone());
        tokio::spawn(async move {
            let client = HttpClient::new();
            futures::stream::iter(batches)
                .for_each_concurrent(8, |b| {
                    let (client, url, auth, acked) =
                        (client.clone(), url.clone(), auth.clone(), acked.clone());
                    async move {
                        let body = Bytes::from(serde_json::to_vec(&b).unwrap());
                        let headers = [
                            ("authorization", auth.as_str()),
                            ("content-type", "application/json"),
                        ];
                        if let Ok(reply) = client.request(Method::POST, &url, &headers, body).await
                            && reply.status == 200
                        {
                            acked.lock().unwrap().push(b.batch_id.clone());
                        }
                    }
                })
                .await;
        })
    };
    eventually(
        Duration::from_secs(20),
        "some batches acknowledged",
        || async { acked.lock().unwrap().len() >= 150 },
    )
    .await;
    scorer.kill9();
    posting.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() < batches.len(), "the kill came before the end");

    scorer.restart().await.unwrap();
    let acked_requests: u64 = batches
        .iter()
        .filter(|b| acked.contains(&b.batch_id))
        .map(|b| b.variants[0].requests)
        .sum();
    let stored = requests_of(&scorer_counts(&scorer).await, "canary");
    assert!(
        stored >= acked_requests,
        "{stored} stored < {acked_requests} acknowledged"
    );

    let client = HttpClient::new();
    let mut duplicates = 0;
    for b in batches.iter().filter(|b| !acked.contains(&b.batch_id)) {
        let body = Bytes::from(serde_json::to_vec(b).unwrap());
        let url = format!("{}/v1/telemetry", scorer.url());
        let reply = client
            .request(
                Method::POST,
                &url,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        if reply.json().unwrap()["result"] == "duplicate" {
            duplicates += 1;
        }
    }
    assert_eq!(
        requests_of(&scorer_counts(&scorer).await, "canary"),
        total,
        "every batch counted exactly once ({duplicates} were applied before the kill but not acknowledged)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_batches_survive_kill9() {
    acknowledged_batches_survive_kill9(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_batches_survive_kill9() {
    acknowledged_batches_survive_kill9(Backend::postgres().await).await;
}
