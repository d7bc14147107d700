//! Sticky assignment through the real Envoy: a key's variant is the one the decision
//! logic computes, on every worker and after a restart; raising the canary's weight
//! by a configuration reload keeps every canary user in the canary; an invalid
//! reload is refused and changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use outrider_harness::bootstrap::{self, Cluster, LISTENER, Spec};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::Envoy;
use outrider_harness::fixture::{RolloutUnderTest, expected_variant};
use outrider_harness::paths;
use outrider_harness::standin::StandIn;
use serde_json::{Value, json};

fn config(canary_weight: f64) -> Value {
    json!({
        "rollout": "fraud",
        "salt": "sticky-test",
        "variants": [
            {"name": "stable", "weight": 100.0 - canary_weight},
            {"name": "canary", "weight": canary_weight}
        ]
    })
}

async fn assignments(url: &str, keys: &[String]) -> HashMap<String, String> {
    // A new client each time: new connections, spread over Envoy's workers.
    let replies = HttpClient::new()
        .keyed_gets(url, "x-user-id", keys, 16)
        .await
        .unwrap();
    replies
        .into_iter()
        .map(|(key, reply)| {
            assert_eq!(reply.status, 200);
            (key, reply.header("x-served-by").unwrap().to_owned())
        })
        .collect()
}

/// Connections each worker accepted on the traffic listener.
async fn connections_per_worker(envoy: &Envoy) -> Vec<u64> {
    let stats = envoy
        .admin_get("/stats?filter=worker_[0-9]+\\.downstream_cx_total")
        .await
        .unwrap();
    stats
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1_"))
        .filter_map(|l| l.rsplit(": ").next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_keeps_its_variant_on_every_worker_and_after_a_restart() {
    let config = config(20.0);
    let mut rollout = RolloutUnderTest::start(config.clone(), 2).await.unwrap();
    let keys: Vec<String> = (0..2_000).map(|i| format!("k{i}")).collect();
    let expected: HashMap<String, String> = keys
        .iter()
        .map(|k| (k.clone(), expected_variant(&config, k).unwrap()))
        .collect();

    for round in 0..3 {
        assert_eq!(
            assignments(&rollout.url, &keys).await,
            expected,
            "round {round}"
        );
    }
    let per_worker = connections_per_worker(&rollout.envoy).await;
    assert_eq!(per_worker.len(), 2, "two workers: {per_worker:?}");
    assert!(
        per_worker.iter().all(|c| *c > 0),
        "both workers served: {per_worker:?}"
    );

    // A new Envoy process on the same configuration assigns every key the same way.
    rollout.envoy.stop();
    let envoy = Envoy::start(&rollout.spec.bootstrap(), 2).await.unwrap();
    let url = envoy.url(LISTENER).await.unwrap();
    assert_eq!(assignments(&url, &keys).await, expected, "after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_canary_by_reload_keeps_every_canary_user() {
    let stable = StandIn::start("stable").await.unwrap();
    let canary = StandIn::start("canary").await.unwrap();
    let clusters = vec![
        Cluster::new("stable", stable.addr),
        Cluster::new("canary", canary.addr),
    ];
    let wasm = paths::filter_wasm().unwrap();
    let lds = tempfile::tempdir().unwrap();
    let at_10 = Spec::rollout(&wasm, &config(10.0), clusters.clone()).unwrap();
    let envoy = Envoy::start(&at_10.bootstrap_with_lds(lds.path()).unwrap(), 2)
        .await
        .unwrap();
    let url = envoy.url(LISTENER).await.unwrap();

    let keys: Vec<String> = (0..5_000).map(|i| format!("user-{i}")).collect();
    let in_canary = |a: &HashMap<String, String>| -> BTreeSet<String> {
        a.iter()
            .filter(|(_, v)| *v == "canary")
            .map(|(k, _)| k.clone())
            .collect()
    };
    let before = in_canary(&assignments(&url, &keys).await);

    // Reload with 30%: wait until fresh connections see the new configuration.
    let at_30 = Spec::rollout(&wasm, &config(30.0), clusters.clone()).unwrap();
    bootstrap::write_lds(lds.path(), &at_30.listener(), "2").unwrap();
    envoy
        .wait_stat(
            "listener_manager.lds.update_success",
            2,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let probe: Vec<String> = keys
        .iter()
        .filter(|k| !before.contains(*k) && expected_variant(&config(30.0), k).unwrap() == "canary")
        .take(20)
        .cloned()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while assignments(&url, &probe)
        .await
        .values()
        .any(|v| v != "canary")
    {
        assert!(
            Instant::now() < deadline,
            "the 30% configuration never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let after = in_canary(&assignments(&url, &keys).await);
    let left: Vec<&String> = before.difference(&after).collect();
    assert!(
        left.is_empty(),
        "{} keys left the canary: {:?}",
        left.len(),
        &left[..left.len().min(5)]
    );
    let n = keys.len() as f64;
    for (set, share) in [(&before, 0.1), (&after, 0.3)] {
        let sd = (n * share * (1.0 - share)).sqrt();
        assert!(
            (set.len() as f64 - n * share).abs() < 4.0 * sd,
            "{} in canary at {share}",
            set.len()
        );
    }
    let metrics = envoy.prometheus().await.unwrap();
    let canary_weight = metrics.value(
        "outrider_weight_basis_points",
        &[("rollout", "fraud"), ("variant", "canary")],
    );
    assert_eq!(canary_weight, Some(3000.0));

    // An invalid reload is refused with the reason logged, and traffic keeps the 30%.
    let mut invalid = config(30.0);
    invalid["variants"][1]["weight"] = json!(40);
    let refused = Spec::rollout(&wasm, &invalid, clusters).unwrap();
    bootstrap::write_lds(lds.path(), &refused.listener(), "3").unwrap();
    envoy
        .wait_stat(
            "listener_manager.lds.update_rejected",
            1,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let log = envoy.log();
    assert!(
        log.contains("invalid configuration: field `variants`: weights must add up to 100, they add up to 110"),
        "the refusal names the field and the problem:\n{log}"
    );
    assert_eq!(in_canary(&assignments(&url, &keys).await), after);
}
