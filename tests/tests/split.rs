//! Weighted split through the real Envoy: shares follow the weights, and every count
//! (what the client got, what Envoy's stats say, what each upstream received) agrees.

use std::collections::HashMap;

use outrider_harness::fixture::RolloutUnderTest;
use serde_json::json;

const REQUESTS: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_follows_the_weights_and_every_count_agrees() {
    let config = json!({
        "rollout": "fraud",
        "salt": "split-test",
        "variants": [
            {"name": "stable", "weight": 70},
            {"name": "canary-a", "weight": 20},
            {"name": "canary-b", "weight": 10}
        ],
        "response_header": "x-outrider-variant"
    });
    let weights = [("stable", 0.7), ("canary-a", 0.2), ("canary-b", 0.1)];
    let rollout = RolloutUnderTest::start(config, 2).await.unwrap();
    let client = outrider_harness::client::HttpClient::new();

    let keys: Vec<String> = (0..REQUESTS).map(|i| format!("user-{i}")).collect();
    let replies = client
        .keyed_gets(
            &format!("{}/v2/models/fraud/infer", rollout.url),
            "x-user-id",
            &keys,
            32,
        )
        .await
        .unwrap();

    let mut served: HashMap<String, u64> = HashMap::new();
    for (key, reply) in &replies {
        assert_eq!(reply.status, 200, "{key}");
        let by = reply.header("x-served-by").unwrap();
        // The response header tells the client which variant served it.
        assert_eq!(reply.header("x-outrider-variant"), Some(by), "{key}");
        *served.entry(by.to_owned()).or_default() += 1;
    }

    let metrics = rollout.envoy.prometheus().await.unwrap();
    let n = REQUESTS as f64;
    for (variant, weight) in weights {
        let count = served.get(variant).copied().unwrap_or(0);
        let sd = (n * weight * (1.0 - weight)).sqrt();
        let deviation = (count as f64 - n * weight).abs() / sd;
        assert!(
            deviation < 4.0,
            "{variant}: {count} of {REQUESTS} is {deviation:.2} sd from {weight}"
        );

        let labels = [("rollout", "fraud"), ("variant", variant)];
        let standin = rollout.standin(variant);
        assert_eq!(standin.requests(), count, "{variant}: upstream received");
        assert_eq!(
            standin.routing_values(),
            HashMap::from([(variant.to_owned(), count)]),
            "{variant}: the routing header each upstream saw"
        );
        assert_eq!(
            metrics.value("outrider_rq_total", &labels),
            Some(count as f64),
            "{variant}: rq_total"
        );
        let ok = [("rollout", "fraud"), ("variant", variant), ("class", "2xx")];
        assert_eq!(
            metrics.value("outrider_rs_total", &ok),
            Some(count as f64),
            "{variant}: 2xx"
        );
        for class in ["3xx", "4xx", "5xx"] {
            let labels = [("rollout", "fraud"), ("variant", variant), ("class", class)];
            assert_eq!(
                metrics.value("outrider_rs_total", &labels),
                Some(0.0),
                "{variant}: {class}"
            );
        }
        let bp = (weight * 10_000.0).round();
        assert_eq!(
            metrics.value("outrider_weight_basis_points", &labels),
            Some(bp),
            "{variant}: weight gauge"
        );
    }
    assert_eq!(served.values().sum::<u64>(), REQUESTS as u64);
    assert_eq!(
        metrics.value("outrider_rq_unkeyed_total", &[("rollout", "fraud")]),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_key_are_split_at_random() {
    let config = json!({
        "rollout": "fraud",
        "variants": [{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]
    });
    let rollout = RolloutUnderTest::start(config, 2).await.unwrap();
    let client = outrider_harness::client::HttpClient::new();
    let n = 2_000;
    let mut canary = 0u64;
    for _ in 0..n {
        let reply = client.get(&format!("{}/", rollout.url), &[]).await.unwrap();
        if reply.header("x-served-by") == Some("canary") {
            canary += 1;
        }
    }
    let sd = (f64::from(n) * 0.25).sqrt();
    assert!(
        (canary as f64 - f64::from(n) / 2.0).abs() < 4.0 * sd,
        "canary got {canary} of {n}"
    );
    let metrics = rollout.envoy.prometheus().await.unwrap();
    assert_eq!(
        metrics.value("outrider_rq_unkeyed_total", &[("rollout", "fraud")]),
        Some(f64::from(n))
    );
}
