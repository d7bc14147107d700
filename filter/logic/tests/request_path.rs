//! One request's path through the filter, against the mock host: what it sets, what
//! it counts, what it samples, and how many host calls it costs.

// Tests fail loudly: their helpers may unwrap and index too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Answer, Filter};
use outrider_filter_logic::host::{LogLevel, Map};
use outrider_filter_logic::metric_names as names;
use outrider_filter_logic::override_token::mint;
use outrider_filter_logic::stats::COUNTER_FLUSH_MS;
use outrider_protocol::{StatusClass, TelemetryBatch};

const SPLIT: &str = r#"{"rollout": "bench", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}"#;

#[test]
fn a_keyed_request_costs_six_host_calls() {
    let f = Filter::new(SPLIT);
    f.round_trip("warm-up");
    f.host.reset_host_calls();
    let request = f.send(&[(":path", "/"), ("x-user-id", "u1")], &[]);
    f.answer(request, 2, &Answer::default());
    let calls = f.host.host_calls();
    let expected = [
        ("header", 2),     // the sticky key, then `:status`
        ("set_header", 1), // the routing header; Envoy routes again by it
        ("now", 2),        // start and end, for the latency
        ("record", 1),     // the latency histogram
    ];
    assert_eq!(
        calls,
        expected.into_iter().collect(),
        "counters wait for the tick; nothing else is read"
    );
    assert_eq!(f.host.host_call_total(), 6);
}

#[test]
fn counters_reach_envoy_on_the_tick() {
    let mut f = Filter::new(SPLIT);
    assert_eq!(f.host.tick_period().map(|d| d.as_millis()), Some(250));
    let mut canary = 0;
    for i in 0..200 {
        let key = format!("user-{i}");
        let request = f.send(&[("x-user-id", &key)], &[]);
        if f.host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .as_deref()
            == Some("canary")
        {
            canary += 1;
        }
        f.answer(request, 3, &Answer::default());
    }
    let requests = |f: &Filter, v: &str| f.stat(&names::requests("bench", v));
    assert_eq!(
        requests(&f, "stable") + requests(&f, "canary"),
        0,
        "not before the tick"
    );
    assert_eq!(
        f.host
            .histogram(&names::upstream_latency("bench", "stable"))
            .len() as u64
            + f.host
                .histogram(&names::upstream_latency("bench", "canary"))
                .len() as u64,
        200,
        "histograms at once"
    );
    f.tick(COUNTER_FLUSH_MS);
    assert_eq!(requests(&f, "canary"), canary);
    assert_eq!(requests(&f, "stable"), 200 - canary);
    assert!(canary > 5 && canary < 40, "{canary}");
    assert_eq!(
        f.stat(&names::responses("bench", "stable", StatusClass::Success))
            + f.stat(&names::responses("bench", "canary", StatusClass::Success)),
        200
    );
    assert!(
        f.host
            .histogram(&names::upstream_latency("bench", "canary"))
            .iter()
            .all(|ms| *ms == 3)
    );
    f.tick(COUNTER_FLUSH_MS);
    assert_eq!(requests(&f, "canary"), canary, "each count goes once");
}

#[test]
fn the_filter_routes_and_cleans_up_headers() {
    let secret = "0123456789abcdef0123456789abcdef";
    let f = Filter::new(&format!(
        r#"{{"rollout": "fraud", "variants": [{{"name": "stable", "weight": 100}}, {{"name": "canary", "weight": 0, "header_value": "v2"}}],
            "response_header": "x-served-by", "override": {{"secrets": ["{secret}"]}}}}"#
    ));
    let now = f.host.now() / 1000;
    let token = mint(secret.as_bytes(), "fraud", "canary", now + 60).unwrap();
    let request = f.send(
        &[
            ("x-user-id", "u1"),
            ("x-outrider-variant", "stable"),
            ("x-outrider-override", &token),
        ],
        &[],
    );
    assert_eq!(
        f.host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .as_deref(),
        Some("v2"),
        "the override wins and the client's value is overwritten"
    );
    assert_eq!(
        f.host
            .get_header(Map::RequestHeaders, "x-outrider-override"),
        None
    );
    f.answer(request, 1, &Answer::default());
    assert_eq!(
        f.host
            .get_header(Map::ResponseHeaders, "x-served-by")
            .as_deref(),
        Some("canary")
    );

    let forged = mint(b"another-secret-altogether", "fraud", "canary", now + 60).unwrap();
    let request = f.send(&[("x-outrider-override", &forged)], &[]);
    assert_eq!(
        f.host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .as_deref(),
        Some("stable")
    );
    assert_eq!(
        f.host
            .get_header(Map::RequestHeaders, "x-outrider-override"),
        None
    );
    f.answer(request, 1, &Answer::default());
    let mut f = f;
    f.tick(COUNTER_FLUSH_MS);
    assert_eq!(f.stat(&names::overrides_honoured("fraud", "canary")), 1);
    assert_eq!(
        f.stat(&names::overrides_rejected("fraud", "bad_signature")),
        1
    );
    assert_eq!(f.stat(&names::unkeyed_requests("fraud")), 1);
}

#[test]
fn grpc_errors_by_code_from_trailers_or_trailers_only_answers() {
    let mut f = Filter::new(SPLIT);
    let key = "grpc-user";
    for (status, trailers) in [
        ("14", true),
        ("5", false),
        ("0", true),
        ("99", false),
        ("14", true),
    ] {
        let request = f.send(&[("x-user-id", key)], &[]);
        let answer = if trailers {
            Answer {
                body: b"\0\0\0\0\0",
                trailers: &[("grpc-status", status)],
                ..Answer::default()
            }
        } else {
            // Trailers-only: the status is in headers that end the stream.
            Answer {
                headers: &[("grpc-status", status)],
                body: b"",
                ..Answer::default()
            }
        };
        f.answer(request, 1, &answer);
    }
    f.tick(COUNTER_FLUSH_MS);
    let variant = f
        .host
        .get_header(Map::RequestHeaders, "x-outrider-variant")
        .unwrap();
    let errors = |code: &str| f.stat(&names::grpc_errors("bench", &variant, code));
    assert_eq!((errors("14"), errors("5"), errors("other")), (2, 1, 1));
    assert!(!f.host.defined(&names::grpc_errors("bench", &variant, "0")));
}

#[test]
fn an_unconfigured_filter_passes_requests_untouched() {
    let f = Filter::unconfigured();
    f.round_trip("u1");
    assert_eq!(f.host.host_call_total(), 0);
}

#[test]
fn a_refused_configuration_keeps_the_one_in_effect() {
    let mut f = Filter::new(SPLIT);
    assert!(!f.configure(r#"{"rollout": "bench", "variants": [{"name": "a", "weight": 60}]}"#));
    let (level, line) = f.host.logs().pop().unwrap();
    assert_eq!(level, LogLevel::Error);
    assert_eq!(
        line,
        "invalid configuration: field `variants`: weights must add up to 100, they add up to 60"
    );
    assert!(!f.configure("{\"rollout\": "));
    assert!(
        f.host
            .logs()
            .last()
            .unwrap()
            .1
            .contains("EOF while parsing")
    );
    assert_eq!(f.root.rollout().unwrap().variants.len(), 2);
    f.round_trip("still-routed");
    assert!(
        f.host
            .get_header(Map::RequestHeaders, "x-outrider-variant")
            .is_some()
    );
}

#[test]
fn counts_of_an_earlier_configuration_are_not_lost() {
    let mut f = Filter::new(SPLIT);
    let in_flight = f.send(&[("x-user-id", "slow")], &[]);
    f.round_trip("fast");
    assert!(f.configure(SPLIT));
    f.answer(in_flight, 5, &Answer::default());
    f.tick(COUNTER_FLUSH_MS);
    let total: u64 = ["stable", "canary"]
        .iter()
        .map(|v| f.stat(&names::requests("bench", v)))
        .sum();
    let answered: u64 = ["stable", "canary"]
        .iter()
        .map(|v| f.stat(&names::responses("bench", v, StatusClass::Success)))
        .sum();
    assert_eq!((total, answered), (2, 2));
}

const SAMPLED: &str = r#"{"rollout": "fraud", "variants": [{"name": "stable", "weight": 100}],
    "scorer": {"cluster": "scorer", "flush_interval_ms": 1000},
    "telemetry": {"sample_rate": 1, "features": {"amount": "/inputs/0/data/0", "hour": "/inputs/0/data/1"},
                  "score": "/outputs/0/data/0", "max_body_bytes": 64, "max_samples_per_batch": 3}}"#;

fn batch(f: &mut Filter) -> TelemetryBatch {
    f.tick(1_000);
    let call = f
        .host
        .take_calls()
        .into_iter()
        .find(|c| c.header(":path") == Some("/v1/telemetry"))
        .expect("a telemetry batch");
    f.reply(&call, Some(200), &[], b"{}");
    serde_json::from_slice(call.body.as_deref().unwrap()).unwrap()
}

#[test]
fn samples_carry_features_score_and_join_keys() {
    let mut f = Filter::new(SAMPLED);
    let request = f.send(
        &[("x-user-id", "u7"), ("x-request-id", "r-1")],
        &[br#"{"inputs": [{"data": "#, br#"[12.5, 3]}]}"#],
    );
    f.answer(
        request,
        4,
        &Answer {
            body: br#"{"outputs": [{"data": [0.75]}]}"#,
            ..Answer::default()
        },
    );
    // Over the limit: skipped, not sent.
    let request = f.send(&[("x-user-id", "u8")], &[&[b' '; 100]]);
    f.answer(request, 1, &Answer::default());
    let b = batch(&mut f);
    assert_eq!(b.samples.len(), 1);
    let s = &b.samples[0];
    assert_eq!(
        (s.request_id.as_deref(), s.user_key.as_deref(), s.score),
        (Some("r-1"), Some("u7"), Some(0.75))
    );
    assert_eq!(s.features.get("amount"), Some(&12.5));
    assert_eq!(s.features.get("hour"), Some(&3.0));
    assert_eq!(b.variants[0].requests, 2);
    assert_eq!(f.stat(&names::samples("fraud", "taken")), 1);
    assert_eq!(f.stat(&names::samples("fraud", "skipped")), 1);
    // A batch holds at most three samples; the rest are dropped and counted.
    for i in 0..5 {
        let request = f.send(
            &[("x-user-id", &format!("k{i}"))],
            &[br#"{"inputs": [{"data": [1, 2]}]}"#],
        );
        f.answer(request, 1, &Answer::default());
    }
    let b = batch(&mut f);
    assert_eq!(b.samples.len(), 3);
    assert_eq!(f.stat(&names::samples("fraud", "dropped")), 2);
}

#[test]
fn sampling_reads_bodies_only_for_sampled_requests() {
    let f = Filter::new(&SAMPLED.replace("\"sample_rate\": 1", "\"sample_rate\": 0"));
    f.host.reset_host_calls();
    let request = f.send(&[("x-user-id", "u1")], &[b"{}"]);
    f.answer(request, 1, &Answer::default());
    assert_eq!(f.host.host_calls().get("buffer"), None);
}
