//! The guardrail against the mock host: a failing variant goes to 0% at once on the
//! worker that judged it and at the next tick on the others, is counted, logged and
//! reported, and stays at 0% until a newer state from the scorer.

// Tests fail loudly: their helpers may unwrap and index too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Answer, Filter};
use outrider_filter_logic::guardrail::Record;
use outrider_filter_logic::host::{LogLevel, Map};
use outrider_filter_logic::metric_names as names;
use outrider_filter_logic::mock::{HttpCall, MockHost};
use outrider_filter_logic::{Request, Root};
use outrider_protocol::{GuardrailReason, TelemetryBatch};

/// Half the users on each variant; the canary guarded on its 5xx share.
fn guarded(limits: &str) -> String {
    format!(
        r#"{{"rollout": "fraud", "variants": [{{"name": "stable", "weight": 50}}, {{"name": "canary", "weight": 50}}],
            "guardrail": {{"window_ms": 10000, "min_requests": 20, {limits}}},
            "scorer": {{"cluster": "outrider-scorer", "poll_interval_ms": 1000, "flush_interval_ms": 1000,
                        "timeout_ms": 500}}}}"#
    )
}

const FIVE_XX: &str = r#""max_5xx_share": 0.5"#;

/// Sends a keyed request through `root`; returns it and the variant it was routed to.
fn send(host: &MockHost, root: &Root, key: &str) -> (Request, String) {
    let mut request = root.request();
    host.set_headers(Map::RequestHeaders, &[("x-user-id", key)]);
    request.on_request_headers(host, true);
    let variant = host
        .get_header(Map::RequestHeaders, "x-outrider-variant")
        .unwrap_or_default();
    (request, variant)
}

/// Answers `request` with `status` after 1 ms, ending the stream at the headers.
fn answer(host: &MockHost, mut request: Request, status: &str) {
    host.advance_ms(1);
    host.set_headers(Map::ResponseHeaders, &[(":status", status)]);
    request.on_response_headers(host, true);
    request.on_done(host);
}

/// Requests of fresh keys through `root` until `canary` of them went to the canary,
/// each answered with `status(n)` for the canary's n-th (from 0) and 200 for stable.
/// Returns how many went to each variant.
fn traffic(
    host: &MockHost,
    root: &Root,
    tag: &str,
    canary: usize,
    status: impl Fn(usize) -> &'static str,
) -> (usize, usize) {
    let (mut to_canary, mut to_stable) = (0, 0);
    let mut i = 0;
    while to_canary < canary {
        let (request, variant) = send(host, root, &format!("{tag}-{i}"));
        i += 1;
        if variant == "canary" {
            answer(host, request, status(to_canary));
            to_canary += 1;
        } else {
            answer(host, request, "200");
            to_stable += 1;
        }
        assert!(i < 10_000, "the canary stopped getting requests");
    }
    (to_canary, to_stable)
}

/// Of `n` fresh keys through `root`, how many went to the canary.
fn canary_share(host: &MockHost, root: &Root, tag: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let (request, variant) = send(host, root, &format!("{tag}-{i}"));
            answer(host, request, "200");
            variant == "canary"
        })
        .count()
}

fn weight(f: &Filter, variant: &str) -> u64 {
    f.host.metric(&names::weight("fraud", variant))
}

fn trips(f: &Filter, reason: &str) -> u64 {
    f.stat(&names::guardrail_trips("fraud", "canary", reason))
}

fn batches(calls: &[HttpCall]) -> Vec<TelemetryBatch> {
    calls
        .iter()
        .filter(|c| c.header(":path") == Some("/v1/telemetry"))
        .map(|c| serde_json::from_slice(c.body.as_deref().unwrap()).unwrap())
        .collect()
}

fn state(version: u64, stable: f64, canary: f64) -> String {
    format!(
        r#"{{"rollout": "fraud", "version": {version}, "status": "active",
            "weights": [{{"variant": "stable", "weight": {stable}}}, {{"variant": "canary", "weight": {canary}}}]}}"#
    )
}

/// Ticks until the filter polls, and answers the poll with `body`.
fn serve_state(f: &mut Filter, body: &str) {
    for _ in 0..8 {
        f.tick(250);
        let calls = f.host.take_calls();
        if let Some(poll) = calls
            .iter()
            .find(|c| c.header(":path") == Some("/v1/rollouts/fraud/state"))
        {
            f.reply(poll, Some(200), &[], body.as_bytes());
            f.tick(250);
            return;
        }
    }
    panic!("no poll");
}

fn logged(f: &Filter, level: LogLevel, part: &str) -> Vec<String> {
    f.host
        .logs()
        .into_iter()
        .filter(|(l, line)| *l == level && line.contains(part))
        .map(|(_, line)| line)
        .collect()
}

#[test]
fn a_failing_variant_goes_to_zero_at_once_on_the_worker_that_judged_it() {
    let mut f = Filter::new(&guarded(FIVE_XX));
    // 10 good answers, then errors: 10 of 20 is not above half, 11 of 21 is.
    let (_, stable_before) = traffic(&f.host, &f.root, "before", 20, |n| {
        if n < 10 { "200" } else { "503" }
    });
    assert_eq!(weight(&f, "canary"), 5_000, "not yet");
    assert!(logged(&f, LogLevel::Warn, "guardrail").is_empty());
    // The canary still gets requests; its 21st answer trips it.
    let (_, stable_21st) = traffic(&f.host, &f.root, "the-21st", 1, |_| "503");

    // At once, before any tick: no canary, gauges, log line.
    assert_eq!(
        canary_share(&f.host, &f.root, "after", 200),
        0,
        "the canary's users go to stable"
    );
    assert_eq!((weight(&f, "stable"), weight(&f, "canary")), (10_000, 0));
    let lines = logged(&f, LogLevel::Warn, "guardrail tripped");
    assert_eq!(
        lines,
        vec![
            "rollout `fraud`: guardrail tripped: variant `canary` at 0% on this Envoy (its \
             requests go to `stable`) until a state newer than version 0: 5xx share 0.524 \
             (11 of 21 requests in 10000 ms) above 0.5"
                .to_owned()
        ]
    );
    assert_eq!(trips(&f, "5xx_share"), 0, "counters wait for the tick");

    // The tick: the counter; the flush: the trip in the batch, with its figures.
    f.tick(1_000);
    assert_eq!(trips(&f, "5xx_share"), 1);
    assert_eq!(trips(&f, "grpc_error_share") + trips(&f, "p99_latency"), 0);
    let sent = batches(&f.host.take_calls());
    assert_eq!(sent.len(), 1);
    let batch = &sent[0];
    let trip = &batch.guardrail_trips[..];
    assert_eq!(trip.len(), 1);
    let t = &trip[0];
    assert_eq!(
        (
            t.variant.as_str(),
            t.reason,
            t.requests,
            t.offending,
            t.limit,
            t.window_ms,
            t.state_version
        ),
        (
            "canary",
            GuardrailReason::ServerErrorShare,
            21,
            11,
            0.5,
            10_000,
            0
        )
    );
    let count = |v: &str| {
        batch
            .variants
            .iter()
            .find(|c| c.variant == v)
            .map_or(0, |c| c.requests)
    };
    assert_eq!(count("canary"), 21, "none after the trip");
    assert_eq!(
        count("stable") as usize,
        stable_before + stable_21st + 200,
        "the canary's users counted where they went"
    );
    // The Envoy's record, for the other workers.
    let record = Record::decode(&f.host.shared("outrider/fraud/guardrail").unwrap());
    assert_eq!(record.trips, vec![t.clone()]);
    // Reported once.
    f.tick(1_000);
    assert!(
        batches(&f.host.take_calls())
            .iter()
            .all(|b| b.guardrail_trips.is_empty())
    );
    assert_eq!(trips(&f, "5xx_share"), 1);
}

#[test]
fn every_other_worker_follows_at_its_next_tick() {
    let mut f = Filter::new(&guarded(FIVE_XX));
    let config = guarded(FIVE_XX);
    let mut second = Root::new(0xbeef);
    assert!(second.configure(&f.host, config.len()));
    f.tick(250);
    second.tick(&f.host);

    traffic(&f.host, &f.root, "fail", 20, |_| "503");
    assert_eq!(canary_share(&f.host, &f.root, "first", 100), 0);
    let before = canary_share(&f.host, &second, "second", 100);
    assert!(before > 30, "the other worker has not looked yet: {before}");

    f.host.advance_ms(250);
    second.tick(&f.host);
    assert_eq!(
        canary_share(&f.host, &second, "second-after", 200),
        0,
        "one tick later"
    );
    let followed = logged(&f, LogLevel::Info, "at 0% on this worker too");
    assert_eq!(followed.len(), 1, "{followed:?}");
    assert!(
        followed[0].contains("5xx share 1.000 (20 of 20 requests in 10000 ms) above 0.5"),
        "{}",
        followed[0]
    );
    assert_eq!(weight(&f, "canary"), 0);

    // Counted and reported once: by the worker that judged it.
    for _ in 0..4 {
        f.tick(250);
        second.tick(&f.host);
    }
    assert_eq!(trips(&f, "5xx_share"), 1);
    let sent = batches(&f.host.take_calls());
    assert_eq!(sent.len(), 2, "one batch per worker");
    let reported: usize = sent.iter().map(|b| b.guardrail_trips.len()).sum();
    assert_eq!(reported, 1);
}

#[test]
fn a_trip_stays_through_the_same_state_and_lifts_on_a_newer_one() {
    let mut f = Filter::new(&guarded(FIVE_XX));
    serve_state(&mut f, &state(2, 50.0, 50.0));
    traffic(&f.host, &f.root, "fail", 20, |_| "503");
    let line = logged(&f, LogLevel::Warn, "guardrail tripped")
        .pop()
        .unwrap();
    assert!(
        line.contains("until a state newer than version 2"),
        "{line}"
    );

    // The same version again, then an older one: still 0%.
    serve_state(&mut f, &state(2, 50.0, 50.0));
    serve_state(&mut f, &state(1, 50.0, 50.0));
    assert_eq!(canary_share(&f.host, &f.root, "held", 200), 0);
    assert_eq!(weight(&f, "canary"), 0);

    // A newer state: lifted, with its own weights.
    serve_state(&mut f, &state(3, 90.0, 10.0));
    let lifted = logged(&f, LogLevel::Info, "lifted");
    assert_eq!(
        lifted,
        vec![
            "rollout `fraud`: guardrail on variant `canary` lifted: a state newer than \
             version 2 is in effect"
                .to_owned()
        ]
    );
    assert_eq!((weight(&f, "stable"), weight(&f, "canary")), (9_000, 1_000));
    // The canary gets its 10% again, and its window started empty: 19 more errors do
    // not trip it, the 20th does.
    let (canary, stable) = traffic(&f.host, &f.root, "again", 19, |_| "503");
    assert!(
        (80..=500).contains(&stable),
        "about 10% to the canary: {canary} of {}",
        canary + stable
    );
    assert_eq!(weight(&f, "canary"), 1_000);
    traffic(&f.host, &f.root, "again-20th", 1, |_| "503");
    assert_eq!(weight(&f, "canary"), 0);
    let line = logged(&f, LogLevel::Warn, "guardrail tripped")
        .pop()
        .unwrap();
    assert!(
        line.contains("version 3: 5xx share 1.000 (20 of 20 requests"),
        "{line}"
    );
}

#[test]
fn a_new_configuration_starts_fresh() {
    let mut f = Filter::new(&guarded(FIVE_XX));
    traffic(&f.host, &f.root, "fail", 20, |_| "503");
    assert_eq!(canary_share(&f.host, &f.root, "tripped", 100), 0);
    f.host.advance_ms(5);
    assert!(f.configure(&guarded(r#""max_5xx_share": 0.6"#)));
    f.tick(250);
    f.tick(250);
    let share = canary_share(&f.host, &f.root, "fresh", 200);
    assert!(
        share > 60,
        "the earlier configuration's trip stays with it: {share} of 200"
    );
    assert_eq!(weight(&f, "canary"), 5_000);
}

#[test]
fn grpc_errors_and_slow_answers_trip_it_too() {
    // gRPC errors in trailers. The 20th answer's headers make 20 requests, 19 of them
    // with an error: judged before its own trailers.
    let mut f = Filter::new(&guarded(r#""max_grpc_error_share": 0.25"#));
    let mut i = 0;
    let mut canary = 0;
    while canary < 20 {
        let request = f.send(&[("x-user-id", &format!("g-{i}"))], &[]);
        i += 1;
        let to_canary = f
            .host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .as_deref()
            == Some("canary");
        let trailers: &[(&str, &str)] = if to_canary {
            canary += 1;
            &[("grpc-status", "14")]
        } else {
            &[("grpc-status", "0")]
        };
        f.answer(
            request,
            1,
            &Answer {
                trailers,
                ..Answer::default()
            },
        );
    }
    assert_eq!(weight(&f, "canary"), 0);
    f.tick(250);
    assert_eq!(trips(&f, "grpc_error_share"), 1);
    let line = logged(&f, LogLevel::Warn, "guardrail tripped")
        .pop()
        .unwrap();
    assert!(
        line.ends_with("gRPC error share 0.950 (19 of 20 requests in 10000 ms) above 0.25"),
        "{line}"
    );

    // One slow answer in 20 puts the p99 above the limit.
    let mut f = Filter::new(&guarded(r#""max_p99_ms": 100"#));
    let mut canary = 0;
    let mut i = 0;
    while canary < 20 {
        let request = f.send(&[("x-user-id", &format!("p-{i}"))], &[]);
        i += 1;
        let to_canary = f
            .host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .as_deref()
            == Some("canary");
        let after = if to_canary {
            canary += 1;
            if canary == 20 { 150 } else { 100 }
        } else {
            1
        };
        f.answer(request, after, &Answer::default());
        if canary == 19 {
            assert_eq!(weight(&f, "canary"), 5_000, "answers at the limit are fine");
        }
    }
    assert_eq!(weight(&f, "canary"), 0);
    f.tick(250);
    assert_eq!(trips(&f, "p99_latency"), 1);
    let line = logged(&f, LogLevel::Warn, "guardrail tripped")
        .pop()
        .unwrap();
    assert!(
        line.ends_with(
            "p99 latency above 100 ms (1 of 20 requests in 10000 ms, 5.0%, took longer)"
        ),
        "{line}"
    );
}

#[test]
fn a_guarded_request_costs_no_more_host_calls() {
    let f = Filter::new(&guarded(
        r#""max_5xx_share": 0.5, "max_grpc_error_share": 0.5, "max_p99_ms": 100"#,
    ));
    f.round_trip("warm-up");
    let mut judged = 0;
    for i in 0..20 {
        f.host.reset_host_calls();
        f.round_trip(&format!("u{i}"));
        assert_eq!(f.host.host_call_total(), 6, "{:?}", f.host.host_calls());
        if f.host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .as_deref()
            == Some("canary")
        {
            judged += 1;
        }
    }
    assert!(judged > 3, "{judged} of 20 went to the guarded canary");
}
