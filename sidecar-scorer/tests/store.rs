//! The `Store` trait, called directly, on every backend: each test below runs on
//! SQLite (`sqlite::<test>`) and on a private PostgreSQL (`postgres::<test>`), so the
//! two implementations cannot drift apart.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Backend;
use outrider_protocol::{
    BatchOutcome, ClassCounts, LATENCY_SLOTS, SCORE_DIFF_SLOTS, Sample, ShadowCounts, ShadowSkip,
    TelemetryBatch, VariantCounts,
};
use outrider_scorer::experiment::Unit;
use outrider_scorer::experiment::judge::{Arm, judge};
use outrider_scorer::monitor::findings::{EventKind, Finding, FindingKey, FindingKind, ModelEvent};
use outrider_scorer::monitor::judge::{
    DatasetVerdict, FeatureKind, FeatureReport, Verdict, WindowReport,
};
use outrider_scorer::monitor::settings::WindowBy;
use outrider_scorer::retrain::{Job, JobStatus, Policy};
use outrider_scorer::rollout::{Attribution, Event, Rollout};
use outrider_scorer::store::{
    self, ExposureSums, FeedbackEvent, FeedbackOutcome, SampleRange, Store, StoreError,
};
use serde_json::json;

/// Runs each listed test on SQLite and on a private PostgreSQL.
macro_rules! on_every_store {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::sqlite()).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::postgres().await).await;
                }
            )+
        }
    };
}

on_every_store!(
    rollouts_change_by_compare_and_set,
    events_come_back_in_order_with_their_details,
    a_batch_is_applied_once_per_batch_id,
    each_worker_is_complete_through_its_newest_batch,
    windows_sum_batches_and_answer_for_a_range,
    shadow_windows_round_trip_and_add_up,
    feedback_is_stored_once_per_event_id,
    samples_come_back_newest_first,
    exposures_join_their_feedback_by_request_id,
    a_user_counts_once_in_the_variant_of_their_first_exposure,
    experiment_runs_are_stored_once_per_interval_end,
    leadership_is_taken_kept_and_handed_over_on_release,
    a_holder_that_goes_away_loses_the_lead,
    a_model_has_one_open_job_claimed_once,
    labelled_samples_join_their_latest_labels,
    the_monitor_reads_samples_joins_labels_and_stores_windows_once,
);

async fn open(backend: &Backend) -> Arc<dyn Store> {
    store::open(&backend.store()).await.unwrap()
}

fn by(actor: &str) -> Attribution {
    Attribution {
        actor: actor.to_owned(),
        reason: format!("{actor} says so"),
    }
}

/// Version 1 of a two-variant canary rollout, and its creation event.
fn canary(name: &str, at_ms: u64) -> (Rollout, Event) {
    let request = serde_json::from_value(json!({"name": name, "variants": [
        {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}))
    .unwrap();
    Rollout::create(request, &by("alice"), at_ms).unwrap()
}

fn weights(rollout: &Rollout) -> Vec<f64> {
    rollout.variants.iter().map(|v| v.weight).collect()
}

async fn rollouts_change_by_compare_and_set(backend: Backend) {
    let store = open(&backend).await;
    store.ping().await.unwrap();
    assert_eq!(
        store.backend(),
        match &backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    );
    assert_eq!(store.rollout("fraud").await.unwrap(), None);

    let (v1, created) = canary("fraud", 1_000);
    store.create_rollout(&v1, &created).await.unwrap();
    let again = store.create_rollout(&v1, &created).await.unwrap_err();
    assert_eq!(
        again,
        StoreError::Conflict("a rollout named `fraud` exists".into())
    );
    let (alpha, alpha_created) = canary("alpha", 1_500);
    store.create_rollout(&alpha, &alpha_created).await.unwrap();
    assert_eq!(store.rollout("fraud").await.unwrap().as_ref(), Some(&v1));
    let names: Vec<String> = store
        .rollouts()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["alpha", "fraud"], "listed by name");

    // Two changes computed from version 1: the first stored wins, the second lost
    // the race and changes nothing.
    let to_30 = [("stable".to_owned(), 70.0), ("canary".to_owned(), 30.0)].into();
    let (v2, raised) = v1.set_weights(&to_30, &by("bob"), 2_000).unwrap();
    let (paused, pause) = v1.pause(&by("carol"), 2_001).unwrap();
    store.update_rollout(&v2, 1, &raised).await.unwrap();
    let lost = store.update_rollout(&paused, 1, &pause).await.unwrap_err();
    assert!(
        matches!(&lost, StoreError::Conflict(m) if m.contains("changed meanwhile (expected version 1)")),
        "{lost:?}"
    );
    let stored = store.rollout("fraud").await.unwrap().unwrap();
    assert_eq!(stored, v2);
    assert_eq!((stored.version, weights(&stored)), (2, vec![70.0, 30.0]));
    assert_eq!(store.events("fraud").await.unwrap().len(), 2);

    // Changing a rollout that does not exist is a conflict too: nothing to compare.
    let (ghost, ghost_created) = canary("ghost", 3_000);
    let missing = store.update_rollout(&ghost, 1, &ghost_created).await;
    assert!(
        matches!(missing, Err(StoreError::Conflict(_))),
        "{missing:?}"
    );
    assert_eq!(store.rollout("ghost").await.unwrap(), None);
}

async fn events_come_back_in_order_with_their_details(backend: Backend) {
    let store = open(&backend).await;
    let (mut current, created) = canary("fraud", 1_000);
    store.create_rollout(&current, &created).await.unwrap();
    let (other, other_created) = canary("other", 1_000);
    store.create_rollout(&other, &other_created).await.unwrap();

    let mut expected = vec![created];
    for step in 0..4u64 {
        let at = 2_000 + step;
        let (next, event) = match step {
            0 => current.pause(&by("bob"), at),
            1 => current.resume(&by("bob"), at),
            2 => current.promote(None, &by("carol"), at),
            _ => current.rollback(&by("dave"), at),
        }
        .unwrap();
        store
            .update_rollout(&next, current.version, &event)
            .await
            .unwrap();
        expected.push(event);
        current = next;
    }

    let events = store.events("fraud").await.unwrap();
    assert_eq!(events, expected, "every event, oldest first, as stored");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["created", "paused", "resumed", "promoted", "rolled_back"]
    );
    assert_eq!(
        events[3].details["weights"],
        json!({"stable": 0.0, "canary": 100.0})
    );
    assert_eq!(
        (
            events[4].actor.as_str(),
            events[4].reason.as_str(),
            events[4].at_ms
        ),
        ("dave", "dave says so", 2_003)
    );
    assert_eq!(
        store.events("other").await.unwrap(),
        vec![other_created.clone()]
    );
    assert!(store.events("nope").await.unwrap().is_empty());
    // The newest event alone, as the notifier reads it each tick.
    assert_eq!(store.last_event("fraud").await.unwrap(), expected.pop());
    assert_eq!(
        store.last_event("other").await.unwrap(),
        Some(other_created)
    );
    assert_eq!(store.last_event("nope").await.unwrap(), None);
}

fn counts(variant: &str, requests: u64) -> VariantCounts {
    let mut latency_ms = vec![0; LATENCY_SLOTS];
    latency_ms[3] = requests;
    VariantCounts {
        variant: variant.to_owned(),
        requests,
        responses: ClassCounts {
            success: requests - 1,
            server_error: 1,
            ..ClassCounts::default()
        },
        grpc_errors: 1,
        latency_ms,
        latency_sum_ms: 3 * requests,
    }
}

fn batch(id: &str, window_end_ms: u64, variants: Vec<VariantCounts>) -> TelemetryBatch {
    TelemetryBatch {
        batch_id: id.to_owned(),
        rollout: "fraud".to_owned(),
        proxy: "envoy-1".to_owned(),
        worker: None,
        window_start_ms: window_end_ms.saturating_sub(500),
        window_end_ms,
        variants,
        samples: Vec::new(),
        dropped_batches: 0,
        shadows: Vec::new(),
        guardrail_trips: Vec::new(),
    }
}

fn row(window_start_ms: u64, variant: &str, requests: u64) -> (u64, String, u64) {
    (window_start_ms, variant.to_owned(), requests)
}

/// (window start, variant, requests) of every stored window.
async fn window_requests(store: &dyn Store, from: u64, to: u64) -> Vec<(u64, String, u64)> {
    store
        .windows("fraud", from, to)
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.window_start_ms, w.variant, w.requests))
        .collect()
}

async fn a_batch_is_applied_once_per_batch_id(backend: Backend) {
    let store = open(&backend).await;
    let first = batch("b-1", 1_500, vec![counts("stable", 9), counts("canary", 3)]);
    assert_eq!(
        store.ingest(&first, 1_000, 10).await.unwrap(),
        BatchOutcome::Applied
    );
    // A retry of the same batch (its answer was lost) changes nothing, even with
    // other counts in it.
    let mut retry = first.clone();
    retry.variants[0].requests = 1_000;
    assert_eq!(
        store.ingest(&retry, 1_000, 20).await.unwrap(),
        BatchOutcome::Duplicate
    );
    assert_eq!(
        window_requests(store.as_ref(), 0, u64::MAX / 2).await,
        [row(1_000, "canary", 3), row(1_000, "stable", 9)]
    );
    let second = batch("b-2", 1_600, vec![counts("stable", 1)]);
    assert_eq!(
        store.ingest(&second, 1_000, 30).await.unwrap(),
        BatchOutcome::Applied
    );
    assert_eq!(
        window_requests(store.as_ref(), 0, u64::MAX / 2).await,
        [row(1_000, "canary", 3), row(1_000, "stable", 10)]
    );
}

async fn each_worker_is_complete_through_its_newest_batch(backend: Backend) {
    let store = open(&backend).await;
    let from = |worker: &str, id: &str, end: u64, requests: u64| {
        let variants = if requests == 0 {
            vec![]
        } else {
            vec![counts("stable", requests)]
        };
        let mut b = batch(id, end, variants);
        b.worker = Some(worker.to_owned());
        b
    };
    store
        .ingest(&from("w1", "w1-1", 1_500, 4), 1_000, 10)
        .await
        .unwrap();
    store
        .ingest(&from("w2", "w2-1", 1_200, 1), 1_000, 11)
        .await
        .unwrap();
    // An empty batch moves the mark and stores no count and no id.
    let empty = from("w2", "w2-2", 2_600, 0);
    assert_eq!(
        store.ingest(&empty, 1_000, 12).await.unwrap(),
        BatchOutcome::Applied
    );
    assert_eq!(
        store.ingest(&empty, 1_000, 13).await.unwrap(),
        BatchOutcome::Applied
    );
    // A late retry of an old batch is a duplicate and never moves a mark back, but
    // says the worker is alive.
    assert_eq!(
        store
            .ingest(&from("w1", "w1-1", 1_500, 4), 1_000, 14)
            .await
            .unwrap(),
        BatchOutcome::Duplicate
    );
    let older = from("w2", "w2-0", 900, 2);
    store.ingest(&older, 1_000, 15).await.unwrap();
    let marks: Vec<(String, u64, u64)> = store
        .workers("fraud")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.worker, m.complete_through_ms, m.last_seen_ms))
        .collect();
    assert_eq!(
        marks,
        [("w1".to_owned(), 1_500, 14), ("w2".to_owned(), 2_600, 15)]
    );
    assert_eq!(
        window_requests(store.as_ref(), 0, u64::MAX / 2).await,
        [row(0, "stable", 2), row(1_000, "stable", 5)]
    );
    assert!(store.workers("other").await.unwrap().is_empty());
}

async fn windows_sum_batches_and_answer_for_a_range(backend: Backend) {
    let store = open(&backend).await;
    // Two batches ending in the window [1000, 2000), listing the variants in either
    // order and one of them twice; one ending in [2000, 3000); one of another rollout.
    let batches = [
        batch("a", 1_200, vec![counts("stable", 10), counts("canary", 2)]),
        batch(
            "b",
            1_999,
            vec![
                counts("canary", 3),
                counts("stable", 5),
                counts("stable", 4),
            ],
        ),
        batch("c", 2_000, vec![counts("stable", 7)]),
    ];
    for b in &batches {
        assert_eq!(
            store.ingest(b, 1_000, 0).await.unwrap(),
            BatchOutcome::Applied
        );
    }
    let mut elsewhere = batch("d", 1_200, vec![counts("stable", 100)]);
    elsewhere.rollout = "other".into();
    store.ingest(&elsewhere, 1_000, 0).await.unwrap();

    let windows = store.windows("fraud", 0, u64::MAX / 2).await.unwrap();
    let keys: Vec<(u64, &str)> = windows
        .iter()
        .map(|w| (w.window_start_ms, w.variant.as_str()))
        .collect();
    assert_eq!(
        keys,
        [(1_000, "canary"), (1_000, "stable"), (2_000, "stable")],
        "ordered by window, then variant"
    );
    let stable = &windows[1];
    assert_eq!(stable.requests, 19);
    assert_eq!(
        stable.responses,
        ClassCounts {
            success: 16,
            server_error: 3,
            ..ClassCounts::default()
        }
    );
    assert_eq!((stable.grpc_errors, stable.latency_sum_ms), (3, 57));
    let mut latency = vec![0; LATENCY_SLOTS];
    latency[3] = 19;
    assert_eq!(stable.latency_ms, latency);

    assert_eq!(
        window_requests(store.as_ref(), 2_000, 3_000).await,
        [row(2_000, "stable", 7)],
        "windows starting in [from, to)"
    );
    assert!(
        window_requests(store.as_ref(), 0, 1_000).await.is_empty(),
        "to is exclusive"
    );
}

fn shadow(requests: u64) -> ShadowCounts {
    ShadowCounts {
        variant: "v3".into(),
        mirrored: requests,
        completed: requests - 2,
        errors: 1,
        timeouts: 1,
        skipped: [(ShadowSkip::InFlightCap, 4), (ShadowSkip::BodyTooLarge, 1)].into(),
        compared: requests - 3,
        no_prediction_primary: 0,
        no_prediction_shadow: 1,
        confusion: [[requests - 5, 1], [1, 0]],
        score_diff: (0..SCORE_DIFF_SLOTS as u64).collect(),
        shadow_latency_ms: (0..LATENCY_SLOTS as u64).collect(),
        primary_latency_ms: (0..LATENCY_SLOTS as u64).rev().collect(),
        latency_delta_sum_ms: -250,
    }
}

async fn shadow_windows_round_trip_and_add_up(backend: Backend) {
    let store = open(&backend).await;
    let mut first = batch("s-1", 1_500, vec![counts("stable", 20)]);
    first.shadows = vec![shadow(20)];
    store.ingest(&first, 1_000, 0).await.unwrap();
    assert_eq!(
        store
            .shadow_windows("fraud", 0, u64::MAX / 2)
            .await
            .unwrap(),
        [(1_000, shadow(20))],
        "every count, reason and bucket comes back as sent"
    );

    let mut second = batch("s-2", 1_700, vec![counts("stable", 30)]);
    second.shadows = vec![shadow(30)];
    let mut later = batch("s-3", 2_100, Vec::new());
    later.shadows = vec![shadow(10)];
    store.ingest(&second, 1_000, 0).await.unwrap();
    store.ingest(&later, 1_000, 0).await.unwrap();
    let windows = store
        .shadow_windows("fraud", 0, u64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(windows.len(), 2);
    let (start, sum) = &windows[0];
    assert_eq!(*start, 1_000);
    assert_eq!(
        (sum.mirrored, sum.compared, sum.confusion),
        (50, 44, [[40, 2], [2, 0]])
    );
    assert_eq!(sum.latency_delta_sum_ms, -500);
    assert_eq!(
        sum.skipped,
        BTreeMap::from([(ShadowSkip::BodyTooLarge, 2), (ShadowSkip::InFlightCap, 8)])
    );
    assert_eq!(sum.score_diff[10], 20);
    assert_eq!(windows[1], (2_000, shadow(10)));
    assert!(
        store
            .shadow_windows("fraud", 3_000, 4_000)
            .await
            .unwrap()
            .is_empty()
    );
}

fn outcome(event_id: Option<&str>, rollout: Option<&str>, label: f64) -> FeedbackEvent {
    FeedbackEvent {
        event_id: event_id.map(str::to_owned),
        rollout: rollout.map(str::to_owned),
        request_id: Some("r-1".into()),
        user_key: None,
        label,
        value: Some(12.5),
        observed_ms: 1_000,
    }
}

async fn feedback_is_stored_once_per_event_id(backend: Backend) {
    let store = open(&backend).await;
    let events = [
        outcome(Some("chargeback-1"), Some("fraud"), 1.0),
        outcome(Some("chargeback-2"), Some("fraud"), 0.0),
        outcome(None, None, 1.0),
    ];
    assert_eq!(
        store.add_feedback(&events, 2_000).await.unwrap(),
        FeedbackOutcome {
            accepted: 3,
            duplicates: 0
        }
    );
    // Sent again: the events with ids are known; one without an id cannot be told
    // apart from a new one.
    assert_eq!(
        store.add_feedback(&events, 3_000).await.unwrap(),
        FeedbackOutcome {
            accepted: 1,
            duplicates: 2
        }
    );
    // A repeat inside one post counts once too.
    let twice = [
        outcome(Some("chargeback-3"), Some("other"), 1.0),
        outcome(Some("chargeback-3"), Some("other"), 1.0),
    ];
    assert_eq!(
        store.add_feedback(&twice, 4_000).await.unwrap(),
        FeedbackOutcome {
            accepted: 1,
            duplicates: 1
        }
    );
    assert_eq!(store.feedback_count(None).await.unwrap(), 5);
    assert_eq!(store.feedback_count(Some("fraud")).await.unwrap(), 2);
    assert_eq!(store.feedback_count(Some("nope")).await.unwrap(), 0);

    // More events than one statement takes go in several, all in one transaction.
    let many: Vec<FeedbackEvent> = (0..2_500)
        .map(|i| outcome(Some(&format!("bulk-{i}")), Some("bulk"), 0.0))
        .collect();
    assert_eq!(
        store.add_feedback(&many, 5_000).await.unwrap(),
        FeedbackOutcome {
            accepted: 2_500,
            duplicates: 0
        }
    );
    assert_eq!(store.feedback_count(Some("bulk")).await.unwrap(), 2_500);
}

fn sample(variant: &str, at_ms: u64, score: Option<f64>) -> Sample {
    Sample {
        variant: variant.to_owned(),
        at_ms,
        request_id: Some(format!("req-{at_ms}")),
        user_key: at_ms.is_multiple_of(2).then(|| format!("user-{at_ms}")),
        features: [("amount".to_owned(), at_ms as f64 / 10.0)].into(),
        score,
    }
}

async fn samples_come_back_newest_first(backend: Backend) {
    let store = open(&backend).await;
    let mut first = batch("p-1", 1_500, vec![counts("stable", 3)]);
    first.samples = vec![
        sample("stable", 1_001, Some(0.25)),
        sample("canary", 1_002, None),
        sample("stable", 1_003, Some(0.75)),
    ];
    let mut second = batch("p-2", 1_600, vec![counts("stable", 2)]);
    second.samples = vec![
        sample("canary", 1_004, Some(0.5)),
        sample("stable", 1_005, Some(1.0)),
    ];
    store.ingest(&first, 1_000, 0).await.unwrap();
    store.ingest(&second, 1_000, 0).await.unwrap();
    // A duplicate batch adds no samples either.
    store.ingest(&second, 1_000, 0).await.unwrap();

    assert_eq!(store.sample_count("fraud").await.unwrap(), 5);
    let newest = store.samples("fraud", 4).await.unwrap();
    let expected: Vec<Sample> = [&second.samples, &first.samples]
        .into_iter()
        .flat_map(|s| s.iter().rev().cloned())
        .take(4)
        .collect();
    assert_eq!(newest, expected);
    assert_eq!(newest[2].score, Some(0.75));
    assert_eq!(newest[3].score, None);
    assert!(store.samples("other", 10).await.unwrap().is_empty());

    // A batch with more samples than one statement takes.
    let mut bulk = batch("p-3", 1_700, Vec::new());
    bulk.samples = (0..2_500)
        .map(|i| sample("stable", 10_000 + i, Some(0.1)))
        .collect();
    store.ingest(&bulk, 1_000, 0).await.unwrap();
    assert_eq!(store.sample_count("fraud").await.unwrap(), 2_505);
    assert_eq!(
        store.samples("fraud", 1).await.unwrap()[0].at_ms,
        12_499,
        "the last sample of the newest batch"
    );
}

/// An experiment's clock: far enough from 0 that the feedback margin matters.
const T: u64 = 1_800_000_000_000;

/// Samples of rollout `shop`: (variant, at_ms after T, request id, user key).
async fn exposures(store: &dyn Store) {
    let rows: [(&str, u64, Option<&str>, Option<&str>); 9] = [
        ("a", 999, Some("r0"), Some("u-early")), // before the experiment
        ("a", 1_000, Some("r1"), Some("u1")),
        ("a", 1_100, Some("r2"), Some("u3")),
        ("a", 1_200, Some("r3"), None),
        ("b", 1_300, Some("r4"), Some("u1")), // u1 again, in b
        ("b", 1_400, Some("r5"), Some("u2")),
        ("b", 1_500, None, Some("u-early")), // u-early's first in the experiment
        ("b", 1_600, Some("r1"), None),      // a request id seen twice
        ("a", 2_000, Some("r9"), Some("u9")), // after the interval
    ];
    let mut b = batch("exposures", T + 2_500, vec![counts("a", 5), counts("b", 4)]);
    b.rollout = "shop".into();
    b.samples = rows
        .iter()
        .map(|(variant, at, request, user)| Sample {
            variant: (*variant).to_owned(),
            at_ms: T + at,
            request_id: request.map(str::to_owned),
            user_key: user.map(str::to_owned),
            features: BTreeMap::new(),
            score: Some(0.5),
        })
        .collect();
    store.ingest(&b, 1_000, T + 2_600).await.unwrap();
}

/// A feedback event: (request id, user key, label, value, observed after T, rollout).
fn fb(
    request: Option<&str>,
    user: Option<&str>,
    label: f64,
    value: Option<f64>,
    observed: u64,
    rollout: Option<&str>,
) -> FeedbackEvent {
    FeedbackEvent {
        event_id: None,
        rollout: rollout.map(str::to_owned),
        request_id: request.map(str::to_owned),
        user_key: user.map(str::to_owned),
        label,
        value,
        observed_ms: T + observed,
    }
}

fn sums(variant: &str, exposures: u64, conversions: u64, sum: f64, sum_sq: f64) -> ExposureSums {
    ExposureSums {
        variant: variant.to_owned(),
        exposures,
        conversions,
        value_sum: sum,
        value_sum_sq: sum_sq,
    }
}

async fn exposures_join_their_feedback_by_request_id(backend: Backend) {
    let store = open(&backend).await;
    exposures(store.as_ref()).await;
    let events = [
        // r1: the later label (1) decides; its values add up to 15.
        fb(Some("r1"), None, 0.0, Some(10.0), 3_000, None),
        fb(Some("r1"), None, 1.0, Some(5.0), 4_000, Some("shop")),
        // r2: converted, then not: the latest label is 0.
        fb(Some("r2"), None, 1.0, None, 5_000, None),
        fb(Some("r2"), None, 0.0, None, 6_000, None),
        // r3: two labels observed at once: the one that arrived last decides.
        fb(Some("r3"), None, 1.0, None, 7_000, None),
        fb(Some("r3"), None, 0.0, None, 7_000, None),
        fb(Some("r4"), None, 1.0, Some(20.0), 1_500, Some("shop")),
        // Another rollout's outcome for the same request id is not this one's.
        fb(Some("r4"), None, 0.0, Some(100.0), 8_000, Some("other")),
        fb(Some("r9"), None, 1.0, Some(1.0), 2_100, None),
    ];
    store.add_feedback(&events, T + 8_000).await.unwrap();
    // Received long before the experiment began: about none of its exposures.
    let stale = [fb(Some("r5"), None, 1.0, Some(1.0), 1_400, None)];
    store
        .add_feedback(&stale, T + 1_000 - 10 * 60 * 1000 - 1)
        .await
        .unwrap();
    let got = store
        .exposure_sums("shop", Unit::Request, T + 1_000, T + 2_000)
        .await
        .unwrap();
    // a: r1 (converted, 15), r2, r3; b: r4 (converted, 20), r5. The sample without a
    // request id and r1's second sample are no exposures.
    assert_eq!(
        got,
        [sums("a", 3, 1, 15.0, 225.0), sums("b", 2, 1, 20.0, 400.0)]
    );
    // Feedback is read as it is now: a later event changes the sums.
    store
        .add_feedback(
            &[fb(Some("r5"), None, 1.0, Some(2.0), 9_000, None)],
            T + 9_000,
        )
        .await
        .unwrap();
    let got = store
        .exposure_sums("shop", Unit::Request, T + 1_000, T + 2_000)
        .await
        .unwrap();
    assert_eq!(got[1], sums("b", 2, 2, 22.0, 404.0));
    assert!(
        store
            .exposure_sums("nope", Unit::Request, T, T + 9_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_user_counts_once_in_the_variant_of_their_first_exposure(backend: Backend) {
    let store = open(&backend).await;
    exposures(store.as_ref()).await;
    let events = [
        // Before u1's exposure: not caused by it.
        fb(None, Some("u1"), 0.0, Some(3.0), 500, None),
        fb(None, Some("u1"), 1.0, Some(7.0), 1_100, None),
        fb(None, Some("u2"), 1.0, Some(4.0), 1_000, None),
        fb(None, Some("u-early"), 1.0, Some(2.5), 1_600, Some("shop")),
        // Request-keyed feedback does not join users.
        fb(Some("r3"), None, 1.0, Some(50.0), 1_600, None),
    ];
    store.add_feedback(&events, T + 2_000).await.unwrap();
    let got = store
        .exposure_sums("shop", Unit::User, T + 1_000, T + 2_000)
        .await
        .unwrap();
    // a: u1 (first in a; converted, 7), u3; b: u2 (its label predates it), u-early
    // (first seen in the experiment in b; converted, 2.5).
    assert_eq!(
        got,
        [sums("a", 2, 1, 7.0, 49.0), sums("b", 2, 1, 2.5, 6.25)]
    );
}

async fn experiment_runs_are_stored_once_per_interval_end(backend: Backend) {
    let store = open(&backend).await;
    let spec = serde_json::from_value(json!({"interval_seconds": 5, "max_intervals": 3,
        "min_exposures": 2, "metrics": [
            {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"}]}))
    .unwrap();
    let arm = |name: &str, n: u64| Arm {
        sums: sums(name, n, n / 10, 0.0, 0.0),
        weight: 50.0,
        srm_count: n,
    };
    let run = |end: u64, n: u64| {
        judge(
            "shop",
            &spec,
            (T, T + end),
            &[arm("a", n), arm("b", n)],
            0,
            T + end + 100,
        )
    };
    let (first, second) = (run(5_000, 100), run(10_000, 200));
    assert!(store.add_experiment_run(&first).await.unwrap());
    assert!(store.add_experiment_run(&second).await.unwrap());
    assert!(
        !store.add_experiment_run(&run(5_000, 999)).await.unwrap(),
        "one run per interval end"
    );
    assert_eq!(
        store.experiment_runs("shop", 10).await.unwrap(),
        [first, second.clone()]
    );
    assert_eq!(store.experiment_runs("shop", 1).await.unwrap(), [second]);
    assert!(store.experiment_runs("nope", 10).await.unwrap().is_empty());
}

async fn leadership_is_taken_kept_and_handed_over_on_release(backend: Backend) {
    // Two replicas on one database.
    let a = open(&backend).await;
    let b = open(&backend).await;
    let t = 1_000_000;
    assert!(a.try_lead("a", t).await.unwrap(), "a free lock is taken");
    assert!(!b.try_lead("b", t).await.unwrap(), "and not shared");
    assert!(
        a.try_lead("a", t + 1_000).await.unwrap(),
        "the holder keeps it"
    );
    assert!(!b.try_lead("b", t + 1_000).await.unwrap());

    a.release_lead("a").await.unwrap();
    assert!(
        b.try_lead("b", t + 2_000).await.unwrap(),
        "released: the next replica to try takes it"
    );
    assert!(!a.try_lead("a", t + 2_000).await.unwrap());
    // Releasing what one does not hold changes nothing.
    a.release_lead("a").await.unwrap();
    assert!(b.try_lead("b", t + 3_000).await.unwrap());
    assert!(!a.try_lead("a", t + 3_000).await.unwrap());
}

async fn a_holder_that_goes_away_loses_the_lead(backend: Backend) {
    let a = open(&backend).await;
    let b = open(&backend).await;
    let t = 1_000_000;
    assert!(a.try_lead("a", t).await.unwrap());
    assert!(!b.try_lead("b", t + 1).await.unwrap());
    // Gone without releasing: its SQLite lease runs out, its PostgreSQL session ends.
    drop(a);
    let after = t + outrider_scorer::store::sqlite::LEASE_MS + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.try_lead("b", after).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the lead of a replica that went away was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = open(&backend).await;
    assert!(!c.try_lead("c", after + 1).await.unwrap(), "b holds it now");
}

/// A SQLite lease that its holder stops renewing expires, even while the holder
/// lives (PostgreSQL has no expiry: its lock lasts as long as the session).
#[tokio::test]
async fn sqlite_a_lease_not_renewed_expires() {
    let backend = Backend::sqlite();
    let a = open(&backend).await;
    let b = open(&backend).await;
    let t = 1_000_000;
    let lease = outrider_scorer::store::sqlite::LEASE_MS;
    assert!(a.try_lead("a", t).await.unwrap());
    assert!(!b.try_lead("b", t + lease - 1).await.unwrap(), "not yet");
    assert!(b.try_lead("b", t + lease + 1).await.unwrap(), "expired");
    assert!(!a.try_lead("a", t + lease + 2).await.unwrap(), "a lost it");
}

/// A replica that died without releasing its SQLite lease (`kill -9`) and comes back
/// under the same `--replica-id` takes the lease back at once; under another id (the
/// default one holds the process id) it waits for the lease to expire.
#[tokio::test]
async fn sqlite_a_replica_restarted_with_its_id_takes_its_lease_back_at_once() {
    let backend = Backend::sqlite();
    let t = 1_000_000;
    let before = open(&backend).await;
    assert!(before.try_lead("scorer-1", t).await.unwrap());
    drop(before);
    let restarted = open(&backend).await;
    let other = open(&backend).await;
    assert!(
        !other.try_lead("host-4242", t + 100).await.unwrap(),
        "another id waits"
    );
    assert!(
        restarted.try_lead("scorer-1", t + 100).await.unwrap(),
        "the same id takes it back at once"
    );
    let lease = outrider_scorer::store::sqlite::LEASE_MS;
    assert!(!other.try_lead("host-4242", t + lease).await.unwrap());
}

fn window(end: u64, findings: Vec<Finding>) -> WindowReport {
    let score = FeatureReport {
        name: "score".into(),
        kind: FeatureKind::Score,
        values: 3,
        missing: 0,
        missing_share: 0.0,
        unseen: 0,
        statistics: None,
        verdict: Verdict::InsufficientData,
        missing_alarm: false,
    };
    WindowReport {
        model: "fraud".into(),
        version: 1,
        by: WindowBy::Time,
        start: end - 1_000,
        end,
        first_ms: Some(end - 900),
        last_ms: Some(end - 1),
        samples: 3,
        judged: false,
        features: Vec::new(),
        prediction: score,
        dataset: DatasetVerdict {
            judged: 0,
            drifted: Vec::new(),
            share: 0.0,
            verdict: Verdict::InsufficientData,
        },
        performance: None,
        findings,
        judged_ms: end + 5,
        sources: Vec::new(),
    }
}

async fn the_monitor_reads_samples_joins_labels_and_stores_windows_once(backend: Backend) {
    let store = open(&backend).await;
    let mut b = batch("m-1", 1_500, Vec::new());
    b.samples = vec![
        sample("stable", 1_001, Some(0.25)),
        sample("canary", 1_002, Some(0.5)),
        sample("stable", 1_003, Some(0.75)),
        sample("stable", 2_004, None),
    ];
    store.ingest(&b, 1_000, 0).await.unwrap();
    let by_time = store
        .monitored_samples(
            "fraud",
            "stable",
            SampleRange::Time {
                from_ms: 1_000,
                to_ms: 2_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_time.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
        [1_001, 1_003]
    );
    assert_eq!(by_time[0].features["amount"], 100.1);
    let first = store
        .monitored_samples("fraud", "stable", SampleRange::After { id: 0, limit: 2 })
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let through = store
        .monitored_samples(
            "fraud",
            "stable",
            SampleRange::Through {
                id: first[1].id,
                limit: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        through.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
        [1_003, 1_001],
        "newest first"
    );
    assert_eq!(
        store
            .next_sample_ms("fraud", "stable", 1_002)
            .await
            .unwrap(),
        Some(1_003)
    );
    assert_eq!(
        store
            .next_sample_ms("fraud", "stable", 3_000)
            .await
            .unwrap(),
        None
    );

    // Labels: by request id, by user key (1_002 has one), a later label wins; feedback
    // received too recently waits.
    let label = |request: Option<&str>, user: Option<&str>, label: f64| FeedbackEvent {
        event_id: None,
        rollout: None,
        request_id: request.map(str::to_owned),
        user_key: user.map(str::to_owned),
        label,
        value: None,
        observed_ms: 5,
    };
    store
        .add_feedback(
            &[
                label(Some("req-1001"), None, 0.0),
                label(None, Some("user-1002"), 1.0),
                label(Some("req-1001"), None, 1.0),
            ],
            10,
        )
        .await
        .unwrap();
    store
        .add_feedback(&[label(Some("req-1003"), None, 1.0)], 99)
        .await
        .unwrap();
    let round = store.label_samples(50, 100).await.unwrap();
    assert_eq!((round.feedback, round.labelled), (3, 2));
    let labelled = store
        .labelled(
            "fraud",
            "stable",
            SampleRange::Time {
                from_ms: 0,
                to_ms: 5_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(labelled.len(), 1);
    assert!(labelled[0].label, "the later label of req-1001");
    assert_eq!(
        store.label_samples(50, 100).await.unwrap().feedback,
        0,
        "joined once"
    );
    assert_eq!(
        store.label_samples(100, 100).await.unwrap().labelled,
        1,
        "now old enough"
    );
    let canary = store
        .labelled(
            "fraud",
            "canary",
            SampleRange::Ids {
                after: 0,
                through: u64::MAX / 2,
            },
        )
        .await
        .unwrap();
    assert_eq!((canary.len(), canary[0].score), (1, 0.5));

    // Windows: stored once per end, with their events; the feed in order.
    let finding = Finding {
        key: FindingKey {
            kind: FindingKind::FeatureDrift,
            subject: "amount".into(),
        },
        windows: 3,
        of: 5,
        detail: "amount drifted".into(),
        since_ms: 2_005,
    };
    let w1 = window(2_000, vec![finding.clone()]);
    let event = ModelEvent {
        id: 0,
        model: "fraud".into(),
        version: 1,
        kind: EventKind::Raised,
        finding,
        window_end: 2_000,
        at_ms: 2_005,
    };
    assert!(
        store
            .add_drift_window(&w1, std::slice::from_ref(&event))
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_drift_window(&w1, std::slice::from_ref(&event))
            .await
            .unwrap(),
        "judged once"
    );
    let mut cleared = event.clone();
    cleared.kind = EventKind::Cleared;
    assert!(
        store
            .add_drift_window(&window(3_000, Vec::new()), &[cleared])
            .await
            .unwrap()
    );
    let windows = store.drift_windows("fraud", 1, 10).await.unwrap();
    assert_eq!(
        windows.iter().map(|w| w.end).collect::<Vec<_>>(),
        [2_000, 3_000]
    );
    assert_eq!(windows[0], w1);
    assert_eq!(store.latest_drift_windows().await.unwrap()[0].end, 3_000);
    assert_eq!(store.model_versions("fraud").await.unwrap(), [1]);
    let feed = store.model_events(0, 10).await.unwrap();
    assert_eq!(
        feed.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::Raised, EventKind::Cleared]
    );
    assert!(feed[0].id < feed[1].id);
    assert_eq!(store.model_events(feed[0].id, 10).await.unwrap().len(), 1);
}

async fn a_model_has_one_open_job_claimed_once(backend: Backend) {
    let store = open(&backend).await;
    let policy: Policy = serde_json::from_value(json!({"timeout_seconds": 60})).unwrap();
    store.put_policy("fraud", &policy, 1).await.unwrap();
    store.put_policy("fraud", &policy, 2).await.unwrap();
    assert_eq!(
        store.policies().await.unwrap(),
        vec![("fraud".to_owned(), policy)]
    );

    let first = store
        .add_job(&Job::queued("fraud", "manual", "go", 10))
        .await
        .unwrap();
    let again = store
        .add_job(&Job::queued("fraud", "drift", "dataset_drift", 11))
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict(ref m)) if m.contains("queued")),
        "{again:?}"
    );
    let other = store
        .add_job(&Job::queued("churn", "manual", "go", 12))
        .await
        .unwrap();
    assert_ne!(first, other);
    assert!(store.claim_job(first, "r1", 20).await.unwrap());
    assert!(
        !store.claim_job(first, "r2", 21).await.unwrap(),
        "claimed once"
    );
    let mut running = store.job(first).await.unwrap().unwrap();
    assert_eq!(
        (running.job.status, running.heartbeat_ms),
        (JobStatus::Running, 20)
    );
    running.job.status = JobStatus::Running;
    running.job.replica = Some("r1".into());
    running.job.log = "epoch 1".into();
    assert!(
        !store.update_job(&running.job, "r2", 30).await.unwrap(),
        "only its replica updates it"
    );
    assert!(store.update_job(&running.job, "r1", 30).await.unwrap());
    let open_jobs = store.open_jobs().await.unwrap();
    assert_eq!(open_jobs.len(), 2);
    assert_eq!(
        (open_jobs[0].heartbeat_ms, open_jobs[0].job.log.as_str()),
        (30, "epoch 1")
    );
    // Failed by another replica: its own update no longer lands, a new job may queue.
    let failed = running
        .job
        .clone()
        .failed("its replica r1 stopped sending heartbeats", 40);
    assert!(store.fail_job(&failed, JobStatus::Running).await.unwrap());
    assert!(!store.fail_job(&failed, JobStatus::Running).await.unwrap());
    assert!(!store.update_job(&running.job, "r1", 50).await.unwrap());
    let next = store
        .add_job(&Job::queued("fraud", "manual", "again", 60))
        .await
        .unwrap();
    assert!(next > first);
    let jobs = store.jobs("fraud", 10).await.unwrap();
    let listed: Vec<(u64, JobStatus)> = jobs.iter().map(|s| (s.job.id, s.job.status)).collect();
    assert_eq!(
        listed,
        vec![(first, JobStatus::Failed), (next, JobStatus::Queued)]
    );
    assert_eq!(
        jobs[0].job.outcome,
        "its replica r1 stopped sending heartbeats"
    );
    assert!(store.job(999_999).await.unwrap().is_none());
}

async fn labelled_samples_join_their_latest_labels(backend: Backend) {
    let store = open(&backend).await;
    let mut b = batch("l-1", 2_000, vec![counts("stable", 4)]);
    b.samples = (1..=4).map(|i| sample("stable", 1_000 + i, None)).collect();
    b.samples.push(sample("canary", 1_005, None));
    store.ingest(&b, 1_000, 2_000).await.unwrap();
    let label = |at: u64, label: f64, id: &str, observed_ms: u64| FeedbackEvent {
        event_id: Some(id.to_owned()),
        rollout: None,
        request_id: Some(format!("req-{at}")),
        user_key: None,
        label,
        value: None,
        observed_ms,
    };
    store
        .add_feedback(
            &[
                label(1_001, 0.0, "e1", 3_000),
                label(1_002, 1.0, "e2", 3_000),
                // Labelled twice: the one observed last counts (a chargeback, then its
                // reversal), whatever the order they arrived in.
                label(1_003, 0.0, "e3", 5_000),
                label(1_003, 1.0, "e4", 4_000),
                label(1_005, 1.0, "e5", 3_000),
            ],
            3_000,
        )
        .await
        .unwrap();
    let got = store
        .labelled_samples("fraud", "stable", 0, 100)
        .await
        .unwrap();
    let seen: Vec<(u64, f64)> = got.iter().map(|s| (s.at_ms, s.label)).collect();
    assert_eq!(
        seen,
        vec![(1_001, 0.0), (1_002, 1.0), (1_003, 0.0)],
        "1_004 has no label"
    );
    assert_eq!(got[0].features["amount"], json!(100.1));
    let later = store
        .labelled_samples("fraud", "stable", 1_002, 1)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].at_ms, 1_002);
}
