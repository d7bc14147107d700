//! `make bench-drift`: the model monitor end to end, and Evidently beside it.
//!
//! The fraud model (trained here, registered in an embedded registry) is served over
//! the Open Inference Protocol behind Envoy and the filter, which samples 10% of 200
//! requests a second (ten features and the score) for a release scorer with
//! `--registry` and 30-second windows (3 of 5 for a finding). After two windows of
//! clean traffic the traffic drifts (amounts doubled, 10% at a merchant category the
//! model never saw); the benchmark measures:
//!
//! - the time from the drift's onset to the first feature-drift and dataset-drift
//!   alerts, and in how many windows;
//! - the scorer's CPU per 1,000 samples monitored (user + system, the whole process),
//!   beside a scorer without `--registry` taking the same traffic: the difference is
//!   the monitor's;
//! - the time to judge each window in process (the monitor's `judge`, ten features and
//!   the score), and Evidently's `DataDriftPreset` report on the same windows' samples
//!   against the same reference rows, in the same run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::Envoy;
use outrider_harness::load::cpu_seconds;
use outrider_harness::paths;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec, TELEMETRY_TOKEN};
use outrider_model::data::schema::FEATURES;
use outrider_model::data::{Drift, GeneratorConfig, Transaction, generate};
use outrider_model::registry::{self, AnyRegistry};
use outrider_model::serve::{ServeOptions, Server};
use outrider_model::train::{self, TrainConfig, Trained};
use outrider_scorer::monitor::judge::{MonitoredSample, Span, judge};
use outrider_scorer::monitor::settings::{MonitorSettings, WindowBy};
use serde_json::{Value, json};

const RATE: u64 = 200;
const SAMPLE_RATE: f64 = 0.1;
const WINDOW_SECONDS: u64 = 30;
const MONITOR: &str = r#"
[monitor]
min_samples = 200
dataset_share = 0.2
exclude = ["hour"]
[monitor.window]
by = "time"
width = 30
"#;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Mesh {
    scorer: Scorer,
    _envoy: Envoy,
    url: String,
}

/// A scorer (with the registry, or without) and an Envoy sampling for it.
async fn mesh(dir: &Path, server: &Server, registry: Option<&Path>, label: &str) -> Result<Mesh> {
    let mut args = vec!["--window-seconds".to_owned(), "1".to_owned()];
    if let Some(r) = registry {
        let config = dir.join(format!("{label}.toml"));
        std::fs::write(&config, MONITOR)?;
        args.extend([
            "--registry".into(),
            r.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ]);
    }
    let scorer = Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: dir.join(format!("{label}.db")).display().to_string(),
        replica_id: label.to_owned(),
        extra_args: args,
    })
    .await?;
    let features: serde_json::Map<String, Value> = FEATURES
        .iter()
        .enumerate()
        .map(|(i, name)| ((*name).to_owned(), json!(format!("/inputs/0/data/{i}"))))
        .collect();
    let config = json!({
        "rollout": "fraud", "salt": "bench", "response_header": "x-outrider-variant",
        "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
        "scorer": {"cluster": "outrider-scorer", "token": TELEMETRY_TOKEN, "poll_interval_ms": 1000,
                   "flush_interval_ms": 1000, "timeout_ms": 1000},
        "telemetry": {"sample_rate": SAMPLE_RATE, "score": "/outputs/0/data/0", "features": features,
                      "max_samples_per_batch": 1000}
    });
    let clusters = vec![
        Cluster::new("stable", server.http_addr),
        Cluster::new("canary", server.http_addr),
        Cluster::new("outrider-scorer", scorer.addr),
    ];
    let spec = Spec::rollout(&paths::filter_wasm()?, &config, clusters)?;
    let envoy = Envoy::start(&spec.bootstrap(), 1).await?;
    let url = format!("{}/v2/models/fraud/infer", envoy.url(LISTENER).await?);
    let body = json!({"name": "fraud", "variants": [
        {"name": "stable", "weight": 100, "model": "models:/fraud/1"},
        {"name": "canary", "weight": 0, "model": "models:/fraud/1"}]});
    let reply = HttpClient::new()
        .request(
            Method::POST,
            &format!("{}/v1/rollouts", scorer.url()),
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_string()),
        )
        .await?;
    if reply.status != 201 {
        bail!("creating the rollout: {}", reply.status);
    }
    Ok(Mesh {
        scorer,
        _envoy: envoy,
        url,
    })
}

/// Open-loop traffic at RATE from the current row set until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(url: String, phases: Arc<Vec<Vec<Transaction>>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let task = {
            let (stop, phase) = (stop.clone(), phase.clone());
            tokio::spawn(async move {
                let client = HttpClient::new();
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
                let mut requests = tokio::task::JoinSet::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let rows = &phases[phase.load(Ordering::Relaxed)];
                    let row = &rows[i % rows.len()];
                    let body = json!({"inputs": [{"name": "transaction", "datatype": "FP32",
                        "shape": [1, 10], "data": row.features().to_vec()}]});
                    let (client, url, key) = (client.clone(), url.clone(), format!("card-{i}"));
                    i += 1;
                    requests.spawn(async move {
                        let _ = client
                            .request(
                                Method::POST,
                                &url,
                                &[("x-user-id", &key), ("content-type", "application/json")],
                                Bytes::from(body.to_string()),
                            )
                            .await;
                    });
                    while requests.try_join_next().is_some() {}
                }
                while requests.join_next().await.is_some() {}
            })
        };
        Self { stop, phase, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

async fn get(scorer: &Scorer, path: &str) -> Result<Value> {
    let reply = HttpClient::new()
        .request(
            Method::GET,
            &format!("{}{path}", scorer.url()),
            &[],
            Bytes::new(),
        )
        .await?;
    reply.json()
}

async fn firing(scorer: &Scorer) -> Result<Vec<String>> {
    let alerts = get(scorer, "/v1/alerts?firing=true").await?;
    Ok(alerts["alerts"]
        .as_array()
        .context("alerts")?
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect())
}

fn rows(seed: u64, drift: Drift) -> Result<Vec<Transaction>> {
    Ok(generate(&GeneratorConfig {
        rows: 60_000,
        seed,
        days: 40,
        drift,
        ..GeneratorConfig::default()
    })?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let python = std::env::var("OUTRIDER_PYTHON").context(
        "OUTRIDER_PYTHON (the venv's python with Evidently) is not set; run `make bench-drift`",
    )?;
    let dir = tempfile::tempdir()?;
    eprintln!("training the model ...");
    let train_rows = generate(&GeneratorConfig {
        rows: 40_000,
        seed: 1,
        ..GeneratorConfig::default()
    })?;
    let trained: Trained = train::train(&train_rows, &TrainConfig::default())?;
    let registry_dir = dir.path().join("registry");
    let registry = AnyRegistry::open(registry_dir.to_str().context("path")?)?;
    registry::publish(&registry, &trained, "fraud").await?;
    let server = Server::start(
        ServeOptions {
            http: "127.0.0.1:0".parse()?,
            grpc: None,
            model: "models:/fraud/1".parse()?,
            name: None,
            poll: None,
            max_request_bytes: 1 << 20,
        },
        Arc::new(registry),
    )
    .await?;
    server.wait_ready(Duration::from_secs(60)).await?;
    let phases = Arc::new(vec![
        rows(7, Drift::default())?,
        rows(
            8,
            Drift {
                amount_scale: 2.0,
                new_category_share: 0.1,
                ..Drift::default()
            },
        )?,
    ]);

    // The monitored scorer: two clean windows, then drift until the alerts fire.
    let m = mesh(dir.path(), &server, Some(&registry_dir), "monitored").await?;
    let cpu_start = cpu_seconds(m.scorer.pid())?;
    let traffic = Traffic::start(m.url.clone(), phases.clone());
    tokio::time::sleep(Duration::from_secs(2 * WINDOW_SECONDS + 5)).await;
    if !firing(&m.scorer).await?.is_empty() {
        bail!("alerts before any drift: {:?}", firing(&m.scorer).await?);
    }
    let onset = now_ms();
    traffic.phase.store(1, Ordering::Relaxed);
    let started = Instant::now();
    let (mut feature_alert, mut dataset_alert) = (None, None);
    while started.elapsed() < Duration::from_secs(12 * WINDOW_SECONDS)
        && (feature_alert.is_none() || dataset_alert.is_none())
    {
        let now = firing(&m.scorer).await?;
        if feature_alert.is_none() && now.iter().any(|a| a == "OutriderFeatureDrift") {
            feature_alert = Some(started.elapsed());
        }
        if dataset_alert.is_none() && now.iter().any(|a| a == "OutriderDatasetDrift") {
            dataset_alert = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    traffic.stop().await;
    let traffic_seconds = started.elapsed().as_secs_f64() + (2 * WINDOW_SECONDS + 5) as f64;
    // Let the last complete window be judged, then read the CPU.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_monitored = cpu_seconds(m.scorer.pid())? - cpu_start;
    let state = get(&m.scorer, "/v1/models/fraud/drift?limit=500").await?;
    let windows = state["versions"][0]["windows"]
        .as_array()
        .context("windows")?
        .clone();
    let monitored: u64 = windows
        .iter()
        .map(|w| w["samples"].as_u64().unwrap_or(0))
        .sum();
    let found_in = windows
        .iter()
        .filter(|w| w["end"].as_u64().unwrap_or(0) > onset)
        .position(|w| {
            w["findings"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["kind"] == "dataset_drift"))
        })
        .map(|i| i + 1);

    // The same windows' samples, judged in process and by Evidently.
    let samples = get(&m.scorer, "/v1/rollouts/fraud/samples?limit=10000").await?;
    let samples: Vec<MonitoredSample> = samples["samples"]
        .as_array()
        .context("samples")?
        .iter()
        .enumerate()
        .map(|(i, s)| MonitoredSample {
            id: i as u64,
            at_ms: s["at_ms"].as_u64().unwrap_or(0),
            features: serde_json::from_value(s["features"].clone()).unwrap_or_default(),
            score: s["score"].as_f64(),
        })
        .collect();
    let settings: MonitorSettings = toml::from_str::<toml::Table>(MONITOR)?
        .get("monitor")
        .context("monitor")?
        .clone()
        .try_into()?;
    let header = FEATURES.join(",") + ",score";
    let line = |f: &dyn Fn(&str) -> f64, score: f64| -> String {
        let mut cells: Vec<String> = FEATURES.iter().map(|n| f(n).to_string()).collect();
        cells.push(score.to_string());
        cells.join(",")
    };
    // The reference Evidently compares with: the rows the profile was built from.
    let model = outrider_model::onnx::OnnxModel::from_bytes(&trained.onnx)?;
    let mut ordered: Vec<&Transaction> = train_rows.iter().collect();
    ordered.sort_by_key(|t| (t.timestamp, t.transaction_id));
    ordered.truncate(trained.report.train_rows as usize);
    let ref_scores = train::score(&model, &ordered)?;
    let mut reference = vec![header.clone()];
    for (t, s) in ordered.iter().zip(&ref_scores) {
        let x = t.features();
        reference.push(line(
            &|n| f64::from(x[FEATURES.iter().position(|f| *f == n).unwrap_or(0)]),
            *s,
        ));
    }
    let reference_csv = dir.path().join("reference.csv");
    std::fs::write(&reference_csv, reference.join("\n"))?;
    let mut window_files = Vec::new();
    let mut ours = Vec::new();
    for (k, w) in windows.iter().enumerate() {
        let (start, end) = (
            w["start"].as_u64().unwrap_or(0),
            w["end"].as_u64().unwrap_or(0),
        );
        let inside: Vec<MonitoredSample> = samples
            .iter()
            .filter(|s| s.at_ms >= start && s.at_ms < end)
            .cloned()
            .collect();
        if (inside.len() as u64) < settings.min_samples
            || inside.len() as u64 != w["samples"].as_u64().unwrap_or(0)
        {
            continue; // a window older than the samples read back, or not judged
        }
        let t = Instant::now();
        let report = judge(
            &trained.profile,
            1,
            Span {
                by: WindowBy::Time,
                start,
                end,
            },
            &inside,
            &settings,
            0,
        );
        ours.push((
            t.elapsed().as_secs_f64(),
            inside.len(),
            report.dataset.share,
        ));
        let mut csv = vec![header.clone()];
        for s in inside
            .iter()
            .filter(|s| s.score.is_some() && s.features.len() == FEATURES.len())
        {
            csv.push(line(&|n| s.features[n], s.score.unwrap_or(0.0)));
        }
        let path = dir.path().join(format!("window-{k}.csv"));
        std::fs::write(&path, csv.join("\n"))?;
        window_files.push(path);
    }
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/drift/evidently_windows.py"))
        .arg(&reference_csv)
        .args(&window_files)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()?;
    if !out.status.success() {
        bail!("evidently: {}", String::from_utf8_lossy(&out.stderr));
    }
    let evidently: Value = serde_json::from_slice(&out.stdout)?;
    let their: Vec<f64> = evidently["windows"]
        .as_array()
        .context("windows")?
        .iter()
        .filter_map(|w| w["seconds"].as_f64())
        .collect();
    let their_share: Vec<f64> = evidently["windows"]
        .as_array()
        .context("windows")?
        .iter()
        .filter_map(|w| w["drifted_share"].as_f64())
        .collect();
    drop(m);

    // The same traffic, clean, into a scorer without the monitor, for as long.
    let b = mesh(dir.path(), &server, None, "unmonitored").await?;
    let cpu_start = cpu_seconds(b.scorer.pid())?;
    let traffic = Traffic::start(b.url.clone(), phases.clone());
    tokio::time::sleep(Duration::from_secs_f64(traffic_seconds)).await;
    traffic.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_plain = cpu_seconds(b.scorer.pid())? - cpu_start;
    let plain_samples = get(&b.scorer, "/v1/rollouts/fraud/samples?limit=10000").await?["samples"]
        .as_array()
        .map_or(0, Vec::len);

    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "not raised".to_owned(),
            |d| format!("{:.1} s", d.as_secs_f64()),
        )
    };
    let per_k = |cpu: f64, n: f64| 1000.0 * cpu / n.max(1.0);
    let our_ms = median(ours.iter().map(|o| o.0 * 1000.0).collect());
    let their_ms = median(their.iter().map(|s| s * 1000.0).collect());
    println!(
        "\nmodel monitor, {RATE} req/s sampled at {SAMPLE_RATE}: {WINDOW_SECONDS} s windows, 3 of 5 for a finding"
    );
    println!("| figure | value |\n|---|---|");
    println!(
        "| drift onset to OutriderFeatureDrift | {} |",
        ms(feature_alert)
    );
    println!(
        "| drift onset to OutriderDatasetDrift | {} (window {} of those ending after the onset) |",
        ms(dataset_alert),
        found_in.map_or("-".into(), |n| n.to_string())
    );
    println!(
        "| windows judged / samples monitored | {} / {monitored} |",
        windows.len()
    );
    println!(
        "| scorer CPU, monitored: s per 1,000 samples | {:.4} ({cpu_monitored:.2} s over {traffic_seconds:.0} s) |",
        per_k(cpu_monitored, monitored as f64)
    );
    println!(
        "| scorer CPU, no monitor, same traffic: s per 1,000 samples | {:.4} ({cpu_plain:.2} s, {plain_samples} samples) |",
        per_k(cpu_plain, plain_samples as f64)
    );
    println!(
        "| the monitor's share: s per 1,000 samples | {:.4} |",
        per_k(cpu_monitored, monitored as f64) - per_k(cpu_plain, plain_samples as f64)
    );
    println!(
        "| judging one window in process (10 features + score), median | {our_ms:.2} ms over {} windows of {}-{} samples |",
        ours.len(),
        ours.iter().map(|o| o.1).min().unwrap_or(0),
        ours.iter().map(|o| o.1).max().unwrap_or(0)
    );
    println!(
        "| Evidently DataDriftPreset on the same windows, median | {their_ms:.1} ms (import {:.1} s, once) |",
        evidently["import_seconds"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "| Evidently / outrider, time per window | {:.0}x |",
        their_ms / our_ms
    );
    println!("\nper window: outrider dataset share / Evidently drifted share");
    for (o, e) in ours.iter().zip(&their_share) {
        println!("  {:>4} samples: {:.2} / {:.2}", o.1, o.2, e);
    }
    Ok(())
}
