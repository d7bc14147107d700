//! Configurations: an invalid filter configuration is refused with a log line that
//! names the field and the problem; every committed bootstrap in `envoy/` validates
//! (`envoy --mode validate`, which also loads the filter with its configuration); the
//! demo bootstrap routes and labels traffic as documented; the sidecar and front-proxy
//! bootstraps have what a deployment needs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use outrider_filter_logic::Rollout;
use outrider_harness::bootstrap::{Cluster, LISTENER, Routing, Spec, Wasm, stats_config};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::{Envoy, Launch};
use outrider_harness::fixture::{expected_variant, with_ports};
use outrider_harness::paths;
use outrider_harness::standin::StandIn;
use serde_json::{Value, json};

use common::embedded_filter_config;

const SECRET_ENV: (&str, &str) = (
    "OUTRIDER_OVERRIDE_SECRET",
    "a-test-secret-for-validation-0001",
);
const TOKEN_ENV: (&str, &str) = ("OUTRIDER_TELEMETRY_TOKEN", "a-test-telemetry-token-000001");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_refused_with_the_reason_logged() {
    let cases: [(Value, &str); 5] = [
        (
            json!({"rollout": "fraud", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 120}]}),
            "invalid configuration: field `variants[1].weight`: must be a percentage between 0 and 100, got 120",
        ),
        (
            json!({"rollout": "fraud", "variants": [{"name": "stable", "weight": 100}], "stickyKey": {"header": "x"}}),
            "invalid configuration: field `stickyKey`: unknown field `stickyKey`",
        ),
        (
            json!({"rollout": "fraud", "variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]}),
            "invalid configuration: field `variants[1].name`: duplicate variant `a` (also variants[0])",
        ),
        (
            json!({"rollout": "fraud", "variants": [{"name": "stable", "weight": 100}], "override": {"secrets": ["short"]}}),
            "invalid configuration: field `override.secrets[0]`: a secret must be at least 16 bytes long",
        ),
        (
            json!({"rollout": "fraud", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
                "guardrail": {"max_5xx_share": 0.5, "variants": ["stable"]}}),
            "invalid configuration: field `guardrail.variants[0]`: `stable` is the baseline (the first variant): it takes the traffic of a tripped variant, so it cannot be guarded",
        ),
    ];
    let stable = StandIn::start("stable").await.unwrap();
    let wasm = paths::filter_wasm().unwrap();
    for (config, reason) in cases {
        let spec = Spec {
            routing: Routing::Plain {
                cluster: "stable".into(),
            },
            wasm: Some(Wasm::Outrider {
                path: wasm.clone(),
                config: config.to_string(),
                vm_env: Vec::new(),
            }),
            clusters: vec![Cluster::new("stable", stable.addr)],
        };
        let refusal = Envoy::expect_refusal(&spec.bootstrap()).await.unwrap();
        assert!(!refusal.status.success());
        let line = refusal.log.lines().find(|l| l.contains(reason));
        assert!(
            line.is_some(),
            "no log line `{reason}` in:\n{}",
            refusal.log
        );
        assert!(
            line.unwrap().contains("[error][wasm]"),
            "logged as an error: {line:?}"
        );
    }
}

fn bootstraps(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(bootstraps(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn every_bootstrap_in_envoy_validates() {
    let all = bootstraps(&paths::envoy_configs());
    assert!(all.len() >= 5, "{all:?}");
    for path in all {
        let output = Envoy::validate(&path, &[SECRET_ENV, TOKEN_ENV]).unwrap();
        assert!(output.contains("OK"), "{}: {output}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_bootstrap_routes_and_labels_as_documented() {
    let demo = paths::envoy_configs().join("demo.yaml");
    let config = embedded_filter_config(&demo);
    let stable = StandIn::start("stable").await.unwrap();
    let canary = StandIn::start("canary").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = [
        (9901, 0),
        (10000, 0),
        (18081, stable.addr.port()),
        (18082, canary.addr.port()),
        // No scorer here: the filter keeps its configured weights.
        (
            8750,
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        ),
    ];
    let bootstrap = with_ports(&demo, &ports, dir.path()).unwrap();
    let envoy = Envoy::start_file(
        &bootstrap,
        &Launch::workers(2)
            .env(SECRET_ENV.0, SECRET_ENV.1)
            .env(TOKEN_ENV.0, TOKEN_ENV.1),
    )
    .await
    .unwrap();
    let url = envoy.url(LISTENER).await.unwrap();

    let keys: Vec<String> = (0..1_000).map(|i| format!("demo-user-{i}")).collect();
    let replies = HttpClient::new()
        .keyed_gets(&url, "x-user-id", &keys, 16)
        .await
        .unwrap();
    let mut served: HashMap<String, f64> = HashMap::new();
    for (key, reply) in &replies {
        let by = reply.header("x-served-by").unwrap();
        assert_eq!(by, expected_variant(&config, key).unwrap(), "{key}");
        assert_eq!(reply.header("x-outrider-variant"), Some(by));
        *served.entry(by.to_owned()).or_default() += 1.0;
    }
    let metrics = envoy.prometheus().await.unwrap();
    for variant in ["stable", "canary"] {
        let labels = [("rollout", "fraud"), ("variant", variant)];
        assert_eq!(
            metrics.value("outrider_rq_total", &labels),
            served.get(variant).copied()
        );
    }
    assert_eq!(stable.requests() + canary.requests(), 1_000);
}

/// The bootstraps for deployments (a sidecar beside the caller, a front proxy at the
/// edge) are whole: the stats tags that make Prometheus labels, a route for every
/// variant's header value, a default route to the baseline, and the scorer's cluster.
#[test]
fn the_sidecar_and_front_proxy_bootstraps_are_complete() {
    for file in ["sidecar.yaml", "front-proxy.yaml"] {
        let path = paths::envoy_configs().join(file);
        let yaml: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let config = embedded_filter_config(&path);
        let rollout = Rollout::from_json(config.to_string().as_bytes(), |name| {
            [SECRET_ENV, TOKEN_ENV]
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();

        assert_eq!(
            yaml["stats_config"]["stats_tags"],
            stats_config()["stats_tags"],
            "{file}"
        );

        let clusters: Vec<&str> = yaml["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let scorer = rollout.scorer.as_ref().expect("a scorer link");
        assert!(clusters.contains(&scorer.cluster.as_str()), "{file}");

        let manager = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = manager["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap();
        for variant in &rollout.variants {
            let routed = routes.iter().any(|r| {
                r["route"]["cluster"] == variant.name.as_str()
                    && r["match"]["headers"].as_array().is_some_and(|h| {
                        h.iter().any(|h| {
                            h["name"] == rollout.routing_header.as_str()
                                && h["string_match"]["exact"] == variant.header_value.as_str()
                        })
                    })
            });
            let baseline = variant.name == rollout.variants[0].name;
            assert!(routed || baseline, "{file}: no route for {}", variant.name);
            assert!(clusters.contains(&variant.name.as_str()), "{file}");
        }
        let last = routes.last().unwrap();
        assert!(
            last["match"].get("headers").is_none(),
            "{file}: a default route"
        );
        assert_eq!(last["route"]["cluster"], rollout.variants[0].name.as_str());
        // The filter runs before the router, which picks the route from its header.
        let filters: Vec<&str> = manager["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            filters,
            ["envoy.filters.http.wasm", "envoy.filters.http.router"],
            "{file}"
        );
    }
}
