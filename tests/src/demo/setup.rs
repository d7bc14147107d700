//! Everything the demo runs, on loopback ports the system picks: the fraud model v1
//! trained and registered, two model servers following the registry's aliases, a stand-in
//! for the broken v3, the scorer with the model monitor and a retraining policy, and
//! Envoy with the filter.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::Envoy;
use outrider_harness::paths;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec, TELEMETRY_TOKEN};
use outrider_harness::standin::{Behaviour, StandIn};
use outrider_model::data::schema::FEATURES;
use outrider_model::data::{GeneratorConfig, csv_file, generate};
use outrider_model::registry::{self, AnyRegistry, Registry};
use outrider_model::serve::{ServeOptions, Server};
use outrider_model::train::{self, TrainConfig};
use serde_json::{Value, json};

use super::Settings;

/// The monitor's settings: 5-second windows, a finding after 2 of 3.
const MONITOR: &str = r#"
[monitor]
min_samples = 100
dataset_share = 0.2
exclude = ["hour"]
[monitor.window]
by = "time"
width = 5
[monitor.hysteresis]
drifted = 2
windows = 3
[monitor.performance]
label_delay_seconds = 1
labelled_window_seconds = 600
min_positives = 10
"#;

pub struct Mesh {
    pub scorer: Scorer,
    pub envoy: Envoy,
    pub _stable: Server,
    pub _canary: Server,
    pub broken: StandIn,
    pub url: String,
    /// Seconds v1's training took.
    pub trained_in: f64,
    pub v1_report: Value,
}

pub async fn start(settings: &Settings, out: &Path, say: impl Fn(&str)) -> Result<Mesh> {
    let registry_dir = out.join("registry");
    let jobs_dir = out.join("jobs");
    for dir in [&registry_dir, &jobs_dir] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(out.join("scorer.db"));

    // v1: trained on generated transactions, registered, made champion; the challenger
    // alias points at it too so the canary server has a model to load.
    say(&format!(
        "training v1 on {} generated transactions",
        settings.train_rows
    ));
    let started = std::time::Instant::now();
    let rows = generate(&GeneratorConfig {
        rows: settings.train_rows,
        seed: 1,
        ..GeneratorConfig::default()
    })?;
    let v1 =
        tokio::task::spawn_blocking(move || train::train(&rows, &TrainConfig::default())).await??;
    let trained_in = started.elapsed().as_secs_f64();
    let v1_report = serde_json::to_value(&v1.report)?;
    let registry = AnyRegistry::open(registry_dir.to_str().context("registry path")?)?;
    registry::publish(&registry, &v1, "fraud").await?;
    registry::promote(&registry, "fraud", 1).await?;
    registry.set_alias("fraud", "challenger", 1).await?;
    // Reference data the retraining jobs train on beside the labelled window.
    let reference = out.join("reference.csv");
    let reference_rows = generate(&GeneratorConfig {
        rows: settings.train_rows / 2,
        seed: 5,
        ..GeneratorConfig::default()
    })?;
    csv_file::write(&reference, &reference_rows)?;

    say("starting the model servers (stable follows @champion, canary @challenger)");
    let serve = |alias: &str| ServeOptions {
        http: "127.0.0.1:0".parse().expect("address"),
        grpc: None,
        model: format!("models:/fraud@{alias}").parse().expect("model URI"),
        name: None,
        poll: Some(Duration::from_secs(1)),
        max_request_bytes: 1 << 20,
    };
    let location = registry_dir.to_str().context("registry path")?;
    let stable = Server::start(serve("champion"), Arc::new(AnyRegistry::open(location)?)).await?;
    let canary = Server::start(serve("challenger"), Arc::new(AnyRegistry::open(location)?)).await?;
    stable.wait_ready(Duration::from_secs(30)).await?;
    canary.wait_ready(Duration::from_secs(30)).await?;
    // v3: a build that answers every request with 503.
    let broken = StandIn::start_on(
        "v3",
        "127.0.0.1:0".parse()?,
        Behaviour {
            latency_ms: (1, 3),
            error_rate: 1.0,
            ..Behaviour::default()
        },
    )
    .await?;

    say("starting the scorer (SQLite, the embedded registry, the model monitor)");
    let config_file = out.join("scorer.toml");
    std::fs::write(&config_file, MONITOR)?;
    let scorer = Scorer::start(ScorerSpec {
        binary: settings.bin_dir.join("outrider-scorer"),
        store: out.join("scorer.db").display().to_string(),
        replica_id: "demo".into(),
        extra_args: vec![
            "--window-seconds".into(),
            "1".into(),
            "--registry".into(),
            registry_dir.display().to_string(),
            "--config".into(),
            config_file.display().to_string(),
            "--model-binary".into(),
            settings
                .bin_dir
                .join("outrider-model")
                .display()
                .to_string(),
            "--jobs-dir".into(),
            jobs_dir.display().to_string(),
        ],
    })
    .await
    .context("starting the scorer (run `make build` first)")?;
    // v1 serves: a rollout whose stable variant names it, promoted, so a retraining job
    // may give the rollout a new plan.
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({"name": "fraud", "variants": [
            {"name": "stable", "weight": 100, "model": "models:/fraud/1"},
            {"name": "canary", "weight": 0}],
            "actor": "demo", "reason": "v1 serves"}),
    )
    .await?;
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts/fraud/promote",
        json!({"variant": "stable", "reason": "v1 serves"}),
    )
    .await?;
    admin(
        &scorer,
        Method::PUT,
        "/v1/models/fraud/retraining",
        policy(settings, &reference),
    )
    .await?;

    say("starting Envoy with the outrider filter");
    let clusters = vec![
        Cluster::new("stable", stable.http_addr),
        Cluster::new("canary", canary.http_addr),
        Cluster::new("v3", broken.addr),
        Cluster::new("outrider-scorer", scorer.addr),
    ];
    let spec = Spec::rollout(&paths::filter_wasm()?, &filter_config(), clusters)?;
    let envoy = Envoy::start(&spec.bootstrap(), 2)
        .await
        .context("starting Envoy (run `make build` first)")?;
    let url = format!("{}/v2/models/fraud/infer", envoy.url(LISTENER).await?);
    Ok(Mesh {
        scorer,
        envoy,
        _stable: stable,
        _canary: canary,
        broken,
        url,
        trained_in,
        v1_report,
    })
}

/// The filter: three variants (v3 only gets traffic from the last rollout), the ten
/// features sampled under the profile's names, every request mirrored to the canary
/// while a shadow stage runs, and the guardrail on every variant but stable.
pub fn filter_config() -> Value {
    let features: serde_json::Map<String, Value> = FEATURES
        .iter()
        .enumerate()
        .map(|(i, name)| ((*name).to_owned(), json!(format!("/inputs/0/data/{i}"))))
        .collect();
    json!({
        "rollout": "fraud",
        "salt": "fraud-demo",
        "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0},
                     {"name": "v3", "weight": 0}],
        "sticky_key": {"header": "x-user-id"},
        "response_header": "x-outrider-variant",
        "scorer": {"cluster": "outrider-scorer", "token": TELEMETRY_TOKEN,
                   "poll_interval_ms": 500, "flush_interval_ms": 500, "timeout_ms": 500},
        "telemetry": {"sample_rate": 1.0, "score": "/outputs/0/data/0",
                      "max_samples_per_batch": 1000, "features": features},
        "shadows": [{"name": "canary-shadow", "cluster": "canary", "share": 100,
                     "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}],
        "guardrail": {"window_ms": 5000, "min_requests": 10, "max_5xx_share": 0.2}
    })
}

/// The analysis every canary step is judged by.
pub fn analysis() -> Value {
    json!({"interval_seconds": 5, "min_requests": 20, "failure_limit": 1,
           "checks": [{"metric": "error_rate", "max": 0.01},
                      {"metric": "latency_p99_ms", "max": 250},
                      {"metric": "prediction_ks", "max": 0.6, "min_samples": 20}]})
}

/// Retraining: a dataset drift starts the trainer; a challenger no worse than the
/// champion on the labelled window (PR AUC within 0.05) is shadowed, then canaried.
fn policy(settings: &Settings, reference: &Path) -> Value {
    json!({
        "labelled_window_seconds": 600,
        "reference_data": reference.display().to_string(),
        "timeout_seconds": 300,
        "triggers": {"drift": {"verdicts": ["dataset_drift"], "cooldown_seconds": 3600}},
        "gate": {"min_pr_auc_gain": -0.05, "min_labelled": 200},
        "rollout": {
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "shadow": {"variant": "canary-shadow"},
            "shadow_gate": {"min_agreement": 0.95, "min_comparisons": settings.shadow_copies,
                            "min_copies": settings.shadow_copies},
            "steps": [{"weights": {"stable": 80, "canary": 20}},
                      {"weights": {"stable": 50, "canary": 50}},
                      {"weights": {"canary": 100}}],
            "analysis": analysis()
        }
    })
}

/// The broken v3, canaried under the guardrail.
pub fn v3_rollout() -> Value {
    json!({
        "name": "fraud",
        "variants": [{"name": "stable", "weight": 100, "model": "models:/fraud/2"},
                     {"name": "v3", "weight": 0}],
        "steps": [{"weights": {"stable": 80, "v3": 20}}, {"weights": {"v3": 100}}],
        "analysis": analysis(),
        "actor": "demo",
        "reason": "a v3 build canaried at 20%"
    })
}

pub async fn call(
    scorer: &Scorer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let reply = HttpClient::new()
        .request(method, &format!("{}{path}", scorer.url()), &headers, body)
        .await?;
    if reply.status >= 300 {
        bail!(
            "scorer {path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    reply.json()
}

pub async fn admin(scorer: &Scorer, method: Method, path: &str, body: Value) -> Result<Value> {
    call(scorer, method, path, Some(body)).await
}
