//! The stages around a rollout's steps, end to end with Envoy, the filter, stand-in
//! models and a real scorer: a pre-rollout gate that holds until it agrees, a shadow
//! stage that lets the candidate take traffic only once its shadow report passes (and
//! aborts it when the report fails), a blue-green preview judged by the analysis then
//! switched behind a confirm-promotion gate, and switched back, each switch in effect
//! within one poll; and the analysis' rollback waiting for its pre-rollback gate.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use common::*;
use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::envoy::Envoy;
use outrider_harness::load::{Outcome, Traffic};
use outrider_harness::paths;
use outrider_harness::scorer::Scorer;
use outrider_harness::standin::{Behaviour, Scoring, StandIn};
use serde_json::{Value, json};

/// The filters' poll interval: a switch must be in effect within it.
const POLL_MS: u64 = 300;

/// A team's gate service: answers every call with the status it is set to, and keeps
/// what it was asked.
struct GateServer {
    url: String,
    status: Arc<AtomicU16>,
    asked: Arc<Mutex<Vec<Value>>>,
}

#[derive(Clone)]
struct GateState {
    status: Arc<AtomicU16>,
    asked: Arc<Mutex<Vec<Value>>>,
}

async fn answer(State(gate): State<GateState>, Json(body): Json<Value>) -> (StatusCode, String) {
    if let Ok(mut asked) = gate.asked.lock() {
        asked.push(body);
    }
    let status = gate.status.load(Ordering::Relaxed);
    let text = if status == 200 { "go" } else { "change freeze" };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text.to_owned(),
    )
}

impl GateServer {
    async fn start(status: u16) -> Self {
        let state = GateState {
            status: Arc::new(AtomicU16::new(status)),
            asked: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new()
            .route("/gate", axum::routing::post(answer))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/gate", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            status: state.status,
            asked: state.asked,
        }
    }

    fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    fn asked(&self) -> Vec<Value> {
        self.asked.lock().unwrap().clone()
    }

    fn hook(&self) -> Value {
        json!({"url": self.url, "timeout_seconds": 2, "retry_seconds": 1})
    }
}

struct Mesh {
    _envoy: Envoy,
    url: String,
    _standins: Vec<StandIn>,
}

/// Envoy with the filter in front of `stable` and `canary` stand-ins, polling the
/// scorer every [`POLL_MS`], with `shadows` mirrored (each `(name, behaviour)` gets a
/// stand-in of its own).
async fn mesh(scorer: &Scorer, canary: Behaviour, shadows: &[(&str, Behaviour)]) -> Mesh {
    let mut config = linked_config(100.0, 0.0, POLL_MS, 300);
    config["telemetry"] = json!({"sample_rate": 1.0, "score": "/outputs/0/data/0",
        "max_samples_per_batch": 1000});
    let mut standins = Vec::new();
    let mut clusters = Vec::new();
    let mut mirrored = Vec::new();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    for (name, behaviour) in [("stable", echo()), ("canary", canary)] {
        let s = StandIn::start_on(name, any, behaviour).await.unwrap();
        clusters.push(Cluster::new(name, s.addr));
        standins.push(s);
    }
    for (name, behaviour) in shadows {
        let s = StandIn::start_on(name, any, *behaviour).await.unwrap();
        let cluster = format!("shadow-{name}");
        clusters.push(Cluster::new(&cluster, s.addr));
        mirrored.push(json!({"name": name, "cluster": cluster, "share": 100,
            "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}));
        standins.push(s);
    }
    if !mirrored.is_empty() {
        config["shadows"] = Value::Array(mirrored);
    }
    clusters.push(Cluster::new("outrider-scorer", scorer.addr));
    let spec = Spec::rollout(&paths::filter_wasm().unwrap(), &config, clusters).unwrap();
    let envoy = Envoy::start(&spec.bootstrap(), 2).await.unwrap();
    let url = format!(
        "{}/v2/models/fraud/infer",
        envoy.url(LISTENER).await.unwrap()
    );
    Mesh {
        _envoy: envoy,
        url,
        _standins: standins,
    }
}

fn echo() -> Behaviour {
    Behaviour {
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    }
}

async fn rollout(scorer: &Scorer) -> Value {
    call(scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap()
}

async fn events(scorer: &Scorer) -> Vec<Value> {
    call(scorer, Method::GET, "/v1/rollouts/fraud/events", None, None)
        .await
        .json()
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// The first event of `kind`, once there is one.
async fn event_of(scorer: &Scorer, kind: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        if let Some(e) = events(scorer).await.into_iter().find(|e| e["kind"] == kind) {
            return e;
        }
        assert!(
            started.elapsed() < within,
            "no `{kind}` event after {within:?}: {:#}",
            Value::Array(events(scorer).await)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// Wall-clock time of a request's sending, from a pair taken at the start.
fn sent_ms(o: &Outcome, origin: (Instant, u64)) -> u64 {
    origin.1 + o.sent.saturating_duration_since(origin.0).as_millis() as u64
}

/// How long after `at_ms` a request sent before `until_ms` was last served by
/// `variant` (0 if none was).
fn served_after(
    outcomes: &[Outcome],
    variant: &str,
    (at_ms, until_ms): (u64, u64),
    origin: (Instant, u64),
) -> u64 {
    outcomes
        .iter()
        .filter(|o| o.served_by == variant && sent_ms(o, origin) < until_ms)
        .map(|o| sent_ms(o, origin).saturating_sub(at_ms))
        .max()
        .unwrap_or(0)
}

fn origin() -> (Instant, u64) {
    (Instant::now(), outrider_scorer::api::now_ms())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_rollout_waits_for_its_gate_then_shadows_then_steps() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "stages-shadow").await;
    let gate = GateServer::start(423).await;
    let mesh = mesh(&scorer, echo(), &[("candidate", echo())]).await;
    let t0 = origin();
    let traffic = Traffic::start(mesh.url.clone(), 100);
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "steps": [{"weights": {"stable": 80, "canary": 20}, "hold_seconds": 2},
                      {"weights": {"stable": 0, "canary": 100}}],
            "shadow": {"variant": "candidate"},
            "shadow_gate": {"min_agreement": 0.95, "min_comparisons": 200, "min_copies": 200},
            "gates": {"pre_rollout": gate.hook()}
        }),
    )
    .await;
    assert_eq!(rollout(&scorer).await["status"], "pending");
    let held = event_of(&scorer, "held", Duration::from_secs(5)).await;
    assert_eq!(held["actor"], "gate");
    assert_eq!(held["details"]["gate"]["status"], 423);
    assert!(
        held["reason"].as_str().unwrap().contains("change freeze"),
        "{held}"
    );
    // Asked again every second, recorded once.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(gate.asked().len() >= 2, "{:?}", gate.asked());
    assert_eq!(gate.asked()[0]["gate"], "pre_rollout");
    assert_eq!(gate.asked()[0]["next"]["status"], "shadowing");
    let after_hold = events(&scorer).await;
    assert_eq!(kinds(&after_hold), ["created", "held"]);
    assert_eq!(rollout(&scorer).await["status"], "pending");
    let table = scorer_cli(&scorer, &["rollout", "status", "fraud"]);
    assert!(
        table.contains("rollout fraud: pending")
            && table.contains("held by gate pre_rollout since ")
            && table.contains("answered 423 change freeze"),
        "{table}"
    );

    gate.answer_with(200);
    let shadowing = event_of(&scorer, "shadowing", Duration::from_secs(5)).await;
    assert_eq!(shadowing["details"]["gate"]["status"], 200);
    let first = event_of(&scorer, "step", Duration::from_secs(30)).await;
    assert_eq!(first["actor"], "shadow_gate");
    let report = &first["details"]["shadow"];
    assert_eq!(report["verdict"], "pass", "{first}");
    assert!(report["compared"].as_u64().unwrap() >= 200, "{report}");
    assert_eq!(
        first["details"]["weights"],
        json!({"stable": 80.0, "canary": 20.0})
    );
    let promoted = event_of(&scorer, "promoted", Duration::from_secs(20)).await;
    let outcomes = traffic.finish().await;
    assert!(outcomes.iter().all(|o| o.status == 200));

    // Nothing reached the candidate before its shadow passed (within a poll, plus a
    // request's time in flight); it took its share after.
    let start_ms = first["at_ms"].as_u64().unwrap();
    let early: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.served_by == "canary" && sent_ms(o, t0) + POLL_MS + 200 < start_ms)
        .map(|o| sent_ms(o, t0))
        .collect();
    assert!(
        early.is_empty(),
        "served before the shadow passed: {early:?}"
    );
    assert!(outcomes.iter().any(|o| o.served_by == "canary"));
    assert_eq!(
        kinds(&events(&scorer).await),
        ["created", "held", "shadowing", "step", "step", "promoted"]
    );
    assert_eq!(promoted["actor"], "controller");
    assert_eq!(rollout(&scorer).await["status"], "promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_failing_its_gate_aborts_the_rollout_before_any_traffic_moves() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "stages-broken-shadow").await;
    let broken = Behaviour {
        error_rate: 1.0,
        ..echo()
    };
    let mesh = mesh(&scorer, echo(), &[("candidate", broken)]).await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "steps": [{"weights": {"stable": 80, "canary": 20}}],
            "shadow": {"variant": "candidate"},
            "shadow_gate": {"min_comparisons": 200, "min_copies": 200}
        }),
    )
    .await;
    assert_eq!(rollout(&scorer).await["status"], "shadowing");
    let aborted = event_of(&scorer, "aborted", Duration::from_secs(20)).await;
    let outcomes = traffic.finish().await;
    assert_eq!(aborted["actor"], "shadow_gate");
    let report = &aborted["details"]["shadow"];
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["errors"], report["ended"], "{report}");
    assert!(report["ended"].as_u64().unwrap() >= 200, "{report}");
    assert!(
        aborted["reason"]
            .as_str()
            .unwrap()
            .starts_with("shadow gate failed: "),
        "{aborted}"
    );
    assert_eq!(
        aborted["details"]["weights"],
        json!({"stable": 100.0, "canary": 0.0})
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.status == 200 && o.served_by == "stable"),
        "the candidate never served a user"
    );
    eventually(Duration::from_secs(10), "the abort alert", || async {
        let alerts = call(&scorer, Method::GET, "/v1/alerts?firing=true", None, None).await;
        alerts.json().unwrap()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "OutriderRolloutAborted")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_preview_is_judged_switched_after_its_gate_and_switched_back() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "stages-blue-green").await;
    let gate = GateServer::start(423).await;
    let mesh = mesh(&scorer, echo(), &[]).await;
    let t0 = origin();
    let traffic = Traffic::start(mesh.url.clone(), 100);
    // Blue is `stable`, green (the preview) is `canary`.
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "mode": "blue_green",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "blue_green": {"preview_weight": 10, "rollback_window_seconds": 600},
            "analysis": {"interval_seconds": 5, "min_requests": 20,
                "checks": [{"metric": "error_rate", "max": 0.05},
                           {"metric": "latency_p99_ms", "max": 150}]},
            "gates": {"confirm_promotion": gate.hook()}
        }),
    )
    .await;
    let created = rollout(&scorer).await;
    assert_eq!(
        (&created["status"], &created["variants"][1]["weight"]),
        (&json!("progressing"), &json!(10.0))
    );
    let held = event_of(&scorer, "held", Duration::from_secs(30)).await;
    assert_eq!(held["details"]["gate"]["gate"], "confirm_promotion");
    let asked = gate.asked();
    assert_eq!(asked[0]["next"]["kind"], "promoted");
    assert_eq!(
        asked[0]["next"]["weights"],
        json!({"stable": 0.0, "canary": 100.0})
    );
    assert_eq!(
        rollout(&scorer).await["variants"][1]["weight"],
        10.0,
        "the gate holds the preview at its share"
    );
    gate.answer_with(200);
    let switched = event_of(&scorer, "promoted", Duration::from_secs(10)).await;
    assert_eq!(switched["details"]["gate"]["status"], 200);
    assert_eq!(switched["details"]["analysis"]["outcome"], "passed");
    let switch_ms = switched["at_ms"].as_u64().unwrap();
    assert!(
        switched["details"]["rollback_window_until_ms"]
            .as_u64()
            .unwrap()
            >= switch_ms + 600_000
    );
    let table = scorer_cli(&scorer, &["rollout", "status", "fraud"]);
    assert!(
        table.contains("rollout fraud: promoted") && table.contains("rollback window open until "),
        "{table}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let back = admin(
        &scorer,
        Method::POST,
        "/v1/rollouts/fraud/rollback",
        json!({"reason": "green misbehaves"}),
    )
    .await;
    assert_eq!(back["status"], "rolled_back");
    let back_ms = events(&scorer).await.last().unwrap()["at_ms"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = traffic.finish().await;
    assert!(outcomes.iter().all(|o| o.status == 200));

    // Blue served nothing sent a poll after the switch; green nothing a poll after
    // the switch back (a request in flight takes a few ms more).
    let blue_after = served_after(&outcomes, "stable", (switch_ms, back_ms), t0);
    let green_after = served_after(&outcomes, "canary", (back_ms, u64::MAX), t0);
    eprintln!(
        "blue-green: switch in effect after {blue_after} ms, switch back after {green_after} ms"
    );
    assert!(
        blue_after <= POLL_MS + 100,
        "blue served {blue_after} ms after the switch"
    );
    assert!(
        green_after <= POLL_MS + 100,
        "green served {green_after} ms after the switch back"
    );
    let served_green = outcomes
        .iter()
        .filter(|o| {
            o.served_by == "canary"
                && sent_ms(o, t0) > switch_ms + POLL_MS + 100
                && sent_ms(o, t0) < back_ms
        })
        .count();
    let sent_between = outcomes
        .iter()
        .filter(|o| sent_ms(o, t0) > switch_ms + POLL_MS + 100 && sent_ms(o, t0) < back_ms)
        .count();
    assert_eq!(
        served_green, sent_between,
        "all traffic on green between the switches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analysis_rollback_waits_for_its_pre_rollback_gate() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "stages-pre-rollback").await;
    let gate = GateServer::start(409).await;
    let slow = Behaviour {
        latency_ms: (300, 300),
        ..echo()
    };
    let mesh = mesh(&scorer, slow, &[]).await;
    let traffic = Traffic::start(mesh.url.clone(), 100);
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "steps": [{"weights": {"stable": 80, "canary": 20}}, {"weights": {"canary": 100}}],
            "analysis": {"interval_seconds": 5, "min_requests": 20, "failure_limit": 1,
                "checks": [{"metric": "latency_p99_ms", "max": 150}]},
            "gates": {"pre_rollback": gate.hook()}
        }),
    )
    .await;
    let held = event_of(&scorer, "held", Duration::from_secs(30)).await;
    assert_eq!(held["details"]["gate"]["gate"], "pre_rollback");
    assert_eq!(
        held["details"]["weights"],
        json!({"stable": 80.0, "canary": 20.0})
    );
    let asked = gate.asked();
    assert_eq!(asked[0]["next"]["status"], "rolled_back");
    assert!(
        asked[0]["next"]["reason"]
            .as_str()
            .unwrap()
            .contains("latency_p99_ms"),
        "{}",
        asked[0]
    );
    gate.answer_with(204);
    let back = event_of(&scorer, "rolled_back", Duration::from_secs(10)).await;
    traffic.finish().await;
    assert_eq!(back["actor"], "analysis");
    assert_eq!(back["details"]["gate"]["status"], 204);
    assert_eq!(back["details"]["analysis"]["outcome"], "failed");
    assert_eq!(
        kinds(&events(&scorer).await),
        ["created", "held", "rolled_back"]
    );
}
