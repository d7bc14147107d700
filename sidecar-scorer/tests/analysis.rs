//! Canary analysis end to end: Envoy with the filter in front of a stable and a canary
//! stand-in, keyed traffic whose scores the filter samples, a real scorer whose
//! controller runs the rollout's analysis every 5 s on complete telemetry windows.
//! A healthy canary is stepped to 100%; a silently wrong one (HTTP fine, scores
//! flipped) and a slow one are rolled back by the analysis with the evidence in the
//! event; one with too little traffic is paused, never stepped or rolled back.

mod common;

use std::time::Duration;

use common::canary::*;
use common::*;
use hyper::Method;
use outrider_harness::load::Traffic;
use outrider_harness::scorer::Scorer;
use outrider_harness::standin::Behaviour;
use serde_json::{Value, json};

const INTERVAL_S: u64 = 5;

/// The rollout: 10%, 50%, 100% canary, each step judged by the analysis.
async fn create(scorer: &Scorer, min_requests: u64) {
    create_with_holds(scorer, min_requests, [0, 0]).await;
}

/// The same, with the first two steps held for these seconds.
async fn create_with_holds(scorer: &Scorer, min_requests: u64, holds: [u64; 2]) {
    admin(
        scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
            "steps": [
                {"weights": {"stable": 90, "canary": 10}, "hold_seconds": holds[0]},
                {"weights": {"stable": 50, "canary": 50}, "hold_seconds": holds[1]},
                {"weights": {"stable": 0, "canary": 100}}
            ],
            "analysis": {
                "interval_seconds": INTERVAL_S,
                "min_requests": min_requests,
                "failure_limit": 2,
                "inconclusive_limit": 3,
                "checks": [
                    {"metric": "error_rate", "max": 0.05},
                    {"metric": "latency_p99_ms", "max": 150},
                    {"metric": "prediction_ks", "max": 0.25, "min_samples": 20},
                    {"name": "fraud_share", "metric": "score_share_above", "threshold": 0.5,
                     "max_increase": 0.2, "min_samples": 20, "dry_run": true},
                    {"metric": "judge", "dry_run": true}
                ]
            }
        }),
    )
    .await;
}

/// The one alert firing, once the scorer has raised it.
async fn firing_alert(scorer: &Scorer) -> Value {
    eventually(Duration::from_secs(10), "an alert firing", || async {
        let alerts = call(scorer, Method::GET, "/v1/alerts?firing=true", None, None).await;
        alerts.json().unwrap()["alerts"].as_array().unwrap().len() == 1
    })
    .await;
    call(scorer, Method::GET, "/v1/alerts?firing=true", None, None)
        .await
        .json()
        .unwrap()["alerts"][0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_stepped_to_the_end_on_passed_runs() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "analysis-healthy").await;
    let mesh = mesh(&scorer, echo(0), echo(0)).await;
    create(&scorer, 20).await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    let took = reaches(&scorer, "promoted", Duration::from_secs(60)).await;
    assert_eq!(failed(traffic).await, 0, "no request failed");
    eprintln!("healthy canary: three steps passed in {took:.1} s");

    let steps: Vec<Value> = events(&scorer)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "step" || e["kind"] == "promoted")
        .collect();
    assert_eq!(steps.len(), 3, "two steps and the promotion: {steps:?}");
    for e in &steps {
        assert_eq!(e["actor"], "controller");
        assert!(e["reason"].as_str().unwrap().contains("analysis: "), "{e}");
        let run = &e["details"]["analysis"];
        assert_eq!(run["outcome"], "passed", "{e}");
        let ks = run["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metric"] == "prediction_ks");
        if e["kind"] == "step" {
            let ks = ks.unwrap();
            assert!(ks["value"].as_f64().unwrap() <= 0.25, "{ks}");
        } else {
            // At 100% the baseline has no traffic: nothing to compare with.
            assert!(ks.is_none(), "{e}");
            assert!(
                run["reason"].as_str().unwrap().contains("no traffic"),
                "{e}"
            );
        }
    }
    let weights = &rollout(&scorer).await["variants"];
    assert_eq!(weights[1]["weight"], 100.0);
    let runs = runs(&scorer).await;
    assert!(runs.iter().filter(|r| r["outcome"] == "passed").count() >= 3);
    assert!(
        runs.iter().all(|r| r["outcome"] != "failed"),
        "a healthy canary never fails a run: {runs:?}"
    );
    // Every replica's /metrics shows the state, the step, the weights, the last run.
    eventually(Duration::from_secs(5), "the rollout gauges", || async {
        scorer_metric(
            &scorer,
            "outrider_scorer_rollout_status",
            &[("rollout", "fraud"), ("status", "promoted")],
        )
        .await
            == 1.0
    })
    .await;
    assert_eq!(
        scorer_metric(
            &scorer,
            "outrider_scorer_rollout_status",
            &[("rollout", "fraud")]
        )
        .await,
        1.0,
        "one status at a time"
    );
    assert_eq!(
        scorer_metric(
            &scorer,
            "outrider_scorer_rollout_weight_percent",
            &[("rollout", "fraud"), ("variant", "canary")]
        )
        .await,
        100.0
    );
    assert_eq!(
        scorer_metric(
            &scorer,
            "outrider_scorer_analysis_last_run",
            &[("rollout", "fraud"), ("outcome", "passed")]
        )
        .await,
        1.0
    );
    let judged = runs[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "judge")
        .unwrap()
        .clone();
    let score = judged["value"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&score), "{judged}");
    assert!(
        judged["reason"].as_str().unwrap().starts_with("score "),
        "{judged}"
    );
    let table = scorer_cli(&scorer, &["rollout", "status", "fraud"]);
    eprintln!("{table}");
    assert!(table.contains("rollout fraud: promoted"), "{table}");
    assert!(table.contains("prediction_ks"), "{table}");
    assert!(table.contains("(dry run)"), "{table}");
    drop(mesh);
}

/// A canary that answers 200 with wrong scores, or answers slowly, is rolled back by
/// the analysis: the figures that decided are in the event.
async fn rolled_back_by_analysis(canary: Behaviour, metric: &str, tag: &str) {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, tag).await;
    let mesh = mesh(&scorer, echo(0), canary).await;
    create(&scorer, 20).await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    let took = reaches(&scorer, "rolled_back", Duration::from_secs(40)).await;
    assert_eq!(failed(traffic).await, 0, "no request failed");
    let runs = runs(&scorer).await;
    eprintln!(
        "{tag}: rolled back {took:.1} s after the rollout began, after {} runs of {INTERVAL_S} s",
        runs.len()
    );
    // Two failed runs in a row decide; the first interval may start before the
    // canary had traffic.
    assert!(runs.len() <= 3, "{runs:?}");
    let event = events(&scorer)
        .await
        .into_iter()
        .find(|e| e["kind"] == "rolled_back")
        .unwrap();
    assert_eq!(event["actor"], "analysis");
    assert_eq!(event["details"]["weights"]["stable"], 100.0);
    let failed = event["details"]["analysis"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap()
        .clone();
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        event["reason"].as_str().unwrap().contains(metric),
        "{}",
        event["reason"]
    );
    let alert = firing_alert(&scorer).await;
    assert_eq!(
        (
            &alert["labels"]["alertname"],
            &alert["labels"]["severity"],
            &alert["labels"]["by"]
        ),
        (
            &json!("OutriderRolloutRolledBack"),
            &json!("critical"),
            &json!("analysis")
        )
    );
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_wrong_model_is_rolled_back_on_its_score_distribution() {
    rolled_back_by_analysis(echo(60), "prediction_ks", "analysis-wrong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_300_ms_slower_is_rolled_back() {
    let slow = Behaviour {
        latency_ms: (300, 300),
        ..echo(0)
    };
    rolled_back_by_analysis(slow, "latency_p99_ms", "analysis-slow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_traffic_pauses_and_never_judges() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "analysis-quiet").await;
    let mesh = mesh(&scorer, echo(0), echo(60)).await;
    // 4 requests a second: about 2 canary requests per interval, far below 100.
    create(&scorer, 100).await;
    let traffic = Traffic::start(mesh.url.clone(), 4);
    let took = reaches(&scorer, "paused", Duration::from_secs(45)).await;
    assert_eq!(failed(traffic).await, 0);
    eprintln!("quiet canary: paused after {took:.1} s");
    let runs = runs(&scorer).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|r| r["outcome"] == "inconclusive"));
    for run in &runs {
        let reason = run["reason"].as_str().unwrap();
        assert!(
            reason.contains("too few requests") || reason.contains("no candidate had traffic"),
            "{reason}"
        );
    }
    let kinds: Vec<Value> = events(&scorer)
        .await
        .into_iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("created"), json!("paused")]);
    let alert = firing_alert(&scorer).await;
    assert_eq!(alert["labels"]["alertname"], "OutriderAnalysisInconclusive");
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("inconclusive")
    );
    drop(mesh);
}

/// The scorer killed mid-canary: traffic keeps its weights while it is away, the
/// intervals it missed are judged once their telemetry is in, and the rollout goes on
/// from where it was: no step applied twice, no run failed for the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_goes_on_after_its_scorer_is_killed_mid_canary() {
    let backend = Backend::sqlite();
    let mut scorer = start_scorer(&backend, "analysis-outage").await;
    let mesh = mesh(&scorer, echo(0), echo(0)).await;
    create_with_holds(&scorer, 20, [8, 8]).await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    eventually(Duration::from_secs(30), "the second step", || async {
        rollout(&scorer).await["step"] == 1
    })
    .await;
    // Every worker polls the 50% within a poll interval (300 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let canary_before = mesh.standins[1].requests();
    scorer.kill9();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let served = mesh.standins[1].requests() - canary_before;
    // 8 s at 100 req/s with the canary at 50%: about 400.
    assert!(
        (250..=550).contains(&served),
        "the canary kept its 50% while the scorer was away: {served}"
    );
    scorer.restart().await.unwrap();
    let took = reaches(&scorer, "promoted", Duration::from_secs(60)).await;
    assert_eq!(failed(traffic).await, 0, "no request failed");
    eprintln!("after the restart, promoted in {took:.1} s");
    let runs = runs(&scorer).await;
    assert!(
        runs.iter().all(|r| r["outcome"] != "failed"),
        "the outage failed no run: {runs:?}"
    );
    let ends: Vec<u64> = runs.iter().map(|r| r["end_ms"].as_u64().unwrap()).collect();
    assert!(
        ends.windows(2).all(|w| w[0] < w[1]),
        "each interval judged once: {ends:?}"
    );
    let kinds: Vec<Value> = events(&scorer)
        .await
        .into_iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            json!("created"),
            json!("step"),
            json!("step"),
            json!("promoted")
        ],
        "no step applied twice"
    );
}

/// While the scorer is away, the filter's guardrail still takes a failing canary out
/// of traffic; the trip reaches the scorer with the backlog, which rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardrail_protects_while_the_scorer_is_away() {
    let backend = Backend::sqlite();
    let mut scorer = start_scorer(&backend, "analysis-guardrail-outage").await;
    let guardrail = json!({"window_ms": 10_000, "min_requests": 20, "max_5xx_share": 0.05});
    let mesh = mesh_with(&scorer, echo(0), echo(0), Some(guardrail)).await;
    create_with_holds(&scorer, 20, [3_600, 0]).await;
    let traffic = Traffic::start(mesh.url.clone(), 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    scorer.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let canary = &mesh.standins[1];
    canary.fail_with(503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_one_second = canary.requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        canary.requests(),
        at_one_second,
        "the canary got nothing from a second after its fault on, scorer or not"
    );
    scorer.restart().await.unwrap();
    reaches(&scorer, "rolled_back", Duration::from_secs(10)).await;
    let bad = traffic.finish().await.iter().filter(|o| o.is_bad()).count();
    assert!(bad <= 20, "{bad} bad responses");
    let event = events(&scorer)
        .await
        .into_iter()
        .find(|e| e["kind"] == "rolled_back")
        .unwrap();
    assert_eq!(event["actor"], "guardrail");
    assert_eq!(event["details"]["guardrail"]["variant"], "canary");
}
