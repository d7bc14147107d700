//! Shadow variants through the real Envoy: every mirrored answer is compared with the
//! primary's, the user never waits for the shadow nor sees its failures, and every
//! request that is not compared is counted with its reason.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use outrider_harness::bootstrap::Cluster;
use outrider_harness::client::HttpClient;
use outrider_harness::fixture::RolloutUnderTest;
use outrider_harness::standin::{Behaviour, Scoring, StandIn};
use serde_json::{Value, json};

fn config(shadow: Value) -> Value {
    json!({
        "rollout": "fraud",
        "variants": [{"name": "stable", "weight": 100}],
        "shadows": [shadow]
    })
}

fn shadow(extra: Value) -> Value {
    let mut s = json!({
        "name": "v3",
        "cluster": "shadow-v3",
        "share": 100,
        "timeout_ms": 5000,
        "max_body_bytes": 4096,
        "max_in_flight": 200,
        "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

/// The primary (`stable`) echoes the score in the request; the shadow runs `behaviour`.
async fn start(
    shadow_config: Value,
    behaviour: Behaviour,
    concurrency: u32,
) -> (RolloutUnderTest, StandIn) {
    let shadow = StandIn::start_on("v3", SocketAddr::from(([127, 0, 0, 1], 0)), behaviour)
        .await
        .unwrap();
    let addr = shadow.addr;
    let primary = Behaviour {
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    };
    let rollout = RolloutUnderTest::start_with_stand_ins(
        config(shadow_config),
        concurrency,
        primary,
        move |spec| {
            spec.clusters.push(Cluster::new("shadow-v3", addr));
        },
    )
    .await
    .unwrap();
    (rollout, shadow)
}

/// An inference request for input `id` whose model score is `score`.
fn input(id: u64, score: f64) -> Bytes {
    Bytes::from(json!({"inputs": [{"name": "tx", "datatype": "FP64", "shape": [1, 2], "data": [id, score]}]}).to_string())
}

async fn infer(
    client: &HttpClient,
    url: &str,
    id: u64,
    score: f64,
) -> outrider_harness::client::Reply {
    client
        .request(
            Method::POST,
            &format!("{url}/v2/models/fraud/infer"),
            &[
                ("x-user-id", &format!("u{id}")),
                ("content-type", "application/json"),
            ],
            input(id, score),
        )
        .await
        .unwrap()
}

async fn stat(rollout: &RolloutUnderTest, name: &str) -> u64 {
    rollout
        .envoy
        .counter(&format!("wasmcustom.outrider.{name}"))
        .await
        .unwrap()
}

async fn wait_stat(rollout: &RolloutUnderTest, name: &str, value: u64) {
    rollout
        .envoy
        .wait_stat(
            &format!("wasmcustom.outrider.{name}"),
            value,
            Duration::from_secs(15),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_disagrees_on_7_percent_of_inputs_measures_7_percent() {
    let flipping = Behaviour {
        scoring: Scoring::Echo { flip_percent: 7 },
        ..Behaviour::default()
    };
    let (rollout, shadow) = start(shadow(json!({})), flipping, 2).await;
    let client = HttpClient::new();
    let n = 1_000u64;
    for id in 0..n {
        // Scores spread over [0, 1), never exactly at the threshold.
        let score = ((id * 37) % 1_000) as f64 / 1_000.0 + 0.0005;
        let reply = infer(&client, &rollout.url, id, score).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json().unwrap()["served_by"],
            "stable",
            "the user gets the primary's answer"
        );
    }
    let v = "rollout=fraud.variant=v3";
    wait_stat(&rollout, &format!("shadow_mirrored_total.{v}"), n).await;
    rollout
        .envoy
        .wait_stat(
            &format!("wasmcustom.outrider.shadow_comparison_total.{v}.result=agree"),
            930,
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_comparison_total.{v}.result=agree")
        )
        .await,
        930
    );
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_comparison_total.{v}.result=disagree")
        )
        .await,
        70,
        "exactly the 7% the shadow flips"
    );
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_response_total.{v}.result=completed")
        )
        .await,
        n
    );
    let mut counts = Vec::new();
    for pair in ["0_0", "0_1", "1_0", "1_1"] {
        counts.push(stat(&rollout, &format!("shadow_labels_total.{v}.labels={pair}")).await);
    }
    let (a, b, c, d) = (counts[0], counts[1], counts[2], counts[3]);
    assert_eq!(a + b + c + d, n);
    assert_eq!(b + c, 70);
    assert_eq!(shadow.requests(), n);
    assert_eq!(
        shadow.shadow_copies(),
        n,
        "every copy is marked as a shadow request"
    );
    assert_eq!(
        shadow.routing_values().get(""),
        Some(&n),
        "the routing header stays behind"
    );
    assert_eq!(
        shadow.body_bytes(),
        rollout.standin("stable").body_bytes(),
        "the whole body is copied"
    );

    // The same counts in /stats/prometheus, labelled.
    let metrics = rollout.envoy.prometheus().await.unwrap();
    assert_eq!(
        metrics.value(
            "outrider_shadow_comparison_total",
            &[
                ("rollout", "fraud"),
                ("variant", "v3"),
                ("result", "disagree")
            ]
        ),
        Some(70.0)
    );
    assert_eq!(
        metrics.value(
            "outrider_shadow_labels_total",
            &[("variant", "v3"), ("labels", "1_1")]
        ),
        Some(d as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_leaves_the_primary_untouched_and_is_still_compared() {
    let slow = Behaviour {
        latency_ms: (2_000, 2_000),
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    };
    let (rollout, _shadow) = start(shadow(json!({})), slow, 1).await;
    let client = HttpClient::new();
    let n = 20;
    let mut slowest = Duration::ZERO;
    for id in 0..n {
        let started = Instant::now();
        let reply = infer(&client, &rollout.url, id, 0.8).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 200);
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a primary request took {slowest:?} with a 2 s shadow"
    );
    let v = "rollout=fraud.variant=v3";
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_comparison_total.{v}.result=agree")
        )
        .await,
        0,
        "no shadow has answered yet"
    );
    // The comparisons arrive after every primary stream has ended.
    wait_stat(
        &rollout,
        &format!("shadow_comparison_total.{v}.result=agree"),
        n,
    )
    .await;
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_response_total.{v}.result=completed")
        )
        .await,
        n
    );
    let metrics = rollout.envoy.prometheus().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut latencies = metrics.histogram("outrider_shadow_latency_ms", &[("variant", "v3")]);
    while latencies.as_ref().and_then(|h| h.last().map(|(_, c)| *c)) != Some(n as f64)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        latencies = rollout
            .envoy
            .prometheus()
            .await
            .unwrap()
            .histogram("outrider_shadow_latency_ms", &[("variant", "v3")]);
    }
    let buckets = latencies.unwrap();
    let under_1s = buckets
        .iter()
        .find(|(le, _)| *le == 1000.0)
        .map(|(_, c)| *c)
        .unwrap();
    assert_eq!(
        under_1s, 0.0,
        "the shadow's 2 s latency is recorded: {buckets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_missing_shadow_is_counted_and_the_user_sees_nothing() {
    let failing = Behaviour {
        error_rate: 1.0,
        ..Behaviour::default()
    };
    let (rollout, _shadow) = start(shadow(json!({})), failing, 1).await;
    let client = HttpClient::new();
    for id in 0..10 {
        let reply = infer(&client, &rollout.url, id, 0.3).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json().unwrap()["outputs"][0]["data"][0], 0.3);
    }
    let v = "rollout=fraud.variant=v3";
    wait_stat(
        &rollout,
        &format!("shadow_response_total.{v}.result=error"),
        10,
    )
    .await;
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_comparison_total.{v}.result=agree")
        )
        .await,
        0
    );

    // A shadow nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let primary = Behaviour {
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    };
    let down = RolloutUnderTest::start_with_stand_ins(
        config(shadow(json!({}))),
        1,
        primary,
        move |spec| {
            spec.clusters.push(Cluster::new("shadow-v3", closed));
        },
    )
    .await
    .unwrap();
    for id in 0..10 {
        assert_eq!(infer(&client, &down.url, id, 0.3).await.status, 200);
    }
    wait_stat(
        &down,
        &format!("shadow_response_total.{v}.result=error"),
        10,
    )
    .await;
    assert_eq!(
        stat(&down, &format!("shadow_response_total.{v}.result=timeout")).await,
        0,
        "a refused connection is an error, not a timeout"
    );

    // A shadow slower than its timeout.
    let slow = Behaviour {
        latency_ms: (1_000, 1_000),
        ..Behaviour::default()
    };
    let (late, _shadow) = start(shadow(json!({"timeout_ms": 200})), slow, 1).await;
    for id in 0..5 {
        let started = Instant::now();
        assert_eq!(infer(&client, &late.url, id, 0.3).await.status, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    wait_stat(
        &late,
        &format!("shadow_response_total.{v}.result=timeout"),
        5,
    )
    .await;
    assert_eq!(
        stat(&late, &format!("shadow_comparison_total.{v}.result=agree")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_limits_are_skipped_and_counted() {
    let slow = Behaviour {
        latency_ms: (1_500, 1_500),
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    };
    let (rollout, shadow) = start(
        shadow(json!({"max_in_flight": 2, "max_body_bytes": 512})),
        slow,
        1,
    )
    .await;
    let client = HttpClient::new();
    let v = "rollout=fraud.variant=v3";

    // A body over max_body_bytes is served but not copied.
    let big = Bytes::from(
        json!({"inputs": [{"data": [1, 0.5], "padding": "x".repeat(1_000)}]}).to_string(),
    );
    let reply = client
        .request(
            Method::POST,
            &format!("{}/v2/models/fraud/infer", rollout.url),
            &[("content-type", "application/json")],
            big,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    wait_stat(
        &rollout,
        &format!("shadow_skipped_total.{v}.reason=body_too_large"),
        1,
    )
    .await;

    // Ten at once with room for two copies in flight: two mirrored, eight skipped.
    let replies = futures::future::join_all((0..10).map(|id| {
        let (client, url) = (client.clone(), rollout.url.clone());
        async move { infer(&client, &url, id, 0.9).await }
    }))
    .await;
    assert!(replies.iter().all(|r| r.status == 200));
    wait_stat(
        &rollout,
        &format!("shadow_comparison_total.{v}.result=agree"),
        2,
    )
    .await;
    assert_eq!(
        stat(&rollout, &format!("shadow_mirrored_total.{v}")).await,
        2
    );
    assert_eq!(
        stat(
            &rollout,
            &format!("shadow_skipped_total.{v}.reason=in_flight_cap")
        )
        .await,
        8
    );
    assert_eq!(shadow.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_prediction_are_counted_not_fatal() {
    let unreadable = Behaviour {
        omit_score: true,
        ..Behaviour::default()
    };
    let (rollout, _shadow) = start(shadow(json!({})), unreadable, 1).await;
    let client = HttpClient::new();
    for id in 0..5 {
        assert_eq!(infer(&client, &rollout.url, id, 0.6).await.status, 200);
    }
    let v = "rollout=fraud.variant=v3";
    wait_stat(
        &rollout,
        &format!("shadow_comparison_total.{v}.result=no_prediction_shadow"),
        5,
    )
    .await;

    // The primary's prediction is read with `primary_pointer`; a wrong one leaves it
    // unreadable, and that is counted too.
    let (rollout, _shadow) = start(
        shadow(json!({"prediction": {"pointer": "/outputs/0/data/0", "primary_pointer": "/nowhere", "threshold": 0.5}})),
        Behaviour { scoring: Scoring::Echo { flip_percent: 0 }, ..Behaviour::default() },
        1,
    )
    .await;
    for id in 0..5 {
        assert_eq!(infer(&client, &rollout.url, id, 0.6).await.status, 200);
    }
    wait_stat(
        &rollout,
        &format!("shadow_comparison_total.{v}.result=no_prediction_primary"),
        5,
    )
    .await;
    // The filter is alive and well afterwards.
    assert_eq!(infer(&client, &rollout.url, 99, 0.6).await.status, 200);
}

/// Envoy's own mirroring (envoy/native-mirror.yaml) beside the filter's routing: every
/// request reaches the shadow too, with the routing header the filter set, and the
/// user gets the primary's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_native_mirroring_copies_routed_requests() {
    use outrider_harness::envoy::{Envoy, Launch};
    use outrider_harness::fixture::with_ports;
    use outrider_harness::paths;

    let stable = StandIn::start("stable").await.unwrap();
    let canary = StandIn::start("canary").await.unwrap();
    let shadow = StandIn::start("shadow").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = [
        (9910, 0),
        (10010, 0),
        (18081, stable.addr.port()),
        (18082, canary.addr.port()),
        (18083, shadow.addr.port()),
    ];
    let bootstrap = with_ports(
        &paths::envoy_configs().join("native-mirror.yaml"),
        &ports,
        dir.path(),
    )
    .unwrap();
    let envoy = Envoy::start_file(&bootstrap, &Launch::workers(1))
        .await
        .unwrap();
    let url = envoy
        .url(outrider_harness::bootstrap::LISTENER)
        .await
        .unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let replies = HttpClient::new()
        .keyed_gets(&url, "x-user-id", &keys, 8)
        .await
        .unwrap();
    for (_, reply) in &replies {
        assert_eq!(reply.status, 200);
        assert_ne!(reply.header("x-served-by"), Some("shadow"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shadow.requests() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shadow.requests(), 200, "every request mirrored");
    let routed = shadow.routing_values();
    assert_eq!(
        routed.get("stable").copied().unwrap_or(0),
        stable.requests()
    );
    assert_eq!(
        routed.get("canary").copied().unwrap_or(0),
        canary.requests()
    );
    assert!(canary.requests() > 0 && stable.requests() > 0);
}

/// What a copy carries: the request's own headers, minus the hop-by-hop ones, the
/// routing header and Envoy's `x-envoy-*`; plus `x-outrider-shadow`, and the two
/// headers Envoy's HTTP client adds to every call. An override token, valid or not,
/// never reaches the shadow (nor the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_carry_the_request_headers_and_never_an_override_token() {
    const SECRET: &str = "shadow-test-secret-0123456789abcdef";
    let mut config = config(shadow(json!({})));
    config["override"] = json!({"secrets": [SECRET], "max_ttl_seconds": 3600});
    let echo = Behaviour {
        scoring: Scoring::Echo { flip_percent: 0 },
        ..Behaviour::default()
    };
    let shadow_standin = StandIn::start_on("v3", SocketAddr::from(([127, 0, 0, 1], 0)), echo)
        .await
        .unwrap();
    let addr = shadow_standin.addr;
    let rollout = RolloutUnderTest::start_with_stand_ins(config, 1, echo, move |spec| {
        spec.clusters.push(Cluster::new("shadow-v3", addr));
    })
    .await
    .unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let valid =
        outrider_filter_logic::override_token::mint(SECRET.as_bytes(), "fraud", "stable", expiry)
            .unwrap();
    let client = HttpClient::new();
    let tokens = [valid.as_str(), "stable.1.forged", ""];
    for (id, token) in (0..30u64).zip(tokens.iter().cycle()) {
        let mut headers = vec![
            ("x-user-id", format!("u{id}")),
            ("content-type", "application/json".to_owned()),
            ("authorization", "Bearer model-token".to_owned()),
            ("x-request-id", format!("req-{id}")),
            ("x-outrider-variant", "canary".to_owned()),
            ("x-envoy-upstream-rq-timeout-ms", "9000".to_owned()),
        ];
        if !token.is_empty() {
            headers.push(("x-outrider-override", (*token).to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = client
            .request(
                Method::POST,
                &format!("{}/v2/models/fraud/infer", rollout.url),
                &headers,
                input(id, 0.3),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let v = "rollout=fraud.variant=v3";
    wait_stat(
        &rollout,
        &format!("shadow_response_total.{v}.result=completed"),
        30,
    )
    .await;
    assert_eq!(shadow_standin.shadow_copies(), 30);
    assert_eq!(
        shadow_standin.override_headers_seen(),
        0,
        "no token reaches the shadow"
    );
    assert_eq!(rollout.standin("stable").override_headers_seen(), 0);
    let names: Vec<String> = shadow_standin.shadow_header_names().into_iter().collect();
    assert_eq!(
        names,
        [
            "authorization",
            "content-length",
            "content-type",
            "host",
            "x-envoy-expected-rq-timeout-ms",
            "x-envoy-internal",
            "x-forwarded-proto",
            "x-outrider-shadow",
            "x-request-id",
            "x-user-id",
        ]
    );
}
