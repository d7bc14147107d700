//! The guardrail end to end: Envoy (two workers) with the filter, a real scorer on
//! SQLite, a stable and a canary stand-in. At 200 requests a second with the canary at
//! 10%, the canary starts answering every request with 503: within a second it gets
//! no request on any worker, with at most 20 errors reaching the clients, and the
//! scorer marks the rollout rolled back by the guardrail, with its figures.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use outrider_harness::load::{Outcome, Traffic};
use serde_json::{Value, json};

const RATE: u64 = 200;

async fn events(scorer: &outrider_harness::scorer::Scorer) -> Vec<Value> {
    call(scorer, Method::GET, "/v1/rollouts/fraud/events", None, None)
        .await
        .json()
        .unwrap()["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_goes_to_zero_within_a_second() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "guardrail").await;
    create_rollout(&scorer, 90.0, 10.0).await;
    let mut config = linked_config(90.0, 10.0, 300, 300);
    config["guardrail"] = json!({"window_ms": 10_000, "min_requests": 20, "max_5xx_share": 0.05});
    let rollout = envoy_linked(&scorer, config, 2).await;
    let envoy = &rollout.envoy;
    eventually(Duration::from_secs(5), "first poll", || async {
        envoy
            .stat("wasmcustom.outrider.state_version.rollout=fraud")
            .await
            .unwrap()
            == 1
    })
    .await;

    // Healthy traffic first, so the windows hold healthy history.
    let traffic = Traffic::start(rollout.url.clone(), RATE);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let canary = rollout.standin("canary");
    assert!(
        canary.requests() > 30,
        "the canary had its 10%: {}",
        canary.requests()
    );
    let onset = Instant::now();
    canary.fail_with(503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reached_by_1s = canary.requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcomes = traffic.finish().await;
    let reached_at_end = canary.requests();

    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent >= onset).collect();
    let last_canary = after
        .iter()
        .filter(|o| o.served_by == "canary")
        .map(|o| o.sent - onset)
        .max()
        .unwrap_or_default();
    let bad = outcomes.iter().filter(|o| o.is_bad()).count();
    let canary_after = after.iter().filter(|o| o.served_by == "canary").count();
    println!(
        "fault onset -> 0%: the last request the canary served was sent {} ms after the onset; \
         bad responses: {bad} of {} requests ({} after the onset, {canary_after} of them to the canary)",
        last_canary.as_millis(),
        outcomes.len(),
        after.len()
    );
    assert!(
        bad > 0,
        "the fault reached some clients before the trip, or this shows nothing"
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.sent < onset)
            .all(|o| o.status == 200),
        "healthy before the onset"
    );
    assert!(
        last_canary <= Duration::from_secs(1),
        "the canary served a request {last_canary:?} after the onset"
    );
    assert_eq!(
        reached_by_1s, reached_at_end,
        "no request reached the canary later than 1 s after the onset, on any worker"
    );
    assert!(bad <= 20, "{bad} bad responses");
    assert_eq!(
        after.len() - canary_after,
        after
            .iter()
            .filter(|o| o.served_by == "stable" && o.status == 200)
            .count(),
        "everything else was served by stable"
    );

    // Envoy: the weight gauges, the trip counted (each worker judges its own traffic,
    // so one or two trips), the log line with the figures.
    let stat = |variant: &str| {
        format!("wasmcustom.outrider.weight_basis_points.rollout=fraud.variant={variant}")
    };
    assert_eq!(envoy.stat(&stat("canary")).await.unwrap(), 0);
    assert_eq!(envoy.stat(&stat("stable")).await.unwrap(), 10_000);
    let trips = envoy
        .counter(
            "wasmcustom.outrider.guardrail_trips_total.rollout=fraud.variant=canary.reason=5xx_share",
        )
        .await
        .unwrap();
    assert!((1..=2).contains(&trips), "{trips} trips");
    let log = envoy.log();
    let tripped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("guardrail tripped: variant `canary` at 0% on this Envoy"))
        .collect();
    assert_eq!(tripped.len() as u64, trips, "{log}");
    assert!(
        tripped
            .iter()
            .all(|l| l.contains("until a state newer than version 1: 5xx share")),
        "{tripped:?}"
    );

    // The scorer: rolled back by the guardrail, with the figures, and the rolled-back
    // state is what every Envoy polls now.
    eventually(Duration::from_secs(5), "rolled back", || async {
        call(&scorer, Method::GET, "/v1/rollouts/fraud", None, None)
            .await
            .json()
            .unwrap()["status"]
            == "rolled_back"
    })
    .await;
    let all = events(&scorer).await;
    let by_guardrail: Vec<&Value> = all.iter().filter(|e| e["actor"] == "guardrail").collect();
    assert_eq!(by_guardrail.len(), 1, "{all:?}");
    let event = by_guardrail[0];
    assert_eq!(event["kind"], "rolled_back");
    let evidence = &event["details"]["guardrail"];
    let (requests, offending) = (
        evidence["requests"].as_u64().unwrap(),
        evidence["offending"].as_u64().unwrap(),
    );
    assert_eq!(
        (
            &evidence["variant"],
            &evidence["reason"],
            &evidence["limit"],
            &evidence["state_version"]
        ),
        (
            &json!("canary"),
            &json!("5xx_share"),
            &json!(0.05),
            &json!(1)
        )
    );
    assert!(
        requests >= 20 && offending >= 1 && offending as f64 > 0.05 * requests as f64,
        "{evidence}"
    );
    assert!(
        offending as usize <= bad,
        "the worker counted {offending} errors, the clients got {bad}"
    );
    assert!(
        event["reason"].as_str().unwrap().contains(&format!(
            "5xx share {:.3} ({offending} of {requests} requests",
            offending as f64 / requests as f64
        )),
        "{event}"
    );
    // And an alert says so, with the variant and the figures.
    eventually(Duration::from_secs(10), "the guardrail alert", || async {
        let alerts = call(&scorer, Method::GET, "/v1/alerts?firing=true", None, None)
            .await
            .json()
            .unwrap();
        alerts["alerts"].as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == "OutriderGuardrailTripped"
                && a["labels"]["variant"] == "canary"
                && a["annotations"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("5xx share"))
        })
    })
    .await;
    eventually(
        Duration::from_secs(3),
        "the rolled-back state applied",
        || async {
            envoy
                .stat("wasmcustom.outrider.state_version.rollout=fraud")
                .await
                .unwrap()
                == 2
        },
    )
    .await;
    assert_eq!(envoy.stat(&stat("canary")).await.unwrap(), 0);
}
