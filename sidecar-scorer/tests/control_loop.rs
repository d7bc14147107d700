//! The control loop with real Envoy, the filter and a real scorer process, on SQLite
//! and on PostgreSQL: weight changes reach every worker within 2 s; the scorer's
//! counts equal what was sent; a killed scorer breaks nothing and loses nothing it
//! acknowledged; one poll per Envoy per interval, 304 when nothing changed.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use outrider_harness::client::HttpClient;

async fn weight_change_reaches_every_worker_within_2s(backend: Backend) {
    let scorer = start_scorer(&backend, "r1").await;
    create_rollout(&scorer, 90.0, 10.0).await;
    let rollout = envoy_linked(&scorer, linked_config(90.0, 10.0, 1_000, 1_000), 2).await;
    // The first poll has happened once the scorer's state is in effect.
    eventually(Duration::from_secs(5), "first poll", || async {
        rollout
            .envoy
            .stat("wasmcustom.outrider.state_version.rollout=fraud")
            .await
            .unwrap()
            == 1
    })
    .await;

    set_weights(&scorer, 0.0, 100.0).await;
    let changed = Instant::now();
    eventually(
        Duration::from_secs(2),
        "all traffic on the canary within 2 s of the change",
        || async {
            served_by(&rollout.url, "change", 64)
                .await
                .iter()
                .all(|v| v == "canary")
        },
    )
    .await;
    let took = changed.elapsed();
    // Every worker applies it: many fresh connections, all served by the canary.
    let all: HashSet<String> = served_by(&rollout.url, "all", 400)
        .await
        .into_iter()
        .collect();
    assert_eq!(all, HashSet::from(["canary".to_owned()]), "after {took:?}");
    let per_worker = rollout
        .envoy
        .admin_get("/stats?filter=worker_[0-9]+\\.downstream_cx_total")
        .await
        .unwrap();
    let busy = per_worker
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1_") && !l.ends_with(": 0"))
        .count();
    assert_eq!(busy, 2, "both workers took connections:\n{per_worker}");
    let weight = rollout
        .envoy
        .stat("wasmcustom.outrider.weight_basis_points.rollout=fraud.variant=canary")
        .await
        .unwrap();
    assert_eq!(weight, 10_000);
}

async fn the_scorer_counts_what_was_sent(backend: Backend) {
    let scorer = start_scorer(&backend, "r1").await;
    create_rollout(&scorer, 70.0, 30.0).await;
    let rollout = envoy_linked(&scorer, linked_config(70.0, 30.0, 1_000, 300), 2).await;
    let keys: Vec<String> = (0..3_000).map(|i| format!("user-{i}")).collect();
    let replies = HttpClient::new()
        .keyed_gets(&rollout.url, "x-user-id", &keys, 16)
        .await
        .unwrap();
    assert!(replies.iter().all(|(_, r)| r.status == 200));
    let stable = rollout.standin("stable").requests();
    let canary = rollout.standin("canary").requests();
    assert_eq!(stable + canary, 3_000);
    eventually(
        Duration::from_secs(10),
        "scorer counts equal the requests sent",
        || async {
            let summary = scorer_counts(&scorer).await;
            requests_of(&summary, "stable") == stable && requests_of(&summary, "canary") == canary
        },
    )
    .await;
    let summary = scorer_counts(&scorer).await;
    for (variant, n) in [("stable", stable), ("canary", canary)] {
        let v = summary["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == variant)
            .unwrap();
        assert_eq!(v["responses"]["2xx"], n, "{variant} 2xx");
        assert_eq!(latency_count(v), n, "{variant}: one latency per response");
    }
    assert_eq!(
        scorer_metric(
            &scorer,
            "outrider_scorer_ingested_requests_total",
            &[("variant", "canary")]
        )
        .await,
        canary as f64
    );
}

async fn a_killed_scorer_breaks_nothing_and_loses_nothing(backend: Backend) {
    let mut scorer = start_scorer(&backend, "r1").await;
    create_rollout(&scorer, 90.0, 10.0).await;
    set_weights(&scorer, 20.0, 80.0).await;
    let rollout = envoy_linked(&scorer, linked_config(90.0, 10.0, 300, 300), 2).await;
    eventually(
        Duration::from_secs(5),
        "the scorer's weights in effect",
        || async {
            rollout
                .envoy
                .stat("wasmcustom.outrider.weight_basis_points.rollout=fraud.variant=canary")
                .await
                .unwrap()
                == 8_000
        },
    )
    .await;

    // Steady keyed traffic while the scorer dies and comes back.
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (url, sent, failed, stop) = (
            rollout.url.clone(),
            sent.clone(),
            failed.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let client = HttpClient::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("steady-{}", i % 500);
                match client.get(&url, &[("x-user-id", &key)]).await {
                    Ok(r) if r.status == 200 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    scorer.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Down for 3 s: the weights are unchanged and their age shows it.
    let age = rollout
        .envoy
        .stat("wasmcustom.outrider.state_age_ms.rollout=fraud")
        .await
        .unwrap();
    assert!(age >= 2_000, "state age {age} ms while the scorer is down");
    let canary_weight = rollout
        .envoy
        .stat("wasmcustom.outrider.weight_basis_points.rollout=fraud.variant=canary")
        .await
        .unwrap();
    assert_eq!(canary_weight, 8_000);
    scorer.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();

    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    let total = sent.load(Ordering::Relaxed);
    assert!(total > 300, "{total} requests sent");
    // State intact after the restart.
    let state = admin(
        &scorer,
        hyper::Method::GET,
        "/v1/rollouts/fraud",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(state["version"], 2);
    assert_eq!(state["variants"][1]["weight"], 80.0);
    // Telemetry resumes, and the batches kept during the outage arrive too.
    let (stable, canary) = (
        rollout.standin("stable").requests(),
        rollout.standin("canary").requests(),
    );
    assert_eq!(stable + canary, total);
    eventually(
        Duration::from_secs(15),
        "every request counted after the restart",
        || async {
            let summary = scorer_counts(&scorer).await;
            requests_of(&summary, "stable") == stable && requests_of(&summary, "canary") == canary
        },
    )
    .await;
}

async fn one_poll_per_envoy_and_304_when_unchanged(backend: Backend) {
    let scorer = start_scorer(&backend, "r1").await;
    create_rollout(&scorer, 90.0, 10.0).await;
    let rollout = envoy_linked(&scorer, linked_config(90.0, 10.0, 500, 1_000), 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = |result: &'static str| {
        let scorer = &scorer;
        async move {
            scorer_metric(
                scorer,
                "outrider_scorer_state_polls_total",
                &[("rollout", "fraud"), ("result", result)],
            )
            .await
        }
    };
    let (ok0, nm0) = (polls("ok").await, polls("not_modified").await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (ok1, nm1) = (polls("ok").await, polls("not_modified").await);
    // Two workers, a 500 ms interval: one Envoy polls about 10 times in 5 s.
    let total = (ok1 - ok0) + (nm1 - nm0);
    assert!(
        (8.0..=12.0).contains(&total),
        "{total} polls in 5 s from one Envoy with two workers"
    );
    assert_eq!(ok1 - ok0, 0.0, "nothing changed, so every poll was a 304");
    let envoy_side = rollout
        .envoy
        .counter("wasmcustom.outrider.scorer_poll_total.rollout=fraud.result=not_modified")
        .await
        .unwrap();
    assert!(
        envoy_side as f64 >= nm1 - 1.0,
        "the filter counts its polls too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_weight_change_reaches_every_worker_within_2s() {
    weight_change_reaches_every_worker_within_2s(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_weight_change_reaches_every_worker_within_2s() {
    weight_change_reaches_every_worker_within_2s(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_scorer_counts_what_was_sent() {
    the_scorer_counts_what_was_sent(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_scorer_counts_what_was_sent() {
    the_scorer_counts_what_was_sent(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_scorer_breaks_nothing_and_loses_nothing() {
    a_killed_scorer_breaks_nothing_and_loses_nothing(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_scorer_breaks_nothing_and_loses_nothing() {
    a_killed_scorer_breaks_nothing_and_loses_nothing(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_poll_per_envoy_and_304_when_unchanged() {
    one_poll_per_envoy_and_304_when_unchanged(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_poll_per_envoy_and_304_when_unchanged() {
    one_poll_per_envoy_and_304_when_unchanged(Backend::postgres().await).await;
}
