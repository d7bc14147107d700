//! Model monitoring end to end: the fraud model trained by the model crate, registered
//! in an embedded registry and served over the Open Inference Protocol behind Envoy and
//! the filter, which samples every request's features (JSON pointers into the input
//! tensor) and score for a scorer started with `--registry` and 5-second windows.
//!
//! - Covariate drift injected into live traffic raises feature and dataset drift
//!   alerts within the hysteresis (the windows it took are printed); then a pipeline
//!   that sends nulls for a feature raises a missing-value alert, and the scorer keeps
//!   judging.
//! - Concept drift (fraud in a new pattern, inputs as before) shows in the realised
//!   performance on the labelled samples, and in no drift finding.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::monitored::{Monitored, monitored, sample_every_request, v1};
use common::*;
use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::Envoy;
use outrider_harness::paths;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer};
use outrider_model::data::{Drift, GeneratorConfig, Transaction, generate};
use outrider_model::serve::Server;
use serde_json::{Value, json};
use tempfile::TempDir;

const WINDOW_SECONDS: u64 = 5;
const RATE: u64 = 100;

/// Live transactions: a day of traffic per 500 rows (a 5-second window at 100 req/s).
fn rows(seed: u64, fraud_rate: f64, drift: Drift) -> Vec<Transaction> {
    generate(&GeneratorConfig {
        rows: 20_000,
        seed,
        days: 40,
        fraud_rate,
        drift,
        ..GeneratorConfig::default()
    })
    .unwrap()
}

/// The monitor's settings for these tests: short windows, 2 of 3 for a finding.
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
min_positives = 15
"#;

struct Mesh {
    scorer: Scorer,
    _envoy: Envoy,
    _server: Server,
    _dir: TempDir,
    url: String,
}

/// v1 in an embedded registry, served for both variants; a scorer that reads the
/// registry; Envoy with the filter sampling every request's ten features and score.
async fn mesh() -> Mesh {
    let Monitored {
        scorer,
        server,
        dir,
    } = monitored("monitor", MONITOR).await;
    let clusters = vec![
        Cluster::new("stable", server.http_addr),
        Cluster::new("canary", server.http_addr),
        Cluster::new("outrider-scorer", scorer.addr),
    ];
    let mut config = linked_config(100.0, 0.0, 300, 300);
    sample_every_request(&mut config);
    let spec = Spec::rollout(&paths::filter_wasm().unwrap(), &config, clusters).unwrap();
    let envoy = Envoy::start(&spec.bootstrap(), 2).await.unwrap();
    let url = format!(
        "{}/v2/models/fraud/infer",
        envoy.url(LISTENER).await.unwrap()
    );
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({"name": "fraud", "variants": [
            {"name": "stable", "weight": 100, "model": "models:/fraud/1"},
            {"name": "canary", "weight": 0, "model": "models:/fraud/1"}]}),
    )
    .await;
    Mesh {
        scorer,
        _envoy: envoy,
        _server: server,
        _dir: dir,
        url,
    }
}

/// What the live traffic sends: one of the row sets, with a feature sent as null.
struct Phase {
    rows: Vec<Transaction>,
    null_column: Option<usize>,
}

/// Requests at RATE per second from the current phase, each with its request id
/// (`tx-<n>`), until stopped; the phase and the sent rows' labels by request id.
struct Live {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
    labels: Arc<std::sync::Mutex<Vec<(String, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    fn start(url: String, phases: Vec<Phase>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let labels = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let (stop, phase, sent, labels) =
                (stop.clone(), phase.clone(), sent.clone(), labels.clone());
            tokio::spawn(async move {
                let client = HttpClient::new();
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
                let mut requests = tokio::task::JoinSet::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let p = &phases[phase.load(Ordering::Relaxed)];
                    let row = &p.rows[i % p.rows.len()];
                    let mut data: Vec<Value> = row.features().iter().map(|v| json!(v)).collect();
                    if let Some(c) = p.null_column {
                        data[c] = Value::Null;
                    }
                    let body = json!({"inputs": [{"name": "transaction", "datatype": "FP32",
                        "shape": [1, data.len()], "data": data}]});
                    let id = format!("tx-{i}");
                    labels.lock().unwrap().push((id.clone(), row.fraud()));
                    let (client, url) = (client.clone(), url.clone());
                    let key = format!("card-{}", row.customer_id);
                    i += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                    requests.spawn(async move {
                        let _ = client
                            .request(
                                Method::POST,
                                &url,
                                &[
                                    ("x-user-id", &key),
                                    ("x-request-id", &id),
                                    ("content-type", "application/json"),
                                ],
                                Bytes::from(body.to_string()),
                            )
                            .await;
                    });
                    while requests.try_join_next().is_some() {}
                }
                while requests.join_next().await.is_some() {}
            })
        };
        Self {
            stop,
            phase,
            sent,
            labels,
            task,
        }
    }

    fn switch(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    async fn finish(self) -> (u64, Vec<(String, bool)>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let labels = self.labels.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), labels)
    }
}

async fn drift(scorer: &Scorer) -> Value {
    call(
        scorer,
        Method::GET,
        "/v1/models/fraud/drift?limit=100",
        None,
        None,
    )
    .await
    .json()
    .unwrap()
}

async fn firing(scorer: &Scorer) -> Vec<(String, String)> {
    let alerts: Value = call(scorer, Method::GET, "/v1/alerts?firing=true", None, None)
        .await
        .json()
        .unwrap();
    alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let l = &a["labels"];
            let subject = l["feature"].as_str().or(l["metric"].as_str()).unwrap_or("");
            (
                l["alertname"].as_str().unwrap().to_owned(),
                subject.to_owned(),
            )
        })
        .collect()
}

/// Waits until an alert named `name` fires; the firing alerts then.
async fn until_firing(scorer: &Scorer, name: &str, within: Duration) -> Vec<(String, String)> {
    let started = Instant::now();
    loop {
        let now = firing(scorer).await;
        if now.iter().any(|(n, _)| n == name) {
            return now;
        }
        assert!(
            started.elapsed() < within,
            "no {name} after {within:?}; firing {now:?}; {:#}\n{}",
            drift(scorer).await["versions"][0]["hysteresis"],
            scorer.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn covariate_drift_alerts_within_the_hysteresis_and_nulls_show_as_missing() {
    v1();
    let m = mesh().await;
    let live = Live::start(
        m.url.clone(),
        vec![
            Phase {
                rows: rows(7, 0.01, Drift::default()),
                null_column: None,
            },
            Phase {
                rows: rows(
                    8,
                    0.01,
                    Drift {
                        amount_scale: 2.0,
                        new_category_share: 0.1,
                        ..Drift::default()
                    },
                ),
                null_column: None,
            },
            Phase {
                rows: rows(9, 0.01, Drift::default()),
                null_column: Some(3),
            },
        ],
    );
    // Three clean windows: judged, no finding.
    tokio::time::sleep(Duration::from_secs(3 * WINDOW_SECONDS + 2)).await;
    let clean = drift(&m.scorer).await;
    let version = &clean["versions"][0];
    assert_eq!(clean["monitoring"]["enabled"], true, "{clean}");
    assert_eq!(
        version["served_by"].as_array().unwrap().len(),
        2,
        "{version}"
    );
    let judged = version["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["judged"] == true)
        .count();
    assert!(judged >= 1, "{version:#}");
    assert_eq!(version["findings"], json!([]), "clean traffic: {version:#}");
    assert!(firing(&m.scorer).await.is_empty());

    // Retraining follows the findings: a dataset drift queues one job (the command
    // here registers nothing, so the job fails; what matters is what started it).
    admin(
        &m.scorer,
        Method::PUT,
        "/v1/models/fraud/retraining",
        json!({"command": ["true"], "triggers": {"drift": {"verdicts": ["dataset_drift"], "cooldown_seconds": 3600}}}),
    )
    .await;

    // Covariate drift: amounts doubled, 10% at a merchant category never seen.
    let onset = now_ms();
    live.switch(1);
    let alerts = until_firing(
        &m.scorer,
        "OutriderDatasetDrift",
        Duration::from_secs(8 * WINDOW_SECONDS),
    )
    .await;
    let took = now_ms() - onset;
    let state = drift(&m.scorer).await;
    conforms("GET", "/v1/models/{name}/drift", &state);
    let windows = state["versions"][0]["windows"].as_array().unwrap().clone();
    assert_eq!(
        windows[0]["sources"], state["versions"][0]["served_by"],
        "a window names the variants it was judged on"
    );
    let after_onset: Vec<&Value> = windows
        .iter()
        .filter(|w| w["end"].as_u64().unwrap() > onset)
        .collect();
    let first_found = after_onset
        .iter()
        .position(|w| {
            w["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["kind"] == "dataset_drift")
        })
        .unwrap()
        + 1;
    eprintln!(
        "covariate drift: dataset drift alert {:.1} s after the onset, in window {first_found} of those ending after it \
         (5 s windows, 2 of 3); firing {alerts:?}",
        took as f64 / 1000.0
    );
    assert!(
        alerts.contains(&("OutriderFeatureDrift".into(), "amount".into())),
        "{alerts:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the drift-triggered job",
        || async {
            let jobs = call(&m.scorer, Method::GET, "/v1/models/fraud/jobs", None, None).await;
            !jobs.json().unwrap()["jobs"].as_array().unwrap().is_empty()
        },
    )
    .await;
    let jobs = call(&m.scorer, Method::GET, "/v1/models/fraud/jobs", None, None)
        .await
        .json()
        .unwrap();
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "one job, then the cool-down: {jobs:?}");
    assert_eq!(
        (&jobs[0]["trigger"], &jobs[0]["reason"]),
        (&json!("drift"), &json!("model monitor: dataset_drift"))
    );
    assert!(
        alerts.contains(&("OutriderFeatureDrift".into(), "merchant_category".into())),
        "{alerts:?}"
    );
    // The first window after the onset may still hold clean traffic.
    assert!(
        first_found <= 3,
        "found in window {first_found} after the onset"
    );
    let latest = &state["versions"][0]["latest"];
    let amount = &latest["features"][0];
    assert_eq!(amount["name"], "amount");
    assert!(
        amount["statistics"]["psi"].as_f64().unwrap() > 0.2,
        "{amount}"
    );
    assert!(
        latest["features"][1]["unseen"].as_u64().unwrap() > 0,
        "{latest:#}"
    );
    let psi = scorer_metric(
        &m.scorer,
        "outrider_scorer_feature_drift",
        &[
            ("model", "fraud"),
            ("version", "1"),
            ("feature", "amount"),
            ("statistic", "psi"),
        ],
    )
    .await;
    assert!(psi > 0.2, "the gauge shows the latest window's PSI: {psi}");

    // A pipeline that sends nulls for the distance: the model refuses them, the
    // samples arrive without the distance and without a score.
    live.switch(2);
    let alerts = until_firing(
        &m.scorer,
        "OutriderFeatureMissing",
        Duration::from_secs(8 * WINDOW_SECONDS),
    )
    .await;
    assert!(
        alerts.contains(&(
            "OutriderFeatureMissing".into(),
            "distance_from_home_km".into()
        )),
        "{alerts:?}"
    );
    let (sent, _) = live.finish().await;
    let latest = drift(&m.scorer).await["versions"][0]["latest"].clone();
    let distance = &latest["features"][3];
    assert_eq!(distance["name"], "distance_from_home_km");
    assert!(
        distance["missing_share"].as_f64().unwrap() > 0.9,
        "{distance}"
    );
    assert!(
        latest["prediction"]["missing_share"].as_f64().unwrap() > 0.9,
        "{latest:#}"
    );
    // Still serving and judging.
    let ready = call(&m.scorer, Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200);
    eprintln!("{sent} requests sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concept_drift_shows_in_the_labelled_performance_and_nowhere_else() {
    v1();
    let m = mesh().await;
    // All fraud in the new pattern (cloned cards used in person), 3% of transactions.
    let live = Live::start(
        m.url.clone(),
        vec![Phase {
            rows: rows(
                11,
                0.03,
                Drift {
                    fraud_shift: 1.0,
                    ..Drift::default()
                },
            ),
            null_column: None,
        }],
    );
    tokio::time::sleep(Duration::from_secs(5 * WINDOW_SECONDS)).await;
    let (sent, labels) = live.finish().await;
    let events: Vec<Value> = labels
        .iter()
        .map(|(id, fraud)| json!({"request_id": id, "label": if *fraud { 1 } else { 0 }}))
        .collect();
    let positives = labels.iter().filter(|(_, f)| *f).count();
    let reply = call(
        &m.scorer,
        Method::POST,
        "/v1/feedback",
        Some(ADMIN_TOKEN),
        Some(json!({"events": events})),
    )
    .await;
    assert!(
        reply.status < 300,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let alerts = until_firing(
        &m.scorer,
        "OutriderRealisedPerformanceDrop",
        Duration::from_secs(40),
    )
    .await;
    let performance: Value = call(
        &m.scorer,
        Method::GET,
        "/v1/models/fraud/performance",
        None,
        None,
    )
    .await
    .json()
    .unwrap();
    conforms("GET", "/v1/models/{name}/performance", &performance);
    let version = &performance["versions"][0];
    let labelled = &version["labelled_window"];
    let recall = &labelled["realised"]["recall"];
    eprintln!(
        "concept drift: {sent} requests, {positives} frauds; realised recall {} (95% {}-{}) against {} on the reference; \
         estimated from the scores {}; firing {alerts:?}",
        recall["value"],
        recall["low"],
        recall["high"],
        labelled["reference_recall"],
        labelled["estimated"]["recall"]["value"]
    );
    assert!(
        alerts.contains(&("OutriderRealisedPerformanceDrop".into(), "recall".into())),
        "{alerts:?}"
    );
    assert!(recall["high"].as_f64().unwrap() < labelled["reference_recall"].as_f64().unwrap());
    // The estimate from the scores does not see it: the inputs did not move.
    let estimated = labelled["estimated"]["recall"]["value"].as_f64().unwrap();
    assert!(
        estimated > recall["value"].as_f64().unwrap() + 0.2,
        "{labelled:#}"
    );
    // Each window has its realised figures beside the estimate.
    let windows = version["windows"].as_array().unwrap();
    assert!(
        windows
            .iter()
            .any(|w| w["labelled"].as_u64().unwrap() > 0 && !w["realised"].is_null()),
        "{version:#}"
    );
    // Nothing else: no drift finding, no other alert.
    let state = drift(&m.scorer).await;
    for w in state["versions"][0]["windows"].as_array().unwrap() {
        assert_eq!(w["findings"], json!([]), "{w:#}");
    }
    assert!(
        alerts
            .iter()
            .all(|(name, _)| name == "OutriderRealisedPerformanceDrop"),
        "{alerts:?}"
    );
}
