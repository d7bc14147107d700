//! `make demo`: Envoy with the outrider filter (envoy/demo.yaml) in front of a stable
//! and a canary model stand-in, keyed traffic from a pool of users, and a live
//! per-variant table read from Envoy's own stats.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use outrider_filter_logic::override_token::mint;
use outrider_harness::admin_stats::RolloutFigures;
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::{Envoy, Launch};
use outrider_harness::paths;
use outrider_harness::standin::{Behaviour, StandIn};

/// Shows a sticky canary split in a real Envoy, live.
#[derive(Parser)]
struct Args {
    /// How long to send traffic, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Distinct users (sticky keys) the traffic comes from.
    #[arg(long, default_value_t = 2_000)]
    users: u32,
}

/// Ports of envoy/demo.yaml.
const LISTENER: &str = "http://127.0.0.1:10000";
const STABLE: ([u8; 4], u16) = ([127, 0, 0, 1], 18081);
const CANARY: ([u8; 4], u16) = ([127, 0, 0, 1], 18082);

/// What the client saw: each user's variant, and users seen on two variants.
#[derive(Default)]
struct ClientView {
    sent: AtomicU64,
    failed: AtomicU64,
    variant_of: Mutex<HashMap<u32, String>>,
    switched: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("outrider demo: starting two model stand-ins and Envoy 1.40 with the outrider filter");
    // The canary is a little slower and fails a little more often than stable.
    let stable = StandIn::start_on(
        "stable",
        SocketAddr::from(STABLE),
        Behaviour {
            latency_ms: (3, 12),
            error_rate: 0.002,
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
        },
    )
    .await
    .context("starting the canary stand-in on 127.0.0.1:18082")?;

    let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let bootstrap = paths::envoy_configs().join("demo.yaml");
    let envoy = Envoy::start_file(
        &bootstrap,
        &Launch::workers(2).env("OUTRIDER_OVERRIDE_SECRET", &secret),
    )
    .await
    .context("starting Envoy with envoy/demo.yaml")?;
    println!(
        "Envoy is live: traffic on {LISTENER}, admin on {} (pid {}); rollout `fraud`, stable 90% / canary 10%",
        envoy.admin_url(),
        envoy.pid()
    );

    let view = Arc::new(ClientView::default());
    let client = HttpClient::new();
    let traffic = tokio::spawn(drive(
        client.clone(),
        view.clone(),
        args.rate,
        args.users,
        secret,
    ));

    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let document = serde_json::from_str(
            &envoy
                .admin_get("/stats?format=json&filter=outrider")
                .await?,
        )?;
        let figures = RolloutFigures::from_admin_json(&document, "fraud");
        let table = render(&figures, &view, started.elapsed());
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        println!("{table}");
        std::io::stdout().flush()?;
    }
    traffic.abort();
    println!(
        "stopping: sent {} requests; the stand-ins received stable {}, canary {}",
        view.sent.load(Ordering::Relaxed),
        stable.requests(),
        canary.requests()
    );
    drop(envoy);
    println!("stopped Envoy and the stand-ins.");
    Ok(())
}

/// Keyed traffic at a fixed rate, and now and then a QA request with a valid
/// override token and one with a forged token.
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
            let mut headers = vec![("x-user-id", key.as_str())];
            if let Some(token) = &token {
                headers.push(("x-outrider-override", token));
            }
            view.sent.fetch_add(1, Ordering::Relaxed);
            match client
                .get(&format!("{LISTENER}/v2/models/fraud/infer"), &headers)
                .await
            {
                Ok(reply) if token.is_none() => {
                    let Some(variant) = reply.header("x-outrider-variant") else {
                        return;
                    };
                    if let Ok(mut seen) = view.variant_of.lock() {
                        let previous = seen.insert(user, variant.to_owned());
                        if previous.is_some_and(|p| p != variant) {
                            view.switched.fetch_add(1, Ordering::Relaxed);
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

fn render(figures: &RolloutFigures, view: &ClientView, elapsed: Duration) -> String {
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
    let mut out = format!(
        "outrider demo  t={:>3}s  rollout fraud  (from Envoy's /stats)\n\n{:<8} {:>7} {:>9} {:>7} {:>6} {:>7} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7}\n",
        elapsed.as_secs(),
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
        "p99 ms"
    );
    let mut variants: Vec<_> = figures.variants.iter().collect();
    variants.sort_by_key(|(name, v)| (std::cmp::Reverse(v.weight_bp), (*name).clone()));
    for (name, v) in variants {
        let share = if total > 0 {
            100.0 * v.requests as f64 / total as f64
        } else {
            0.0
        };
        let ms = |q: Option<f64>| q.map_or_else(|| "-".to_owned(), |q| format!("{q:.1}"));
        out.push_str(&format!(
            "{:<8} {:>6.2}% {:>9} {:>6.1}% {:>6} {:>7} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7}\n",
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
        ));
    }
    let rejected: Vec<String> = figures
        .overrides_rejected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    out.push_str(&format!(
        "\nclient: sent {}, failed {}, users seen on two variants {} (sticky: expect 0)\noverrides rejected: {}\n",
        view.sent.load(Ordering::Relaxed),
        view.failed.load(Ordering::Relaxed),
        view.switched.load(Ordering::Relaxed),
        if rejected.is_empty() { "none".to_owned() } else { rejected.join(", ") }
    ));
    out
}
