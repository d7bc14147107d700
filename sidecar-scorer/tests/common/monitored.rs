//! The fraud model under the scorer's monitor: v1 trained once per test process and
//! published in an embedded registry, served over the Open Inference Protocol, and a
//! scorer that reads the registry with the given monitor settings.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use outrider_harness::scorer::{Scorer, ScorerSpec};
use outrider_model::data::schema::FEATURES;
use outrider_model::data::{GeneratorConfig, generate};
use outrider_model::registry::{self, AnyRegistry};
use outrider_model::serve::{ServeOptions, Server};
use outrider_model::train::{self, TrainConfig, Trained};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::Backend;

/// v1 of the fraud model, trained on 40,000 generated transactions.
pub fn v1() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let rows = generate(&GeneratorConfig {
            rows: 40_000,
            seed: 1,
            ..GeneratorConfig::default()
        })
        .unwrap();
        train::train(&rows, &TrainConfig::default()).unwrap()
    })
}

pub struct Monitored {
    pub scorer: Scorer,
    /// v1, answering on `server.http_addr`.
    pub server: Server,
    pub dir: TempDir,
}

/// v1 in a registry, served; a scorer on SQLite with 1 s telemetry windows reading the
/// registry, with `monitor` (TOML) as its settings.
pub async fn monitored(replica: &str, monitor: &str) -> Monitored {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("registry");
    let registry = AnyRegistry::open(location.to_str().unwrap()).unwrap();
    registry::publish(&registry, v1(), "fraud").await.unwrap();
    let config_file = dir.path().join("scorer.toml");
    std::fs::write(&config_file, monitor).unwrap();
    let backend = Backend::sqlite();
    let scorer = Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: backend.store(),
        replica_id: replica.into(),
        extra_args: vec![
            "--window-seconds".into(),
            "1".into(),
            "--registry".into(),
            location.display().to_string(),
            "--config".into(),
            config_file.display().to_string(),
        ],
    })
    .await
    .unwrap();
    std::mem::forget(backend); // the store lives as long as the test process
    let server = Server::start(
        ServeOptions {
            http: "127.0.0.1:0".parse().unwrap(),
            grpc: None,
            model: "models:/fraud/1".parse().unwrap(),
            name: None,
            poll: None,
            max_request_bytes: 1 << 20,
        },
        Arc::new(registry),
    )
    .await
    .unwrap();
    server.wait_ready(Duration::from_secs(30)).await.unwrap();
    Monitored {
        scorer,
        server,
        dir,
    }
}

/// The filter's telemetry sampling every request with its ten features and its score.
pub fn sample_every_request(config: &mut Value) {
    let features: serde_json::Map<String, Value> = FEATURES
        .iter()
        .enumerate()
        .map(|(i, name)| ((*name).to_owned(), json!(format!("/inputs/0/data/{i}"))))
        .collect();
    config["telemetry"] = json!({"sample_rate": 1.0, "score": "/outputs/0/data/0",
        "max_samples_per_batch": 1000, "features": features});
}
