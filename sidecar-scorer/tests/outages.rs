//! Scorer outages under traffic, end to end: Envoy with the filter at 200 inference
//! requests a second, polling and flushing every 300 ms, and a real scorer on SQLite that is
//! killed (`kill -9`) three times for 10 s, 5 s apart, and then hung (`SIGSTOP`) for
//! 8 s. After each return the filters' backlog is in within 2 s while traffic goes on;
//! a window the scorer called complete never changes afterwards; at the end the
//! scorer's counts equal what the clients sent, per variant, and Envoy's own counters.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use hyper::Method;
use outrider_harness::load::Traffic;
use outrider_harness::scorer::Scorer;
use serde_json::Value;

const RATE: u64 = 200;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Every window the scorer called complete, with its per-variant requests.
#[derive(Default)]
struct CompleteWindows(BTreeMap<(u64, String), u64>);

impl CompleteWindows {
    /// Notes the complete windows of a summary; a window seen before must not have
    /// changed.
    fn note(&mut self, summary: &Value) {
        for w in summary["windows"].as_array().unwrap() {
            if w["complete"] != true {
                continue;
            }
            let key = (
                w["window_start_ms"].as_u64().unwrap(),
                w["variant"].as_str().unwrap().to_owned(),
            );
            let requests = w["requests"].as_u64().unwrap();
            let seen = *self.0.entry(key.clone()).or_insert(requests);
            assert_eq!(
                seen, requests,
                "window {key:?} was complete with {seen} requests, now has {requests}"
            );
        }
    }
}

async fn summary(scorer: &Scorer) -> Value {
    scorer_counts(scorer).await
}

/// Reads the summary every 200 ms for `duration`, checking complete windows.
async fn watch(scorer: &Scorer, windows: &mut CompleteWindows, duration: Duration) {
    let until = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < until {
        let reply = call(
            scorer,
            Method::GET,
            "/v1/rollouts/fraud/telemetry",
            None,
            None,
        )
        .await;
        if reply.status == 200 {
            windows.note(&reply.json().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After the scorer is back: within 2 s every worker's telemetry up to `back_ms` is
/// in (the backlog drained while new batches kept coming).
async fn caught_up(scorer: &Scorer, windows: &mut CompleteWindows, back_ms: u64, what: &str) {
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(2);
    loop {
        let s = summary(scorer).await;
        windows.note(&s);
        let through = s["complete_through_ms"].as_u64().unwrap();
        if through >= back_ms {
            eprintln!(
                "{what}: complete through the return {} ms after it",
                started.elapsed().as_millis()
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: 2 s after the scorer's return its telemetry is complete only through \
             {} ms before the return; workers: {}",
            back_ms - through,
            s["workers"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(scorer: &Scorer, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &scorer.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_catches_up_after_outages_and_loses_nothing() {
    let backend = Backend::sqlite();
    let mut scorer = start_scorer(&backend, "outages").await;
    create_rollout(&scorer, 50.0, 50.0).await;
    let rollout = envoy_linked(&scorer, linked_config(50.0, 50.0, 300, 300), 2).await;
    let pending = "wasmcustom.outrider.telemetry_pending_batches.rollout=fraud";
    let oldest = "wasmcustom.outrider.telemetry_oldest_pending_ms.rollout=fraud";
    let traffic = Traffic::start(rollout.url.clone(), RATE);
    let mut windows = CompleteWindows::default();
    watch(&scorer, &mut windows, Duration::from_secs(3)).await;

    // Three outages of 10 s, 5 s apart.
    for outage in 1..=3 {
        scorer.kill9();
        tokio::time::sleep(Duration::from_secs(9)).await;
        let held = rollout.envoy.stat(pending).await.unwrap();
        let age = rollout.envoy.stat(oldest).await.unwrap();
        assert!(
            held >= 25 && age >= 8_000,
            "outage {outage}: 9 s in, the Envoy holds {held} batches, the oldest {age} ms old"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let back_ms = wall_ms();
        scorer.restart().await.unwrap();
        caught_up(&scorer, &mut windows, back_ms, &format!("outage {outage}")).await;
        watch(&scorer, &mut windows, Duration::from_secs(1)).await;
        // What is left is at most the batch on its way from each reporting context
        // (two workers and Envoy's main thread), made within the last flush.
        let (held, age) = (
            rollout.envoy.stat(pending).await.unwrap(),
            rollout.envoy.stat(oldest).await.unwrap(),
        );
        assert!(
            held <= 3 && age < 2_000,
            "outage {outage}: the backlog is gone, yet {held} batches are held, the oldest {age} ms old"
        );
        watch(&scorer, &mut windows, Duration::from_secs(4)).await;
    }

    // A hung scorer: its socket takes the calls, nothing answers them.
    signal(&scorer, "-STOP");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let back_ms = wall_ms();
    signal(&scorer, "-CONT");
    caught_up(&scorer, &mut windows, back_ms, "hung scorer").await;
    watch(&scorer, &mut windows, Duration::from_secs(2)).await;

    let outcomes = traffic.finish().await;
    let failed = outcomes.iter().filter(|o| o.status != 200).count();
    assert_eq!(failed, 0, "no client request failed");
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    for o in &outcomes {
        *served.entry(o.served_by.clone()).or_default() += 1;
    }
    let sent: u64 = served.values().sum();
    assert!(sent > 40 * RATE, "{sent} requests sent");
    let counted = |s: &Value| -> BTreeMap<String, u64> {
        ["stable", "canary"]
            .iter()
            .map(|v| (v.to_string(), requests_of(s, v)))
            .collect()
    };
    eventually(Duration::from_secs(5), "the last batches", || async {
        counted(&summary(&scorer).await) == served
    })
    .await;
    let s = summary(&scorer).await;
    windows.note(&s);
    for variant in ["stable", "canary"] {
        let envoy = rollout
            .envoy
            .counter(&format!(
                "wasmcustom.outrider.rq_total.rollout=fraud.variant={variant}"
            ))
            .await
            .unwrap();
        assert_eq!(
            (requests_of(&s, variant), envoy),
            (served[variant], served[variant]),
            "{variant}: the scorer, Envoy and the clients agree"
        );
    }
    let dropped = rollout
        .envoy
        .counter("wasmcustom.outrider.telemetry_batch_total.rollout=fraud.result=dropped")
        .await
        .unwrap();
    assert_eq!(dropped, 0, "no batch was dropped");
    assert!(
        windows.0.len() > 40,
        "{} complete windows were checked",
        windows.0.len()
    );
}
