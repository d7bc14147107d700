//! Requests copied to shadow variants, against the mock host: the copies the root
//! sends, the answers it pairs, and what is skipped and why.

// Tests fail loudly: their helpers may unwrap and index too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Answer, Filter};
use outrider_filter_logic::metric_names as names;
use outrider_filter_logic::mock::HttpCall;
use outrider_filter_logic::stats::COUNTER_FLUSH_MS;

const SHADOWED: &str = r#"{"rollout": "fraud", "variants": [{"name": "stable", "weight": 100}],
    "shadows": [{"name": "v3", "cluster": "model-v3", "authority": "v3.local", "share": 100,
                 "max_body_bytes": 64, "max_in_flight": 2, "timeout_ms": 1000,
                 "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}]}"#;

const BODY: &[u8] = br#"{"inputs": [{"data": [1, 2]}]}"#;

fn prediction(score: f64) -> Vec<u8> {
    format!(r#"{{"outputs": [{{"data": [{score}]}}]}}"#).into_bytes()
}

/// Sends what the desk queued and returns the calls.
fn copies(f: &mut Filter) -> Vec<HttpCall> {
    f.tick(20);
    f.host.take_calls()
}

fn stat(f: &mut Filter, name: &str) -> u64 {
    f.tick(COUNTER_FLUSH_MS);
    f.stat(name)
}

#[test]
fn a_copy_goes_out_on_the_tick_and_its_answer_is_compared() {
    let mut f = Filter::new(SHADOWED);
    let request = f.send(
        &[
            (":method", "POST"),
            (":path", "/v2/models/fraud/infer"),
            (":authority", "models"),
            ("x-user-id", "u1"),
            ("connection", "keep-alive"),
            ("content-length", "30"),
            ("x-envoy-expected-rq-timeout-ms", "1000"),
        ],
        &[&BODY[..10], &BODY[10..]],
    );
    assert!(
        f.host.take_calls().is_empty(),
        "the request never calls the shadow itself"
    );
    let calls = copies(&mut f);
    assert_eq!(calls.len(), 1);
    let copy = &calls[0];
    assert_eq!(copy.cluster, "model-v3");
    assert_eq!(copy.body.as_deref(), Some(BODY));
    assert_eq!(copy.header(":authority"), Some("v3.local"));
    assert_eq!(copy.header("x-outrider-shadow"), Some("v3"));
    assert_eq!(copy.header("x-user-id"), Some("u1"));
    for gone in [
        "connection",
        "content-length",
        "x-envoy-expected-rq-timeout-ms",
        "x-outrider-variant",
    ] {
        assert_eq!(copy.header(gone), None, "{gone}");
    }
    assert_eq!(copy.timeout.as_millis(), 1000);

    // The shadow answers first (0.7: label 1), then the primary (0.25: label 0).
    f.host.advance_ms(8);
    f.reply(copy, Some(200), &[], &prediction(0.7));
    f.answer(request, 2, &Answer::default());
    assert_eq!(
        stat(
            &mut f,
            &names::shadow_comparisons("fraud", "v3", "disagree")
        ),
        1
    );
    assert_eq!(f.stat(&names::shadow_labels("fraud", "v3", "0_1")), 1);
    assert_eq!(f.stat(&names::shadow_mirrored("fraud", "v3")), 1);
    assert_eq!(
        f.stat(&names::shadow_responses("fraud", "v3", "completed")),
        1
    );
    assert_eq!(
        f.host.histogram(&names::shadow_score_diff("fraud", "v3")),
        [450]
    );
    assert_eq!(f.host.histogram(&names::shadow_latency("fraud", "v3")), [8]);
}

#[test]
fn the_primary_may_answer_before_the_copy_leaves() {
    let mut f = Filter::new(SHADOWED);
    let request = f.send(&[("x-user-id", "u1")], &[BODY]);
    f.answer(request, 1, &Answer::default());
    let calls = copies(&mut f);
    f.reply(&calls[0], Some(200), &[], &prediction(0.2));
    assert_eq!(
        stat(&mut f, &names::shadow_comparisons("fraud", "v3", "agree")),
        1
    );
}

#[test]
fn bodies_over_the_limit_and_copies_over_the_cap_are_skipped() {
    let mut f = Filter::new(SHADOWED);
    let big = [b' '; 65];
    let request = f.send(&[("x-user-id", "u1")], &[&big]);
    f.answer(request, 1, &Answer::default());
    assert!(copies(&mut f).is_empty());
    assert_eq!(
        stat(
            &mut f,
            &names::shadow_skipped("fraud", "v3", "body_too_large")
        ),
        1
    );

    let held: Vec<_> = (0..5)
        .map(|i| f.send(&[("x-user-id", &format!("k{i}"))], &[BODY]))
        .collect();
    assert_eq!(copies(&mut f).len(), 2, "two in flight at most");
    assert_eq!(
        stat(
            &mut f,
            &names::shadow_skipped("fraud", "v3", "in_flight_cap")
        ),
        3
    );
    for request in held {
        f.answer(request, 1, &Answer::default());
    }
}

#[test]
fn a_primary_that_never_answers_leaves_its_copy_uncompared() {
    let mut f = Filter::new(SHADOWED);
    let request = f.send(&[("x-user-id", "u1")], &[BODY]);
    let calls = copies(&mut f);
    // The client goes away before the primary answered.
    let mut request = request;
    request.on_done(&f.host);
    drop(request);
    f.reply(&calls[0], Some(200), &[], &prediction(0.9));
    assert_eq!(
        stat(
            &mut f,
            &names::shadow_skipped("fraud", "v3", "primary_incomplete")
        ),
        1
    );
    let compared: u64 = f
        .host
        .metrics_matching("shadow_comparison_total")
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(compared, 0);
}

#[test]
fn failing_shadows_are_counted_and_never_seen_by_the_client() {
    let mut f = Filter::new(SHADOWED);
    f.host.refuse_calls(true);
    let request = f.send(&[("x-user-id", "u1")], &[BODY]);
    assert!(copies(&mut f).is_empty());
    f.answer(request, 1, &Answer::default());
    assert_eq!(
        stat(
            &mut f,
            &names::shadow_skipped("fraud", "v3", "dispatch_failed")
        ),
        1
    );
    f.host.refuse_calls(false);
    for status in [Some(500), None] {
        let request = f.send(&[("x-user-id", "u2")], &[BODY]);
        let calls = copies(&mut f);
        f.host.advance_ms(1_000);
        f.reply(&calls[0], status, &[], b"");
        f.answer(request, 1, &Answer::default());
    }
    assert_eq!(
        stat(&mut f, &names::shadow_responses("fraud", "v3", "error")),
        1
    );
    assert_eq!(
        f.stat(&names::shadow_responses("fraud", "v3", "timeout")),
        1
    );
}

#[test]
fn the_tick_speeds_up_while_copies_flow() {
    let mut f = Filter::new(SHADOWED);
    assert_eq!(f.host.tick_period().map(|d| d.as_millis()), Some(20));
    let request = f.send(&[("x-user-id", "u1")], &[BODY]);
    copies(&mut f);
    assert_eq!(f.host.tick_period().map(|d| d.as_millis()), Some(1));
    f.answer(request, 1, &Answer::default());
    for _ in 0..11 {
        f.tick(20);
    }
    assert_eq!(
        f.host.tick_period().map(|d| d.as_millis()),
        Some(20),
        "slow again when idle"
    );
}
