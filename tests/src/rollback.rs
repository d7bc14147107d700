//! How fast a broken canary is taken out of traffic (`outrider-bench rollback`): real
//! Envoy (two workers) with the filter, a real scorer, a stable and a canary stand-in,
//! keyed requests at a fixed rate with the canary at 10%. Each scenario is measured
//! from the fault's onset, on what the clients saw.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::bootstrap::{Cluster, LISTENER, Spec};
use crate::client::HttpClient;
use crate::envoy::Envoy;
use crate::load::{Outcome, Traffic};
use crate::paths;
use crate::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec, TELEMETRY_TOKEN};
use crate::standin::{Behaviour, Scoring, StandIn};

/// What one run of a scenario measured, from the fault's onset.
#[derive(Debug, Clone)]
pub struct Measured {
    /// When the last request the canary served was sent (the canary is at 0% after).
    pub to_zero: Option<Duration>,
    /// Responses with a 5xx (or no answer) the clients got.
    pub bad: usize,
    /// Analysis runs taken until the rollback (analysis scenarios).
    pub runs: Option<usize>,
    pub rolled_back_by: String,
    /// Bad responses by who answered (`envoy` when no variant did) and the time of
    /// the last one after the onset.
    pub bad_by: std::collections::BTreeMap<String, usize>,
    pub last_bad: Option<Duration>,
}

/// How the canary goes wrong, and who is to catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The canary starts answering 503; the filter's guardrail is on.
    GuardrailOn5xx,
    /// The canary starts answering 503; only the scorer's analysis judges.
    AnalysisOn5xx,
    /// The canary answers 200 with scores flipped on 60% of inputs, from the start.
    SilentlyWrong,
}

pub const RATE: u64 = 200;
pub const INTERVAL_S: u64 = 5;

async fn admin(scorer: &Scorer, method: Method, path: &str, body: Value) -> Result<Value> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let reply = HttpClient::new()
        .request(
            method,
            &format!("{}{path}", scorer.url()),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_string()),
        )
        .await?;
    if reply.status >= 300 {
        bail!(
            "{path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    reply.json()
}

fn echo(flip_percent: u64) -> Behaviour {
    Behaviour {
        scoring: Scoring::Echo { flip_percent },
        ..Behaviour::default()
    }
}

/// Runs one scenario once.
pub async fn run(scenario: Scenario, scorer_binary: &std::path::Path) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let scorer = Scorer::start(ScorerSpec {
        binary: scorer_binary.to_owned(),
        store: dir.path().join("scorer.db").display().to_string(),
        replica_id: "bench".into(),
        extra_args: vec!["--window-seconds".into(), "1".into()],
    })
    .await
    .context("starting the scorer (run `make build` first)")?;
    let analysis = json!({
        "interval_seconds": INTERVAL_S,
        "min_requests": 20,
        // One failed run decides: the fastest the analysis can be.
        "failure_limit": 1,
        "checks": [
            {"metric": "error_rate", "max": 0.05},
            {"metric": "prediction_ks", "max": 0.25, "min_samples": 20}
        ]
    });
    let mut spec = json!({
        "name": "fraud",
        "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
        // One step held for an hour: the canary stays at 10% until it is rolled back.
        "steps": [{"weights": {"stable": 90, "canary": 10}, "hold_seconds": 3600}],
    });
    if scenario != Scenario::GuardrailOn5xx {
        spec["analysis"] = analysis;
    }
    admin(&scorer, Method::POST, "/v1/rollouts", spec).await?;

    let mut config = json!({
        "rollout": "fraud",
        "salt": "bench-rollback",
        "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
        "response_header": "x-outrider-variant",
        "scorer": {"cluster": "outrider-scorer", "token": TELEMETRY_TOKEN,
                   "poll_interval_ms": 300, "flush_interval_ms": 300, "timeout_ms": 500},
        "telemetry": {"sample_rate": 1.0, "features": {"id": "/inputs/0/data/0"},
                      "score": "/outputs/0/data/0", "max_samples_per_batch": 1000}
    });
    if scenario == Scenario::GuardrailOn5xx {
        config["guardrail"] =
            json!({"window_ms": 10_000, "min_requests": 20, "max_5xx_share": 0.05});
    }
    let canary_behaviour = if scenario == Scenario::SilentlyWrong {
        echo(60)
    } else {
        echo(0)
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let stable = StandIn::start_on("stable", loopback, echo(0)).await?;
    let canary = StandIn::start_on("canary", loopback, canary_behaviour).await?;
    let clusters = vec![
        Cluster::new("stable", stable.addr),
        Cluster::new("canary", canary.addr),
        Cluster::new("outrider-scorer", scorer.addr),
    ];
    let bootstrap = Spec::rollout(&paths::filter_wasm()?, &config, clusters)?.bootstrap();
    let envoy = Envoy::start(&bootstrap, 2).await?;
    let url = format!("{}/v2/models/fraud/infer", envoy.url(LISTENER).await?);

    let traffic = Traffic::start(url, RATE);
    // The silently wrong canary is wrong from its first request; the others run
    // healthy first, so windows and runs hold healthy history.
    let onset = if scenario == Scenario::SilentlyWrong {
        Instant::now()
    } else {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let onset = Instant::now();
        canary.fail_with(503);
        onset
    };
    let deadline = onset + Duration::from_secs(60);
    let by = loop {
        let events = admin(&scorer, Method::GET, "/v1/rollouts/fraud/events", json!({})).await;
        let back = events.ok().and_then(|e| {
            e["events"]
                .as_array()?
                .iter()
                .find(|e| e["kind"] == "rolled_back")
                .map(|e| e["actor"].as_str().unwrap_or("").to_owned())
        });
        if let Some(by) = back {
            break by;
        }
        if Instant::now() > deadline {
            break String::from("nobody within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let the rolled-back state reach every worker and the last requests finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = traffic.finish().await;
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent >= onset).collect();
    let to_zero = after
        .iter()
        .filter(|o| o.served_by == "canary")
        .map(|o| o.sent - onset)
        .max();
    let bad_ones: Vec<&&Outcome> = after.iter().filter(|o| o.is_bad()).collect();
    let bad = bad_ones.len();
    let mut bad_by = std::collections::BTreeMap::new();
    for o in &bad_ones {
        let who = if o.served_by.is_empty() {
            format!("envoy {}", o.status)
        } else {
            o.served_by.clone()
        };
        *bad_by.entry(who).or_insert(0) += 1;
    }
    let last_bad = bad_ones.iter().map(|o| o.sent - onset).max();
    let runs = if scenario == Scenario::GuardrailOn5xx {
        None
    } else {
        let a = admin(
            &scorer,
            Method::GET,
            "/v1/rollouts/fraud/analysis",
            json!({}),
        )
        .await?;
        a["runs"].as_array().map(|r| r.len())
    };
    drop(envoy);
    Ok(Measured {
        to_zero,
        bad,
        runs,
        rolled_back_by: by,
        bad_by,
        last_bad,
    })
}
