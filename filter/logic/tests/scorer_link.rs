//! The link to the scorer, against the mock host: one poller per Envoy by lease, the
//! state shared with every worker, 304s, refused states, and the telemetry outbox.

// Tests fail loudly: their helpers may unwrap and index too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Filter;
use outrider_filter_logic::host::{LogLevel, Map};
use outrider_filter_logic::metric_names as names;
use outrider_filter_logic::mock::HttpCall;
use outrider_filter_logic::{Request, Root};
use outrider_protocol::TelemetryBatch;

const LINKED: &str = r#"{"rollout": "fraud", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
    "scorer": {"cluster": "outrider-scorer", "authority": "scorer.local", "token": "t0ken",
               "poll_interval_ms": 1000, "flush_interval_ms": 1000, "timeout_ms": 500,
               "max_pending_batches": 3}}"#;

fn state(version: u64, stable: f64, canary: f64) -> String {
    format!(
        r#"{{"rollout": "fraud", "version": {version}, "status": "active",
            "weights": [{{"variant": "stable", "weight": {stable}}}, {{"variant": "canary", "weight": {canary}}}]}}"#
    )
}

fn polls(calls: &[HttpCall]) -> Vec<&HttpCall> {
    calls
        .iter()
        .filter(|c| c.header(":path") == Some("/v1/rollouts/fraud/state"))
        .collect()
}

fn batches(calls: &[HttpCall]) -> Vec<&HttpCall> {
    calls
        .iter()
        .filter(|c| c.header(":path") == Some("/v1/telemetry"))
        .collect()
}

fn weight(f: &Filter, variant: &str) -> u64 {
    f.host.metric(&names::weight("fraud", variant))
}

#[test]
fn one_worker_polls_and_every_worker_follows() {
    let mut first = Filter::new(LINKED);
    first.tick(250);
    let calls = first.host.take_calls();
    let poll = polls(&calls)[0].clone();
    assert_eq!(
        (
            poll.cluster.as_str(),
            poll.header(":authority"),
            poll.header("if-none-match")
        ),
        ("outrider-scorer", Some("scorer.local"), None)
    );
    // A second worker of the same Envoy: same shared data, its own root.
    let mut second = Root::new(0xbeef);
    second.configure(&first.host, LINKED.len());
    second.tick(&first.host);
    assert!(
        polls(&first.host.take_calls()).is_empty(),
        "the lease holder polls alone"
    );

    first.reply(
        &poll,
        Some(200),
        &[("etag", "\"fraud-2\"")],
        state(2, 70.0, 30.0).as_bytes(),
    );
    first.tick(250);
    assert_eq!(weight(&first, "canary"), 3000);
    assert_eq!(first.host.metric(&names::state_version("fraud")), 2);
    assert_eq!(first.root.rollout().unwrap().variants[1].weight_bp, 3000);
    second.tick(&first.host);
    assert_eq!(
        second.rollout().unwrap().variants[1].weight_bp,
        3000,
        "picked up from shared data"
    );

    // The next poll asks whether it changed; 304 keeps it.
    first.tick(1_000);
    let calls = first.host.take_calls();
    let poll = polls(&calls)[0].clone();
    assert_eq!(poll.header("if-none-match"), Some("\"fraud-2\""));
    first.reply(&poll, Some(304), &[], b"");
    first.tick(250);
    assert_eq!(first.stat(&names::scorer_polls("fraud", "ok")), 1);
    assert_eq!(first.stat(&names::scorer_polls("fraud", "not_modified")), 1);
    assert!(first.host.metric(&names::state_age("fraud")) <= 250);
}

#[test]
fn the_lease_passes_on_when_its_holder_stops() {
    let first = Filter::new(LINKED);
    let mut holder = Root::new(1);
    let mut other = Root::new(2);
    for root in [&mut holder, &mut other] {
        root.configure(&first.host, LINKED.len());
    }
    holder.tick(&first.host);
    other.tick(&first.host);
    assert_eq!(polls(&first.host.take_calls()).len(), 1);
    // The holder stalls: the lease lasts three poll intervals.
    for _ in 0..11 {
        first.host.advance_ms(250);
        other.tick(&first.host);
    }
    assert!(polls(&first.host.take_calls()).is_empty());
    first.host.advance_ms(250);
    other.tick(&first.host);
    assert_eq!(
        polls(&first.host.take_calls()).len(),
        1,
        "taken over after 3 s"
    );
}

#[test]
fn a_state_the_filter_cannot_route_is_refused_whole() {
    let mut f = Filter::new(LINKED);
    f.tick(250);
    let calls = f.host.take_calls();
    let body = r#"{"rollout": "fraud", "version": 3, "status": "active",
        "weights": [{"variant": "stable", "weight": 50}, {"variant": "shadow", "weight": 50}]}"#;
    f.reply(polls(&calls)[0], Some(200), &[], body.as_bytes());
    f.tick(250);
    assert_eq!(weight(&f, "canary"), 1000, "the configured weights stay");
    assert_eq!(f.stat(&names::states_rejected("fraud")), 1);
    let (level, line) = f.host.logs().pop().unwrap();
    assert_eq!(level, LogLevel::Warn);
    assert!(
        line.contains("state version 3 not applied") && line.contains("`shadow`"),
        "{line}"
    );
}

#[test]
fn failed_polls_keep_the_weights_and_the_age_grows() {
    let mut f = Filter::new(LINKED);
    f.tick(250);
    let calls = f.host.take_calls();
    f.reply(polls(&calls)[0], None, &[], b"");
    f.host.refuse_calls(true);
    for _ in 0..8 {
        f.tick(250);
    }
    assert_eq!(weight(&f, "canary"), 1000);
    assert_eq!(f.stat(&names::scorer_polls("fraud", "failed")), 3);
    assert!(f.host.metric(&names::state_age("fraud")) >= 2_000);
}

fn traffic(f: &Filter, n: usize) {
    for i in 0..n {
        let request: Request = f.send(&[("x-user-id", &format!("u{i}"))], &[]);
        f.answer(request, 1, &common::Answer::default());
    }
}

/// Ticks through one flush interval and returns the batch calls made.
fn flush(f: &mut Filter) -> Vec<HttpCall> {
    f.tick(1_000);
    batches(&f.host.take_calls()).into_iter().cloned().collect()
}

fn decode(call: &HttpCall) -> TelemetryBatch {
    serde_json::from_slice(call.body.as_deref().unwrap()).unwrap()
}

#[test]
fn telemetry_batches_carry_the_counts_with_the_token() {
    let mut f = Filter::new(LINKED);
    traffic(&f, 20);
    let calls = flush(&mut f);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    let batch = decode(call);
    let sent: u64 = batch.variants.iter().map(|v| v.requests).sum();
    let answered: u64 = batch.variants.iter().map(|v| v.responses.success).sum();
    assert_eq!((sent, answered), (20, 20));
    f.reply(call, Some(200), &[], b"{}");
    let quiet = flush(&mut f);
    assert_eq!(quiet.len(), 1, "nothing new: an empty batch says so");
    let empty = decode(&quiet[0]);
    assert!(empty.variants.is_empty() && empty.samples.is_empty());
    assert_eq!(
        (empty.window_start_ms, empty.worker.as_ref()),
        (batch.window_end_ms, batch.worker.as_ref()),
        "it starts where the last one ended, from the same worker"
    );
    f.reply(&quiet[0], Some(200), &[], b"{}");
    f.tick(250);
    assert_eq!(f.stat(&names::telemetry_batches("fraud", "sent")), 2);
}

#[test]
fn batches_cover_time_without_gaps_and_an_empty_one_never_jumps_the_queue() {
    let mut f = Filter::new(LINKED);
    traffic(&f, 3);
    let first = flush(&mut f).pop().unwrap();
    let a = decode(&first);
    f.reply(&first, Some(503), &[], b"");
    // Quiet, with a batch waiting: no empty batch overtakes it.
    let retry = flush(&mut f);
    assert_eq!(retry.len(), 1);
    assert_eq!(decode(&retry[0]).batch_id, a.batch_id);
    f.reply(&retry[0], Some(503), &[], b"");
    traffic(&f, 2);
    let again = flush(&mut f);
    assert_eq!(again.len(), 1, "one call at a time");
    assert_eq!(decode(&again[0]).batch_id, a.batch_id);
    // The answer sends the next batch at once, without waiting for a flush.
    f.reply(&again[0], Some(200), &[], b"{}");
    let chained = batches(&f.host.take_calls())
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(chained.len(), 1);
    let b = decode(&chained[0]);
    f.reply(&chained[0], Some(200), &[], b"{}");
    assert!(batches(&f.host.take_calls()).is_empty(), "nothing left");
    let requests = |batch: &TelemetryBatch| batch.variants.iter().map(|v| v.requests).sum::<u64>();
    assert_eq!((requests(&a), requests(&b)), (3, 2));
    assert_eq!(
        b.window_start_ms, a.window_end_ms,
        "the quiet time is in the next batch"
    );
}

#[test]
fn a_batch_is_dropped_only_when_the_scorer_refuses_it_for_good() {
    let mut f = Filter::new(LINKED);
    let mut ids = Vec::new();
    for (status, kept) in [
        (Some(503), true),
        (None, true),
        (Some(429), true),
        (Some(408), true),
        (Some(400), false),
    ] {
        traffic(&f, 1);
        let call = flush(&mut f).pop().expect("a batch is sent");
        let id = decode(&call).batch_id;
        f.reply(&call, status, &[], b"");
        // A kept batch is sent again, under the same id, before newer ones.
        let again = flush(&mut f);
        let next_id = again.first().map(|c| decode(c).batch_id);
        if kept {
            assert_eq!(next_id.as_deref(), Some(id.as_str()), "{status:?}");
        } else {
            assert_ne!(next_id.as_deref(), Some(id.as_str()), "{status:?}");
        }
        for call in &again {
            f.reply(call, Some(200), &[], b"{}");
        }
        ids.push(id);
    }
    f.tick(250);
    assert_eq!(f.stat(&names::telemetry_batches("fraud", "failed")), 4);
    assert_eq!(f.stat(&names::telemetry_batches("fraud", "rejected")), 1);
    assert!(
        f.host
            .logs()
            .iter()
            .any(|(_, l)| l.contains("refused telemetry batch") && l.contains("(400)"))
    );
}

#[test]
fn the_outbox_keeps_the_newest_batches_drains_at_once_and_shows_its_backlog() {
    let mut f = Filter::new(LINKED);
    f.host.refuse_calls(true);
    for _ in 0..5 {
        traffic(&f, 2);
        assert!(flush(&mut f).is_empty());
    }
    f.tick(250);
    assert_eq!(
        f.stat(&names::telemetry_batches("fraud", "dropped")),
        2,
        "5 batches, room for 3"
    );
    assert_eq!(f.stat(&names::telemetry_batches("fraud", "failed")), 5);
    assert_eq!(f.stat(&names::telemetry_pending("fraud")), 3);
    assert_eq!(
        f.stat(&names::telemetry_oldest_pending("fraud")),
        2 * 1_002 + 250,
        "batch 3 was made two rounds (each a flush interval and two 1 ms answers) and a tick ago"
    );

    f.host.refuse_calls(false);
    let mut sent = Vec::new();
    let mut next = flush(&mut f).pop();
    while let Some(call) = next {
        f.reply(&call, Some(200), &[], b"{}");
        sent.push(decode(&call));
        next = batches(&f.host.take_calls()).first().map(|c| (*c).clone());
    }
    let ids: Vec<&str> = sent
        .iter()
        .map(|b| b.batch_id.rsplit('-').next().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["3", "4", "5"],
        "the oldest kept first, one answer after another"
    );
    f.tick(250);
    assert_eq!(f.stat(&names::telemetry_pending("fraud")), 0);
    assert_eq!(f.stat(&names::telemetry_oldest_pending("fraud")), 0);
    traffic(&f, 1);
    let last = decode(&flush(&mut f).pop().unwrap());
    assert!(last.batch_id.ends_with("-6"));
    assert_eq!(
        last.dropped_batches, 2,
        "the next batch taken tells the scorer how many were lost"
    );
}

#[test]
fn the_backlog_adds_up_over_the_workers_of_an_envoy() {
    let mut first = Filter::new(LINKED);
    let mut second = Root::new(0xbeef);
    second.configure(&first.host, LINKED.len());
    first.host.refuse_calls(true);
    traffic(&first, 1);
    first.tick(1_000);
    first
        .host
        .set_headers(Map::RequestHeaders, &[("x-user-id", "u2")]);
    let mut request = second.request();
    request.on_request_headers(&first.host, true);
    first.answer(request, 0, &common::Answer::default());
    second.tick(&first.host);
    first.tick(250);
    assert_eq!(
        first.stat(&names::telemetry_pending("fraud")),
        2,
        "one batch waits in each worker"
    );
    first.host.refuse_calls(false);
    first.tick(1_000);
    for call in batches(&first.host.take_calls()) {
        first.reply(call, Some(200), &[], b"{}");
    }
    first.tick(250);
    assert_eq!(
        first.stat(&names::telemetry_pending("fraud")),
        1,
        "the other worker's batch still waits"
    );
}

#[test]
fn polls_and_flushes_never_touch_a_request() {
    let mut f = Filter::new(LINKED);
    f.tick(250);
    let _ = f.host.take_calls();
    f.host.reset_host_calls();
    let request = f.send(&[("x-user-id", "u1")], &[]);
    f.answer(request, 1, &common::Answer::default());
    assert_eq!(f.host.host_call_total(), 6);
    assert!(
        f.host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .is_some()
    );
}

#[test]
fn the_workers_of_an_envoy_without_a_node_id_report_as_one_proxy() {
    let mut first = Filter::new(LINKED);
    let mut second = Root::new(0xbeef);
    second.configure(&first.host, LINKED.len());
    first.tick(1_000);
    second.tick(&first.host);
    let sent: Vec<TelemetryBatch> = batches(&first.host.take_calls())
        .into_iter()
        .map(decode)
        .collect();
    assert_eq!(sent.len(), 2, "an empty batch from each");
    assert_eq!(sent[0].proxy, sent[1].proxy);
    assert!(sent[0].proxy.starts_with("envoy-"));
    assert_ne!(sent[0].worker, sent[1].worker);
}
