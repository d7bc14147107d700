//! The `prometheus` check end to end: Envoy with the filter in front of a stable and a
//! canary stand-in, a real scorer, and a private Prometheus scraping Envoy's
//! `/stats/prometheus` every second. The check's query is the canary's share of 5xx
//! responses over the interval, from the filter's own counters as Prometheus has them.
//! A healthy canary is stepped to 100% on it; one answering 503 to 30% of requests,
//! with no guardrail in the filter, is rolled back by it alone.

mod common;

use std::time::Duration;

use common::canary::*;
use common::*;
use hyper::Method;
use outrider_harness::load::Traffic;
use outrider_harness::prometheus::{Prometheus, PrometheusSpec, Target, free_port};
use outrider_harness::scorer::{Scorer, ScorerSpec};
use outrider_harness::standin::Behaviour;
use serde_json::{Value, json};

const INTERVAL_S: u64 = 5;

/// The variant's share of 5xx responses over the interval. Envoy exports the
/// filter's counters with the labels `rollout`, `variant` and `class`; every class
/// is defined (at 0) when the filter is configured, so both sides always have a
/// series.
const ERROR_SHARE: &str = concat!(
    r#"sum(increase(outrider_rs_total{rollout="{{rollout}}",variant="{{variant}}",class="5xx"}[{{interval}}]))"#,
    " / ",
    r#"sum(increase(outrider_rs_total{rollout="{{rollout}}",variant="{{variant}}"}[{{interval}}]))"#
);

/// The variant's p99 latency over the interval in ms, from the filter's histogram.
const P99_MS: &str = r#"histogram_quantile(0.99, sum by (le) (rate(outrider_upstream_rq_time_bucket{rollout="{{rollout}}",variant="{{variant}}"}[{{interval}}])))"#;

/// A scorer whose windows are 1 s, with these extra flags.
async fn scorer(backend: &Backend, replica: &str, flags: &[String]) -> Scorer {
    let mut extra_args = vec!["--window-seconds".to_owned(), "1".to_owned()];
    extra_args.extend_from_slice(flags);
    Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: backend.store(),
        replica_id: replica.to_owned(),
        extra_args,
    })
    .await
    .unwrap()
}

/// Prometheus scraping the mesh's Envoy, once it has scraped it.
async fn prometheus_for(mesh: &Mesh, port: Option<u16>) -> Prometheus {
    let prometheus = Prometheus::start(PrometheusSpec {
        targets: vec![Target::envoy("envoy", mesh.envoy.admin_addr())],
        port,
        ..PrometheusSpec::default()
    })
    .await
    .unwrap();
    prometheus
        .wait_scraped("envoy", Duration::from_secs(15))
        .await
        .unwrap();
    prometheus
}

/// The rollout: `first`% canary, then 50% and 100%, each step judged by `checks`.
async fn create(scorer: &Scorer, first: f64, checks: Value) {
    admin(
        scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100.0 - first}, {"name": "canary", "weight": first}],
            "steps": [
                {"weights": {"stable": 100.0 - first, "canary": first}},
                {"weights": {"stable": 50, "canary": 50}},
                {"weights": {"stable": 0, "canary": 100}}
            ],
            "analysis": {
                "interval_seconds": INTERVAL_S,
                "min_requests": 20,
                "failure_limit": 2,
                "inconclusive_limit": 3,
                "checks": checks
            }
        }),
    )
    .await;
}

/// The check named `name` in a run.
fn check<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["checks"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_steps_to_the_end_on_its_prometheus_check() {
    let backend = Backend::sqlite();
    // The scorer knows where Prometheus will listen; Prometheus needs the Envoy that
    // needs the scorer.
    let port = free_port().unwrap();
    let flag = vec![
        "--prometheus-url".to_owned(),
        format!("http://127.0.0.1:{port}"),
    ];
    let scorer = scorer(&backend, "prometheus-healthy", &flag).await;
    let mesh = mesh(&scorer, echo(0), echo(0)).await;
    let _prometheus = prometheus_for(&mesh, Some(port)).await;
    create(
        &scorer,
        10.0,
        json!([
            {"name": "canary_5xx", "metric": "prometheus", "query": ERROR_SHARE,
             "max": 0.05, "max_increase": 0.02},
            // Shown, never deciding: the stand-ins answer at once.
            {"name": "canary_p99_ms", "metric": "prometheus", "query": P99_MS, "max": 150,
             "dry_run": true}
        ]),
    )
    .await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    let took = reaches(&scorer, "promoted", Duration::from_secs(60)).await;
    assert_eq!(failed(traffic).await, 0, "no request failed");

    let steps: Vec<Value> = events(&scorer)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "step" || e["kind"] == "promoted")
        .collect();
    assert_eq!(steps.len(), 3, "two steps and the end: {steps:?}");
    let mut figures = Vec::new();
    for e in &steps {
        assert_eq!(e["actor"], "controller", "{e}");
        let run = &e["details"]["analysis"];
        assert_eq!(run["outcome"], "passed", "{e}");
        let c = check(run, "canary_5xx");
        assert_eq!(c["value"], 0.0, "no 5xx from the canary: {c}");
        let query = c["query"].as_str().unwrap();
        assert!(
            query.contains(r#"rollout="fraud",variant="canary",class="5xx"}[5s]"#),
            "{query}"
        );
        if e["kind"] == "step" {
            assert_eq!(
                c["baseline"], 0.0,
                "max_increase asks for the baseline's: {c}"
            );
        } else {
            // At 100% the baseline has no traffic: only `max` is judged.
            assert!(c["baseline"].is_null(), "{c}");
            assert_eq!(c["reason"], "0.0000 within bounds (max 0.05)");
        }
        let p99 = check(run, "canary_p99_ms");
        let ms = p99["value"].as_f64().unwrap_or_else(|| panic!("{p99}"));
        assert!(ms > 0.0 && ms <= 150.0, "{p99}");
        figures.push(format!(
            "{}: 5xx {} / {}, p99 {ms:.2} ms",
            e["kind"], c["value"], c["baseline"]
        ));
    }
    eprintln!(
        "healthy canary: promoted in {took:.1} s; canary (/ stable) per deciding run: {}",
        figures.join(", ")
    );
    let table = scorer_cli(&scorer, &["rollout", "status", "fraud"]);
    eprintln!("{table}");
    assert!(table.contains("rollout fraud: promoted"), "{table}");
    assert!(
        table
            .contains("query: sum(increase(outrider_rs_total{rollout=\"fraud\",variant=\"canary\""),
        "{table}"
    );
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_30_percent_is_rolled_back_by_its_prometheus_check() {
    let backend = Backend::sqlite();
    // No --prometheus-url: the check names its Prometheus.
    let scorer = scorer(&backend, "prometheus-failing", &[]).await;
    let failing = Behaviour {
        error_rate: 0.3,
        ..echo(0)
    };
    // No guardrail in the filter: only the analysis can act.
    let mesh = mesh_with(&scorer, echo(0), failing, None).await;
    let prometheus = prometheus_for(&mesh, None).await;
    // Half the traffic from the start: about 250 canary answers a run, so the share a
    // run measures is within a few points of the 30% the stand-in fails.
    create(
        &scorer,
        50.0,
        json!([
            {"name": "canary_5xx", "metric": "prometheus", "query": ERROR_SHARE, "max": 0.1,
             "address": prometheus.url},
            // Shown beside it, from the filter's telemetry: what the scorer counted.
            {"metric": "error_rate", "max": 1, "dry_run": true}
        ]),
    )
    .await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    let took = reaches(&scorer, "rolled_back", Duration::from_secs(40)).await;
    let outcomes = traffic.finish().await;
    let canary: Vec<_> = outcomes
        .iter()
        .filter(|o| o.served_by == "canary")
        .collect();
    let sent_share = canary.iter().filter(|o| o.status == 503).count() as f64 / canary.len() as f64;

    let event = events(&scorer)
        .await
        .into_iter()
        .find(|e| e["kind"] == "rolled_back")
        .unwrap();
    assert_eq!(event["actor"], "analysis");
    assert_eq!(event["details"]["weights"]["stable"], 100.0);
    let run = &event["details"]["analysis"];
    let decided = check(run, "canary_5xx");
    assert_eq!(decided["outcome"], "failed", "{decided}");
    let value = decided["value"].as_f64().unwrap();
    let reason = event["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "canary_5xx of canary: {value:.4} is above max 0.1"
        )),
        "the reason names the check and its figure: {reason}"
    );
    let counted = check(run, "error_rate")["value"].as_f64().unwrap();
    let runs = runs(&scorer).await;
    let failed_runs: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "failed").collect();
    assert_eq!(
        failed_runs.len(),
        2,
        "two failed runs in a row decide: {runs:?}"
    );
    let mut pairs = Vec::new();
    for r in &failed_runs {
        let from_prometheus = check(r, "canary_5xx")["value"].as_f64().unwrap();
        let from_telemetry = check(r, "error_rate")["value"].as_f64().unwrap();
        pairs.push(format!("{from_prometheus:.3} / {from_telemetry:.3}"));
        // The same requests, give or take the edges of the scrapes (1 s) and of
        // Prometheus' extrapolation within the 5 s range.
        assert!(
            (from_prometheus - from_telemetry).abs() < 0.06,
            "Prometheus {from_prometheus} against the scorer's {from_telemetry}"
        );
        assert!(
            (0.2..=0.4).contains(&from_prometheus),
            "about the 30% sent: {from_prometheus}"
        );
    }
    eprintln!(
        "failing canary: rolled back {took:.1} s after the rollout began, after {} runs; \
         canary 5xx share sent {sent_share:.3} ({} requests); per failed run Prometheus / telemetry: {}; \
         deciding run: {value:.4} / {counted:.4}",
        runs.len(),
        canary.len(),
        pairs.join(", ")
    );
    assert!(
        (sent_share - 0.3).abs() < 0.08,
        "the stand-in failed about 30%: {sent_share}"
    );
    drop(mesh);
}
