//! Shadow comparisons reach the scorer in the filters' telemetry, and the shadow
//! report (API and CLI) measures them and judges them against the shadow gate: the
//! agreement of a healthy shadow, and the errors and timeouts of a broken one.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::Method;
use outrider_harness::bootstrap::Cluster;
use outrider_harness::client::HttpClient;
use outrider_harness::fixture::RolloutUnderTest;
use outrider_harness::standin::{Behaviour, Scoring, Slow, StandIn};
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
    // Flipped scores differ by |1 - 2s|; the others by nothing. Each quantile is the
    // upper bound of its bucket.
    assert_eq!(v3["score_diff"]["p50"], 0.0001);
    assert!(v3["score_diff"]["max"].as_f64().unwrap() > 0.1);

    // The CLI shows the same, and a looser gate changes the verdict.
    let cli = |args: &[&str]| {
        let all: Vec<&str> = ["shadow", "report", "fraud"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        scorer_cli(&scorer, &all)
    };
    let text = cli(&[]);
    assert!(
        text.contains("shadow v3 of rollout fraud: FAIL (agreement 0.9300 is below 0.99)"),
        "{text}"
    );
    assert!(text.contains("agreement 93.00%"), "{text}");
    assert_eq!(v3["rules"], json!(["min_agreement"]));
    assert_eq!(
        (&v3["ended"], &v3["timeout_rate"]["rate"]),
        (&json!(1_000), &json!(0.0))
    );
    // Unflipped inputs differ by nothing; the flipped ones by |1 - 2s| > 0.02.
    assert_eq!(v3["score_diff_histogram"][0]["count"], 930);
    assert!(cli(&["--min-agreement", "0.9"]).contains(": PASS"));
    assert!(cli(&["--min-comparisons", "5000"]).contains(": INSUFFICIENT_DATA"));
}

fn prediction() -> serde_json::Value {
    json!({"pointer": "/outputs/0/data/0", "threshold": 0.5})
}

/// Three broken shadows behind one Envoy: one answers every copy with a 503, one is not
/// listening at all, one does not answer a quarter of the copies within its timeout.
/// None of the first two gives anything to compare; each still fails the gate, with an
/// error-rate reason, and the third with a timeout reason. The counts are exactly what
/// was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_and_timing_out_shadows_fail_the_gate_with_their_reason() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "broken-shadows").await;
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100}],
            "shadow_gate": {"min_agreement": 0.99, "min_comparisons": 300, "max_error_rate": 0.01,
                "max_timeout_rate": 0.01, "min_copies": 400}
        }),
    )
    .await;

    let echo = Scoring::Echo { flip_percent: 0 };
    let refusing = StandIn::start_on(
        "refusing",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour {
            error_rate: 1.0,
            scoring: echo,
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    // Inputs 0-24 of every hundred take 1.5 s, far beyond the shadow's 400 ms.
    let slow = StandIn::start_on(
        "slow",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour {
            scoring: echo,
            slow: Slow {
                percent: 25,
                ms: 1_500,
            },
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    // A port nobody listens on.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let mut config = linked_config(100.0, 0.0, 1_000, 300);
    config["variants"] = json!([{"name": "stable", "weight": 100}]);
    config["shadows"] = json!([
        {"name": "refusing", "cluster": "shadow-refusing", "share": 100, "max_in_flight": 500,
            "prediction": prediction()},
        {"name": "gone", "cluster": "shadow-gone", "share": 100, "max_in_flight": 500,
            "prediction": prediction()},
        {"name": "slow", "cluster": "shadow-slow", "share": 100, "max_in_flight": 500,
            "timeout_ms": 400, "prediction": prediction()}
    ]);
    let (scorer_addr, refusing_addr, slow_addr) = (scorer.addr, refusing.addr, slow.addr);
    let primary = Behaviour {
        scoring: echo,
        ..Behaviour::default()
    };
    let rollout = RolloutUnderTest::start_with_stand_ins(config, 2, primary, move |spec| {
        spec.clusters
            .push(Cluster::new("outrider-scorer", scorer_addr));
        spec.clusters
            .push(Cluster::new("shadow-refusing", refusing_addr));
        spec.clusters.push(Cluster::new("shadow-gone", gone));
        spec.clusters.push(Cluster::new("shadow-slow", slow_addr));
    })
    .await
    .unwrap();

    let client = HttpClient::new();
    let n = 400u64;
    for id in 0..n {
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
        assert_eq!(reply.status, 200, "the user never sees a shadow's trouble");
    }

    let path = "/v1/rollouts/fraud/shadow";
    let report = || async {
        let report = call(&scorer, Method::GET, path, None, None)
            .await
            .json()
            .unwrap();
        let mut by_name = std::collections::BTreeMap::new();
        for s in report["shadows"].as_array().unwrap() {
            by_name.insert(s["variant"].as_str().unwrap().to_owned(), s.clone());
        }
        by_name
    };
    eventually(
        Duration::from_secs(20),
        "every copy to every shadow ended, at the scorer",
        || async {
            let shadows = report().await;
            ["refusing", "gone", "slow"]
                .iter()
                .all(|name| shadows.get(*name).is_some_and(|s| s["ended"] == n))
        },
    )
    .await;
    let shadows = report().await;

    for name in ["refusing", "gone"] {
        let s = &shadows[name];
        assert_eq!(
            (
                &s["mirrored"],
                &s["errors"],
                &s["completed"],
                &s["timeouts"],
                &s["compared"]
            ),
            (&json!(n), &json!(n), &json!(0), &json!(0), &json!(0)),
            "{name}: {s:#}"
        );
        assert_eq!(s["error_rate"]["rate"], 1.0, "{name}");
        assert_eq!(
            s["agreement"]["rate"],
            json!(null),
            "{name}: nothing compared"
        );
        assert_eq!(s["verdict"], "fail", "{name}: {s:#}");
        assert_eq!(s["rules"], json!(["max_error_rate"]), "{name}");
        assert_eq!(
            s["reasons"],
            json!(["error rate 1.0000 (400 of 400 copies) is above 0.01"]),
            "{name}"
        );
    }
    assert_eq!(refusing.shadow_copies(), n);

    // A quarter of the inputs (ids 0-24 of every hundred) timed out: exactly 100.
    let s = &shadows["slow"];
    assert_eq!(
        (
            &s["mirrored"],
            &s["completed"],
            &s["errors"],
            &s["timeouts"],
            &s["compared"]
        ),
        (&json!(n), &json!(300), &json!(0), &json!(100), &json!(300)),
        "{s:#}"
    );
    assert_eq!(
        s["skipped"],
        json!({}),
        "every request was copied and ended"
    );
    assert_eq!(s["timeout_rate"]["rate"], 0.25);
    assert_eq!(s["error_rate"]["rate"], 0.0);
    assert_eq!(s["agreement"]["rate"], 1.0);
    assert_eq!(s["verdict"], "fail", "{s:#}");
    assert_eq!(s["rules"], json!(["max_timeout_rate"]));
    assert_eq!(
        s["reasons"],
        json!(["timeout rate 0.2500 (100 of 400 copies) is above 0.01"])
    );
    // Its latency covers the 300 copies that answered; the timeouts are left out, and
    // their share is shown beside it.
    assert_eq!(
        s["latency_covers"],
        json!({"shadow_answered": 300, "compared": 300, "timed_out": 100, "timed_out_share": 0.25})
    );
    assert!(
        s["latency_ms"]["shadow_p99"].as_f64().unwrap() < 400.0,
        "{s:#}"
    );
    assert_eq!(slow.shadow_copies(), n);

    // The command line says the same, and judges with other thresholds.
    let cli = |args: &[&str]| {
        let all: Vec<&str> = ["shadow", "report", "fraud"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        scorer_cli(&scorer, &all)
    };
    let text = cli(&[]);
    for line in [
        "shadow refusing of rollout fraud: FAIL (error rate 1.0000 (400 of 400 copies) is above 0.01)",
        "shadow gone of rollout fraud: FAIL (error rate 1.0000 (400 of 400 copies) is above 0.01)",
        "shadow slow of rollout fraud: FAIL (timeout rate 0.2500 (100 of 400 copies) is above 0.01)",
        "ended 400: completed 300, errors 0 (0.00%), timeouts 100 (25.00%)",
        "over 300 answered copies (100 timed out, 25.00%, left out)",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    let lenient = cli(&["--max-timeout-rate", "0.3"]);
    assert!(
        lenient.contains("shadow slow of rollout fraud: PASS"),
        "{lenient}"
    );
    let early = cli(&["--min-copies", "1000", "--max-timeout-rate", "0.3"]);
    assert!(
        early.contains(
            "shadow refusing of rollout fraud: INSUFFICIENT_DATA (400 of the 1000 ended copies"
        ),
        "{early}"
    );
}
