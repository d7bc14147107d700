//! Per-variant stats in Envoy's `/stats/prometheus`: responses by class, gRPC errors
//! by status (in trailers and in trailers-only responses), the latency histogram, all
//! labelled with rollout and variant, and equal to what the test sent.

use std::time::{Duration, Instant};

use outrider_harness::client::HttpClient;
use outrider_harness::fixture::{RolloutUnderTest, expected_variant};
use outrider_harness::prom::Metrics;
use serde_json::{Value, json};

fn config() -> Value {
    json!({
        "rollout": "fraud",
        "salt": "stats-test",
        "variants": [{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]
    })
}

/// `n` sticky keys that land on `variant`.
fn keys_for(variant: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{variant}-key-{i}"))
        .filter(|k| expected_variant(&config(), k).unwrap() == variant)
        .take(n)
        .collect()
}

/// Histograms reach the admin API at each stats flush (1 s in the test bootstrap).
async fn metrics_once_histograms_flushed(
    rollout: &RolloutUnderTest,
    expected: &[(&str, f64)],
) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = rollout.envoy.prometheus().await.unwrap();
        let flushed = expected.iter().all(|(variant, count)| {
            metrics.histogram_count(
                "outrider_upstream_rq_time",
                &[("rollout", "fraud"), ("variant", variant)],
            ) == Some(*count)
        });
        if flushed {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "histograms never reached {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_counted_by_class_and_grpc_status_per_variant() {
    // HTTP/2 to the stand-ins, as gRPC needs; HTTP/1.1 clients are served too.
    let rollout = RolloutUnderTest::start_with(config(), 2, |spec| {
        for cluster in &mut spec.clusters {
            cluster.http2 = true;
        }
    })
    .await
    .unwrap();
    let http1 = HttpClient::new();
    let http2 = HttpClient::http2();
    let url = format!("{}/v2/models/fraud/infer", rollout.url);

    // What each variant is sent: (status asked for, how many) over HTTP/1.1.
    let plan: [(&str, [(u16, usize); 4]); 2] = [
        ("stable", [(200, 7), (302, 2), (404, 3), (503, 4)]),
        ("canary", [(200, 5), (301, 1), (400, 2), (500, 6)]),
    ];
    for (variant, statuses) in plan {
        let keys = keys_for(variant, 20);
        let mut key = keys.iter().cycle();
        for (status, n) in statuses {
            for _ in 0..n {
                let k = key.next().unwrap();
                let reply = http1
                    .get(
                        &url,
                        &[("x-user-id", k), ("x-test-status", &status.to_string())],
                    )
                    .await
                    .unwrap();
                assert_eq!(reply.status, status);
                assert_eq!(reply.header("x-served-by"), Some(variant));
            }
        }
    }

    // gRPC over h2c to the canary: errors in trailers, in a trailers-only response,
    // and OK (not an error).
    let grpc_key = keys_for("canary", 1).remove(0);
    let grpc = [
        ("x-test-grpc-status", "14", 3),
        ("x-test-grpc-trailers-only", "7", 2),
        ("x-test-grpc-status", "0", 4),
    ];
    for (how, code, n) in grpc {
        for _ in 0..n {
            let reply = http2
                .get(
                    &url,
                    &[
                        ("x-user-id", &grpc_key),
                        ("content-type", "application/grpc"),
                        (how, code),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            let seen = reply.trailer("grpc-status").or(reply.header("grpc-status"));
            assert_eq!(seen, Some(code));
        }
    }

    // Slow responses land above the 30 ms bucket of the latency histogram.
    let slow_key = keys_for("stable", 1).remove(0);
    for _ in 0..3 {
        let reply = http1
            .get(&url, &[("x-user-id", &slow_key), ("x-test-delay-ms", "60")])
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }

    let metrics =
        metrics_once_histograms_flushed(&rollout, &[("stable", 19.0), ("canary", 23.0)]).await;
    let class = |variant: &str, class: &str| {
        metrics.value(
            "outrider_rs_total",
            &[("rollout", "fraud"), ("variant", variant), ("class", class)],
        )
    };
    assert_eq!(class("stable", "2xx"), Some(10.0));
    assert_eq!(class("stable", "3xx"), Some(2.0));
    assert_eq!(class("stable", "4xx"), Some(3.0));
    assert_eq!(class("stable", "5xx"), Some(4.0));
    assert_eq!(class("canary", "2xx"), Some(14.0));
    assert_eq!(class("canary", "3xx"), Some(1.0));
    assert_eq!(class("canary", "4xx"), Some(2.0));
    assert_eq!(class("canary", "5xx"), Some(6.0));
    for (variant, total) in [("stable", 19.0), ("canary", 23.0)] {
        let labels = [("rollout", "fraud"), ("variant", variant)];
        assert_eq!(metrics.value("outrider_rq_total", &labels), Some(total));
    }

    let grpc_errors = metrics.series("outrider_grpc_error_total");
    let mut by_status: Vec<(String, String, f64)> = grpc_errors
        .iter()
        .map(|(labels, value)| {
            let get = |k: &str| {
                labels
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            assert_eq!(get("rollout"), "fraud");
            (get("variant"), get("grpc_status"), *value)
        })
        .collect();
    by_status.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        by_status,
        vec![
            ("canary".into(), "14".into(), 3.0),
            ("canary".into(), "7".into(), 2.0)
        ],
        "only non-OK statuses are counted, by code"
    );

    let buckets = metrics
        .histogram(
            "outrider_upstream_rq_time",
            &[("rollout", "fraud"), ("variant", "stable")],
        )
        .unwrap();
    let at_or_below = |bound: f64| {
        buckets
            .iter()
            .find(|(le, _)| *le == bound)
            .map(|(_, c)| *c)
            .unwrap()
    };
    assert_eq!(
        at_or_below(30.0),
        16.0,
        "the three 60 ms responses are above 30 ms: {buckets:?}"
    );
    assert_eq!(at_or_below(75.0), 19.0, "{buckets:?}");
}
