//! Who chooses the variant: only the filter, or a client holding a valid override
//! token. A client-sent routing header is overwritten; forged, expired, malformed
//! and unknown-variant tokens are ignored and counted by reason.

use std::time::{SystemTime, UNIX_EPOCH};

use outrider_filter_logic::override_token::mint;
use outrider_harness::client::HttpClient;
use outrider_harness::fixture::{RolloutUnderTest, expected_variant};
use serde_json::{Value, json};

const INLINE_SECRET: &str = "inline-secret-0123456789abcdef";
const ENV_SECRET: &str = "vm-env-secret-fedcba9876543210";

fn config() -> Value {
    json!({
        "rollout": "fraud",
        "salt": "override-test",
        "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
        "override": {
            "secrets": [INLINE_SECRET],
            "secrets_env": ["OUTRIDER_OVERRIDE_SECRET"],
            "max_ttl_seconds": 3600
        }
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn start() -> RolloutUnderTest {
    RolloutUnderTest::start_with(config(), 2, |spec| {
        spec.set_vm_env(&[("OUTRIDER_OVERRIDE_SECRET", ENV_SECRET)]);
    })
    .await
    .unwrap()
}

/// Keys that the hash puts in stable.
fn stable_keys(n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("qa-{i}"))
        .filter(|k| expected_variant(&config(), k).unwrap() == "stable")
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sent_routing_header_is_overwritten() {
    let rollout = start().await;
    let client = HttpClient::new();
    for key in stable_keys(50) {
        for forged in ["canary", "stable", "nonsense"] {
            let reply = client
                .get(
                    &rollout.url,
                    &[("x-user-id", &key), ("x-outrider-variant", forged)],
                )
                .await
                .unwrap();
            assert_eq!(
                reply.header("x-served-by"),
                Some("stable"),
                "{key} with {forged}"
            );
        }
    }
    let stable = rollout.standin("stable");
    assert_eq!(stable.requests(), 150);
    assert_eq!(stable.routing_values().get("stable"), Some(&150));
    assert_eq!(rollout.standin("canary").requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_override_tokens_are_honoured() {
    let rollout = start().await;
    let client = HttpClient::new();
    let keys = stable_keys(4);
    let expiry = now() + 600;

    // Valid tokens, signed with the inline secret and with the one from the VM's
    // environment, force the canary and never reach the model server.
    let valid = [
        mint(INLINE_SECRET.as_bytes(), "fraud", "canary", expiry).unwrap(),
        mint(ENV_SECRET.as_bytes(), "fraud", "canary", expiry).unwrap(),
    ];
    for (key, token) in keys.iter().zip(&valid) {
        let reply = client
            .get(
                &rollout.url,
                &[("x-user-id", key), ("x-outrider-override", token)],
            )
            .await
            .unwrap();
        assert_eq!(reply.header("x-served-by"), Some("canary"), "{token}");
    }

    let sig = "ab".repeat(32);
    let rejected: [(&str, String); 5] = [
        (
            "bad_signature",
            mint(
                b"an-attacker-guessed-this-secret",
                "fraud",
                "canary",
                expiry,
            )
            .unwrap(),
        ),
        (
            "bad_signature",
            mint(
                INLINE_SECRET.as_bytes(),
                "another-rollout",
                "canary",
                expiry,
            )
            .unwrap(),
        ),
        (
            "expired",
            mint(INLINE_SECRET.as_bytes(), "fraud", "canary", now() - 1).unwrap(),
        ),
        (
            "ttl_too_long",
            mint(INLINE_SECRET.as_bytes(), "fraud", "canary", now() + 7200).unwrap(),
        ),
        ("unknown_variant", format!("shadow.{expiry}.{sig}")),
    ];
    let malformed = ["canary", "canary.soon.abcd", ""];
    for (reason, token) in &rejected {
        let reply = client
            .get(
                &rollout.url,
                &[("x-user-id", &keys[0]), ("x-outrider-override", token)],
            )
            .await
            .unwrap();
        assert_eq!(
            reply.header("x-served-by"),
            Some("stable"),
            "{reason}: {token}"
        );
    }
    for token in malformed {
        let reply = client
            .get(
                &rollout.url,
                &[("x-user-id", &keys[1]), ("x-outrider-override", token)],
            )
            .await
            .unwrap();
        assert_eq!(
            reply.header("x-served-by"),
            Some("stable"),
            "malformed: {token:?}"
        );
    }

    // No token, valid or not, is passed on to a model server.
    assert_eq!(rollout.standin("stable").override_headers_seen(), 0);
    assert_eq!(rollout.standin("canary").override_headers_seen(), 0);

    let metrics = rollout.envoy.prometheus().await.unwrap();
    let rejected_by = |reason: &str| {
        metrics.value(
            "outrider_override_rejected_total",
            &[("rollout", "fraud"), ("reason", reason)],
        )
    };
    assert_eq!(rejected_by("bad_signature"), Some(2.0));
    assert_eq!(rejected_by("expired"), Some(1.0));
    assert_eq!(rejected_by("ttl_too_long"), Some(1.0));
    assert_eq!(rejected_by("unknown_variant"), Some(1.0));
    assert_eq!(rejected_by("malformed"), Some(3.0));
    let honoured = |variant: &str| {
        metrics.value(
            "outrider_override_honoured_total",
            &[("rollout", "fraud"), ("variant", variant)],
        )
    };
    assert_eq!(honoured("canary"), Some(2.0));
    assert_eq!(honoured("stable"), Some(0.0));
    let requests = |variant: &str| {
        metrics.value(
            "outrider_rq_total",
            &[("rollout", "fraud"), ("variant", variant)],
        )
    };
    assert_eq!(requests("canary"), Some(2.0));
    assert_eq!(requests("stable"), Some(8.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_are_impossible_when_not_configured() {
    let mut config = config();
    config.as_object_mut().unwrap().remove("override");
    let rollout = RolloutUnderTest::start(config, 1).await.unwrap();
    let key = stable_keys(1).remove(0);
    let token = mint(INLINE_SECRET.as_bytes(), "fraud", "canary", now() + 600).unwrap();
    let reply = HttpClient::new()
        .get(
            &rollout.url,
            &[("x-user-id", &key), ("x-outrider-override", &token)],
        )
        .await
        .unwrap();
    assert_eq!(reply.header("x-served-by"), Some("stable"));
}
