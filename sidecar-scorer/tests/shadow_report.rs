//! Shadow comparisons reach the scorer in the filters' telemetry, and the shadow
//! report (API and CLI) measures them and judges them against the shadow gate.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::Method;
use outrider_harness::bootstrap::Cluster;
use outrider_harness::client::HttpClient;
use outrider_harness::fixture::RolloutUnderTest;
use outrider_harness::standin::{Behaviour, Scoring, StandIn};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_report_measures_agreement_and_applies_the_gate() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "shadow").await;
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100}],
            "shadow_gate": {"min_agreement": 0.99, "min_comparisons": 500, "max_error_rate": 0.01}
        }),
    )
    .await;

    let shadow = StandIn::start_on(
        "v3",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour {
            scoring: Scoring::Echo { flip_percent: 7 },
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let mut config = linked_config(100.0, 0.0, 1_000, 300);
    config["variants"] = json!([{"name": "stable", "weight": 100}]);
    config["shadows"] = json!([{"name": "v3", "cluster": "shadow-v3", "share": 100,
        "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}]);
    let (scorer_addr, shadow_addr) = (scorer.addr, shadow.addr);
    let primary = Behaviour {
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    };
    let rollout = RolloutUnderTest::start_with_stand_ins(config, 2, primary, move |spec| {
        spec.clusters
            .push(Cluster::new("outrider-scorer", scorer_addr));
        spec.clusters.push(Cluster::new("shadow-v3", shadow_addr));
    })
    .await
    .unwrap();

    let client = HttpClient::new();
    for id in 0..1_000u64 {
        let score = ((id * 37) % 1_000) as f64 / 1_000.0 + 0.0005;
        let body = json!({"inputs": [{"data": [id, score]}]}).to_string();
        let reply = client
            .request(
                Method::POST,
                &format!("{}/v2/models/fraud/infer", rollout.url),
                &[("content-type", "application/json")],
                Bytes::from(body),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }

    let path = "/v1/rollouts/fraud/shadow";
    eventually(
        Duration::from_secs(15),
        "1000 comparisons at the scorer",
        || async {
            call(&scorer, Method::GET, path, None, None)
                .await
                .json()
                .unwrap()["shadows"][0]["compared"]
                == 1_000
        },
    )
    .await;
    let report = call(&scorer, Method::GET, path, None, None)
        .await
        .json()
        .unwrap();
    let v3 = &report["shadows"][0];
    assert_eq!(v3["variant"], "v3");
    assert_eq!(v3["agreement"]["rate"], 0.93);
    assert_eq!(
        v3["confusion"]["primary_0"]["shadow_1"].as_u64().unwrap()
            + v3["confusion"]["primary_1"]["shadow_0"].as_u64().unwrap(),
        70
    );
    assert_eq!(
        (
            v3["mirrored"].as_u64(),
            v3["completed"].as_u64(),
            v3["errors"].as_u64()
        ),
        (Some(1_000), Some(1_000), Some(0))
    );
    assert!(
        v3["agreement"]["ci_low"].as_f64().unwrap() < 0.93
            && v3["agreement"]["ci_high"].as_f64().unwrap() > 0.93
    );
    assert_eq!(v3["verdict"], "fail");
    assert!(v3["latency_ms"]["shadow_p50"].as_f64().is_some());
    // Flipped scores differ by |1 - 2s|; the others by nothing.
    assert!(v3["score_diff"]["p50"].as_f64().unwrap() <= 0.0001);
    assert!(v3["score_diff"]["max"].as_f64().unwrap() > 0.1);

    // The CLI shows the same, and a looser gate changes the verdict.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outrider-scorer"))
            .args(["shadow", "report", "fraud"])
            .args(args)
            .env("OUTRIDER_SERVER", scorer.url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = cli(&[]);
    assert!(
        text.contains("shadow v3 of rollout fraud: FAIL (agreement 0.9300 is below 0.99)"),
        "{text}"
    );
    assert!(text.contains("agreement 93.00%"), "{text}");
    assert!(cli(&["--min-agreement", "0.9"]).contains(": PASS"));
    assert!(cli(&["--min-comparisons", "5000"]).contains(": INSUFFICIENT_DATA"));
}
