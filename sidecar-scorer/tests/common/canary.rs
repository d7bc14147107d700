//! A canary under analysis: Envoy with the filter in front of a stable and a canary
//! stand-in, linked to a scorer, and the reads of the rollout `fraud` its tests make.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::envoy::Envoy;
use outrider_harness::load::Traffic;
use outrider_harness::paths;
use outrider_harness::scorer::Scorer;
use outrider_harness::standin::{Behaviour, Scoring, StandIn};
use serde_json::{Value, json};

use super::{call, linked_config};

/// Stand-ins with their own behaviour per variant, and Envoy linked to the scorer.
pub struct Mesh {
    pub envoy: Envoy,
    pub url: String,
    /// Stable, then canary.
    pub standins: Vec<StandIn>,
}

pub async fn mesh(scorer: &Scorer, stable: Behaviour, canary: Behaviour) -> Mesh {
    mesh_with(scorer, stable, canary, None).await
}

pub async fn mesh_with(
    scorer: &Scorer,
    stable: Behaviour,
    canary: Behaviour,
    guardrail: Option<Value>,
) -> Mesh {
    let mut config = linked_config(100.0, 0.0, 300, 300);
    if let Some(g) = guardrail {
        config["guardrail"] = g;
    }
    config["telemetry"] = json!({
        "sample_rate": 1.0,
        "features": {"id": "/inputs/0/data/0"},
        "score": "/outputs/0/data/0",
        "max_samples_per_batch": 1000
    });
    let mut standins = Vec::new();
    let mut clusters = Vec::new();
    for (name, behaviour) in [("stable", stable), ("canary", canary)] {
        let s = StandIn::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0)), behaviour)
            .await
            .unwrap();
        clusters.push(Cluster::new(name, s.addr));
        standins.push(s);
    }
    clusters.push(Cluster::new("outrider-scorer", scorer.addr));
    let spec = Spec::rollout(&paths::filter_wasm().unwrap(), &config, clusters).unwrap();
    let envoy = Envoy::start(&spec.bootstrap(), 2).await.unwrap();
    let url = format!(
        "{}/v2/models/fraud/infer",
        envoy.url(LISTENER).await.unwrap()
    );
    Mesh {
        envoy,
        url,
        standins,
    }
}

pub fn echo(flip_percent: u64) -> Behaviour {
    Behaviour {
        scoring: Scoring::Echo { flip_percent },
        ..Behaviour::default()
    }
}

/// Stops the traffic; the requests that failed.
pub async fn failed(traffic: Traffic) -> usize {
    traffic
        .finish()
        .await
        .iter()
        .filter(|o| o.status != 200)
        .count()
}

pub async fn rollout(scorer: &Scorer) -> Value {
    call(scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap()
}

pub async fn events(scorer: &Scorer) -> Vec<Value> {
    call(scorer, Method::GET, "/v1/rollouts/fraud/events", None, None)
        .await
        .json()
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .clone()
}

pub async fn runs(scorer: &Scorer) -> Vec<Value> {
    call(
        scorer,
        Method::GET,
        "/v1/rollouts/fraud/analysis",
        None,
        None,
    )
    .await
    .json()
    .unwrap()["runs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits for the rollout to reach `status`; the seconds it took.
pub async fn reaches(scorer: &Scorer, status: &str, within: Duration) -> f64 {
    let started = Instant::now();
    while rollout(scorer).await["status"] != status {
        if started.elapsed() > within {
            let runs = runs(scorer).await;
            let reasons: Vec<String> = runs
                .iter()
                .map(|r| format!("{} {}: {}", r["outcome"], r["requests"], r["reason"]))
                .collect();
            panic!(
                "not {status} after {within:?}: {}\nruns:\n{}",
                rollout(scorer).await,
                reasons.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed().as_secs_f64()
}
