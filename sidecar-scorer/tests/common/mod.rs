//! What the scorer's end-to-end tests share: starting scorers on either store, the
//! admin calls, and Envoy with the filter linked to a scorer.

#![allow(dead_code)]

pub mod canary;
pub mod monitored;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use outrider_harness::bootstrap::Cluster;
use outrider_harness::client::{HttpClient, Reply};
use outrider_harness::fixture::RolloutUnderTest;
use outrider_harness::postgres::Postgres;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec, TELEMETRY_TOKEN};
use serde_json::{Value, json};

/// Where a test's scorer keeps its state.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(Postgres),
}

impl Backend {
    pub fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    pub async fn postgres() -> Self {
        Backend::Postgres(Postgres::start().await.unwrap())
    }

    pub fn store(&self) -> String {
        match self {
            Backend::Sqlite(dir) => dir.path().join("scorer.db").display().to_string(),
            Backend::Postgres(pg) => pg.url(),
        }
    }
}

pub async fn start_scorer(backend: &Backend, replica: &str) -> Scorer {
    Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: backend.store(),
        replica_id: replica.to_owned(),
        extra_args: vec!["--window-seconds".into(), "1".into()],
    })
    .await
    .unwrap()
}

pub async fn call(
    scorer: &Scorer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    HttpClient::new()
        .request(method, &format!("{}{path}", scorer.url()), &headers, body)
        .await
        .unwrap()
}

pub async fn admin(scorer: &Scorer, method: Method, path: &str, body: Value) -> Value {
    let reply = call(scorer, method, path, Some(ADMIN_TOKEN), Some(body)).await;
    assert!(
        reply.status < 300,
        "{path}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    reply.json().unwrap()
}

pub async fn create_rollout(scorer: &Scorer, stable: f64, canary: f64) {
    admin(
        scorer,
        Method::POST,
        "/v1/rollouts",
        json!({"name": "fraud", "variants": [
        {"name": "stable", "weight": stable}, {"name": "canary", "weight": canary}]}),
    )
    .await;
}

pub async fn set_weights(scorer: &Scorer, stable: f64, canary: f64) {
    admin(
        scorer,
        Method::PUT,
        "/v1/rollouts/fraud/weights",
        json!({"weights": {"stable": stable, "canary": canary}, "reason": "test"}),
    )
    .await;
}

/// The filter configuration for rollout `fraud`, linked to a scorer.
pub fn linked_config(stable: f64, canary: f64, poll_ms: u64, flush_ms: u64) -> Value {
    json!({
        "rollout": "fraud",
        "salt": "loop-test",
        "variants": [{"name": "stable", "weight": stable}, {"name": "canary", "weight": canary}],
        "response_header": "x-outrider-variant",
        "scorer": {
            "cluster": "outrider-scorer",
            "token": TELEMETRY_TOKEN,
            "poll_interval_ms": poll_ms,
            "flush_interval_ms": flush_ms,
            "timeout_ms": 500
        }
    })
}

/// Envoy with the filter, in front of two stand-ins, linked to `scorer`.
pub async fn envoy_linked(scorer: &Scorer, config: Value, concurrency: u32) -> RolloutUnderTest {
    let addr = scorer.addr;
    RolloutUnderTest::start_with(config, concurrency, move |spec| {
        spec.clusters.push(Cluster::new("outrider-scorer", addr));
    })
    .await
    .unwrap()
}

/// Requests with fresh keys on fresh connections (spread over Envoy's workers), and the
/// variants that served them.
pub async fn served_by(url: &str, tag: &str, n: usize) -> Vec<String> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let keys: Vec<String> = (0..n).map(|i| format!("probe-{tag}-{i}-{nonce}")).collect();
    HttpClient::new()
        .keyed_gets(url, "x-user-id", &keys, 16)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.header("x-served-by").unwrap_or("").to_owned())
        .collect()
}

/// The number of latencies in a variant of the telemetry summary.
pub fn latency_count(variant: &Value) -> u64 {
    variant["latency_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum()
}

/// Per-variant request counts the scorer has, from its telemetry summary.
pub async fn scorer_counts(scorer: &Scorer) -> Value {
    call(
        scorer,
        Method::GET,
        "/v1/rollouts/fraud/telemetry",
        None,
        None,
    )
    .await
    .json()
    .unwrap()
}

pub fn requests_of(summary: &Value, variant: &str) -> u64 {
    summary["variants"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["variant"] == variant))
        .and_then(|v| v["requests"].as_u64())
        .unwrap_or(0)
}

/// Waits until `check` passes, or fails the test with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Prometheus series value from the scorer's `/metrics`, 0 when absent.
pub async fn scorer_metric(scorer: &Scorer, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = String::from_utf8(
        call(scorer, Method::GET, "/metrics", None, None)
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    outrider_harness::prom::Metrics::parse(&text).sum(name, labels)
}

/// `outrider-scorer ARGS` against `scorer`, as an operator runs it (admin token in the
/// environment); its standard output, the command having succeeded.
pub fn scorer_cli(scorer: &Scorer, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outrider-scorer"))
        .args(args)
        .env("OUTRIDER_SERVER", scorer.url())
        .env("OUTRIDER_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "outrider-scorer {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks a 200 answer of `METHOD template` against its schema in docs/openapi.yaml.
pub fn conforms(method: &str, template: &str, body: &Value) {
    let text =
        std::fs::read_to_string(outrider_harness::paths::repo_root().join("docs/openapi.yaml"))
            .unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let mut schema = doc["paths"][template][method.to_lowercase()]["responses"]["200"]["content"]["application/json"]["schema"].clone();
    assert!(schema.is_object(), "{method} {template} 200 has no schema");
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{method} {template}: {errors:#?}");
}
