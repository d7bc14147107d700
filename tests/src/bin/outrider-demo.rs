//! `make demo`: a canary rollout on one machine. Envoy with the outrider filter
//! (envoy/demo.yaml) in front of a stable and a canary model stand-in; the scorer
//! (SQLite) holding the rollout, which ramps the canary through a step schedule and is
//! then promoted by an operator call; keyed traffic from a pool of users; and a live
//! table read from Envoy's stats and the scorer's API.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use hyper::Method;
use outrider_filter_logic::override_token::mint;
use outrider_harness::admin_stats::RolloutFigures;
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::{Envoy, Launch};
use outrider_harness::paths;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec, TELEMETRY_TOKEN};
use outrider_harness::standin::{Behaviour, StandIn};
use serde_json::{Value, json};

/// Shows a canary rollout in a real Envoy, driven by the scorer, live.
#[derive(Parser)]
struct Args {
    /// Seconds each step of the ramp (10%, 25%, 50% canary) is held; the first is
    /// also the filter's configured fallback.
    #[arg(long, default_value_t = 8)]
    step_seconds: u64,
    /// Requests per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Distinct users (sticky keys) the traffic comes from.
    #[arg(long, default_value_t = 2_000)]
    users: u32,
}

/// Addresses of envoy/demo.yaml.
const LISTENER: &str = "http://127.0.0.1:10000";
const SCORER: &str = "127.0.0.1:8750";
const STABLE: ([u8; 4], u16) = ([127, 0, 0, 1], 18081);
const CANARY: ([u8; 4], u16) = ([127, 0, 0, 1], 18082);

/// What the client saw: each user's variant, and users who left the canary (the
/// sticky, monotone ramp says: none).
#[derive(Default)]
struct ClientView {
    sent: AtomicU64,
    failed: AtomicU64,
    variant_of: Mutex<HashMap<u32, String>>,
    left_canary: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("outrider demo: model stand-ins, the scorer, and Envoy 1.40 with the outrider filter");
    // The canary is a little slower and fails a little more often than stable.
    let stable = StandIn::start_on(
        "stable",
        SocketAddr::from(STABLE),
        Behaviour {
            latency_ms: (3, 12),
            error_rate: 0.002,
            ..Behaviour::default()
        },
    )
    .await
    .context("starting the stable stand-in on 127.0.0.1:18081 (is a demo already running?)")?;
    let canary = StandIn::start_on(
        "canary",
        SocketAddr::from(CANARY),
        Behaviour {
            latency_ms: (5, 25),
            error_rate: 0.02,
            ..Behaviour::default()
        },
    )
    .await
    .context("starting the canary stand-in on 127.0.0.1:18082")?;

    let state = tempfile::tempdir()?;
    let scorer = Scorer::start(ScorerSpec {
        binary: paths::repo_root().join("target/release/outrider-scorer"),
        store: state.path().join("scorer.db").display().to_string(),
        replica_id: "demo".into(),
        extra_args: vec![
            "--listen".into(),
            SCORER.into(),
            "--window-seconds".into(),
            "5".into(),
        ],
    })
    .await
    .context("starting the scorer on 127.0.0.1:8750 (run `make build` first)")?;
    let hold = args.step_seconds;
    let ramp = json!({
        "name": "fraud",
        "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
        "steps": [
            {"weights": {"stable": 90, "canary": 10}, "hold_seconds": hold},
            {"weights": {"stable": 75, "canary": 25}, "hold_seconds": hold},
            {"weights": {"stable": 50, "canary": 50}, "hold_seconds": hold}
        ],
        "actor": "demo",
        "reason": "fraud model v2: ramp 10%, 25%, 50%"
    });
    scorer_call(&scorer, Method::POST, "/v1/rollouts", Some(ramp)).await?;

    let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let launch = Launch::workers(2)
        .env("OUTRIDER_OVERRIDE_SECRET", &secret)
        .env("OUTRIDER_TELEMETRY_TOKEN", TELEMETRY_TOKEN);
    let envoy = Envoy::start_file(&paths::envoy_configs().join("demo.yaml"), &launch)
        .await
        .context("starting Envoy with envoy/demo.yaml")?;
    println!(
        "Envoy is live: traffic on {LISTENER}, admin on {} (pid {}); scorer on http://{SCORER}; rollout `fraud` ramps the canary",
        envoy.admin_url(),
        envoy.pid()
    );

    let view = Arc::new(ClientView::default());
    let traffic = tokio::spawn(drive(
        HttpClient::new(),
        view.clone(),
        args.rate,
        args.users,
        secret,
    ));

    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut promoted_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rollout = scorer_call(&scorer, Method::GET, "/v1/rollouts/fraud", None).await?;
        // The schedule done, the controller promotes the canary; a few seconds later
        // the demo ends.
        if rollout["status"] == "promoted" && promoted_at.is_none() {
            promoted_at = Some(Instant::now());
        }
        let document = serde_json::from_str(
            &envoy
                .admin_get("/stats?format=json&filter=outrider")
                .await?,
        )?;
        let figures = RolloutFigures::from_admin_json(&document, "fraud");
        let counted =
            scorer_call(&scorer, Method::GET, "/v1/rollouts/fraud/telemetry", None).await?;
        let events = scorer_call(&scorer, Method::GET, "/v1/rollouts/fraud/events", None).await?;
        let table = render(
            &figures,
            &rollout,
            &counted,
            &events,
            &view,
            started.elapsed(),
        );
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        println!("{table}");
        std::io::stdout().flush()?;
        if promoted_at.is_some_and(|at| at.elapsed() >= Duration::from_secs(4)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(hold * 3 + 60) {
            bail!("the rollout did not complete in time");
        }
    }
    traffic.abort();
    println!(
        "stopping: sent {} requests ({} failed); the stand-ins received stable {}, canary {}; users who left the canary: {}",
        view.sent.load(Ordering::Relaxed),
        view.failed.load(Ordering::Relaxed),
        stable.requests(),
        canary.requests(),
        view.left_canary.load(Ordering::Relaxed),
    );
    drop(envoy);
    drop(scorer);
    println!("stopped Envoy, the scorer and the stand-ins.");
    Ok(())
}

async fn scorer_call(
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

/// Keyed inference requests at a fixed rate, and now and then a QA request with a
/// valid override token and one with a forged token.
async fn drive(client: HttpClient, view: Arc<ClientView>, rate: u32, users: u32, secret: String) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let user = fastrand::u32(0..users.max(1));
        let token = match n % 500 {
            0 => {
                let expiry = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 600;
                mint(secret.as_bytes(), "fraud", "canary", expiry)
            }
            250 => Some(format!("canary.4102444800.{}", "0".repeat(64))),
            _ => None,
        };
        let (client, view) = (client.clone(), view.clone());
        tokio::spawn(async move {
            let key = format!("user-{user}");
            let amount = format!("{:.2}", 5.0 + fastrand::f64() * 400.0);
            let body = format!(
                r#"{{"inputs": [{{"name": "transaction", "datatype": "FP64", "shape": [1, 1], "data": [{amount}]}}]}}"#
            );
            let mut headers = vec![
                ("x-user-id", key.as_str()),
                ("content-type", "application/json"),
            ];
            if let Some(token) = &token {
                headers.push(("x-outrider-override", token));
            }
            view.sent.fetch_add(1, Ordering::Relaxed);
            let url = format!("{LISTENER}/v2/models/fraud/infer");
            match client
                .request(Method::POST, &url, &headers, Bytes::from(body))
                .await
            {
                Ok(reply) if token.is_none() => {
                    let Some(variant) = reply.header("x-outrider-variant") else {
                        return;
                    };
                    if let Ok(mut seen) = view.variant_of.lock() {
                        let previous = seen.insert(user, variant.to_owned());
                        if previous.as_deref() == Some("canary") && variant != "canary" {
                            view.left_canary.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    view.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

fn render(
    figures: &RolloutFigures,
    rollout: &Value,
    counted: &Value,
    events: &Value,
    view: &ClientView,
    elapsed: Duration,
) -> String {
    let total: u64 = figures.variants.values().map(|v| v.requests).sum();
    let users: HashMap<String, u64> = view.variant_of.lock().map_or_else(
        |_| HashMap::new(),
        |seen| {
            let mut by_variant = HashMap::new();
            for variant in seen.values() {
                *by_variant.entry(variant.clone()).or_insert(0) += 1;
            }
            by_variant
        },
    );
    let counted_by = |name: &str| {
        counted["variants"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["variant"] == name))
            .and_then(|v| v["requests"].as_u64())
            .unwrap_or(0)
    };
    let step = rollout["step"]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |s| format!("{}", s + 1));
    let mut out = format!(
        "outrider demo  t={:>3}s  rollout fraud  status {}  version {}  step {}\n\n{:<8} {:>7} {:>9} {:>7} {:>6} {:>7} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>9}\n",
        elapsed.as_secs(),
        rollout["status"].as_str().unwrap_or("?"),
        rollout["version"],
        step,
        "variant",
        "weight",
        "requests",
        "share",
        "users",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "ovr",
        "p50 ms",
        "p99 ms",
        "scorer"
    );
    let mut variants: Vec<_> = figures.variants.iter().collect();
    variants.sort_by_key(|(name, _)| if name.as_str() == "stable" { 0 } else { 1 });
    for (name, v) in variants {
        let share = if total > 0 {
            100.0 * v.requests as f64 / total as f64
        } else {
            0.0
        };
        let ms = |q: Option<f64>| q.map_or_else(|| "-".to_owned(), |q| format!("{q:.1}"));
        out.push_str(&format!(
            "{:<8} {:>6.2}% {:>9} {:>6.1}% {:>6} {:>7} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>9}\n",
            name,
            v.weight_bp as f64 / 100.0,
            v.requests,
            share,
            users.get(name).copied().unwrap_or(0),
            v.classes[0],
            v.classes[1],
            v.classes[2],
            v.classes[3],
            v.overrides_honoured,
            ms(v.p50_ms),
            ms(v.p99_ms),
            counted_by(name),
        ));
    }
    let rejected: Vec<String> = figures
        .overrides_rejected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    out.push_str(&format!(
        "\nclient: sent {}, failed {}, users who left the canary {} (sticky, monotone ramp: expect 0)\noverrides rejected: {}   samples at the scorer: {}\n\nlatest changes:\n",
        view.sent.load(Ordering::Relaxed),
        view.failed.load(Ordering::Relaxed),
        view.left_canary.load(Ordering::Relaxed),
        if rejected.is_empty() { "none".to_owned() } else { rejected.join(", ") },
        counted["samples"],
    ));
    let all = events["events"].as_array().cloned().unwrap_or_default();
    for e in all.iter().skip(all.len().saturating_sub(4)) {
        out.push_str(&format!(
            "  v{} {:<12} by {:<10} {}  weights {}\n",
            e["version"],
            e["kind"].as_str().unwrap_or(""),
            e["actor"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or(""),
            e["details"]["weights"]
        ));
    }
    out
}
