//! Alerts end to end: a real scorer sends them to a private Alertmanager (Debian's
//! `prometheus-alertmanager`) and to a webhook in Alertmanager's webhook format; a
//! rollback fires one, the next change resolves it, and both show in Alertmanager's
//! API, in the webhook and in `GET /v1/alerts`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use common::*;
use hyper::Method;
use outrider_harness::alertmanager::Alertmanager;
use outrider_harness::scorer::{Scorer, ScorerSpec};
use serde_json::{Value, json};

/// A webhook receiver that keeps every body it is sent.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/hook",
            post(move |Json(body): Json<Value>| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push(body);
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_fires_an_alert_that_the_next_change_resolves() {
    let am = Alertmanager::start().await.unwrap();
    let (hook, got) = webhook().await;
    let backend = Backend::sqlite();
    let scorer = Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: backend.store(),
        replica_id: "alerts".into(),
        extra_args: vec![
            "--alertmanager-url".into(),
            am.url.clone(),
            "--alert-webhook-url".into(),
            hook,
            "--runbook-url".into(),
            "https://runbooks.example/outrider.md".into(),
        ],
    })
    .await
    .unwrap();
    create_rollout(&scorer, 90.0, 10.0).await;
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts/fraud/rollback",
        json!({"actor": "alice", "reason": "p99 doubled on the dashboard"}),
    )
    .await;

    // Alertmanager has it, with its labels and runbook link.
    eventually(
        Duration::from_secs(10),
        "the alert in Alertmanager",
        || async { !am.alerts().await.unwrap().is_empty() },
    )
    .await;
    let held = am.alerts().await.unwrap();
    let alert = &held[0];
    assert_eq!(alert["labels"]["alertname"], "OutriderRolloutRolledBack");
    assert_eq!(alert["labels"]["rollout"], "fraud");
    assert_eq!(alert["labels"]["by"], "alice");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example/outrider.md#outriderrolloutrolledback"
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("p99 doubled on the dashboard")
    );
    assert_eq!(alert["status"]["state"], "active");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .ends_with("/v1/rollouts/fraud/events")
    );

    // The webhook got the firing in Alertmanager's webhook format.
    eventually(Duration::from_secs(5), "the firing webhook", || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let firing = got.lock().unwrap()[0].clone();
    assert_eq!(
        (&firing["version"], &firing["status"]),
        (&json!("4"), &json!("firing"))
    );
    assert_eq!(firing["alerts"][0]["labels"], alert["labels"]);
    assert_eq!(
        firing["alerts"][0]["fingerprint"].as_str().unwrap().len(),
        16
    );

    // A new change clears it: resolved in the webhook, gone from Alertmanager's
    // active alerts, and both states kept by the scorer.
    set_weights(&scorer, 100.0, 0.0).await;
    eventually(Duration::from_secs(10), "the resolved webhook", || async {
        got.lock()
            .unwrap()
            .iter()
            .any(|b| b["status"] == "resolved")
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the alert resolved in Alertmanager",
        || async { am.alerts().await.unwrap().is_empty() },
    )
    .await;
    let resolved = got
        .lock()
        .unwrap()
        .iter()
        .find(|b| b["status"] == "resolved")
        .cloned()
        .unwrap();
    assert_eq!(
        resolved["alerts"][0]["fingerprint"],
        firing["alerts"][0]["fingerprint"]
    );
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let stored = call(&scorer, Method::GET, "/v1/alerts", None, None)
        .await
        .json()
        .unwrap();
    let alerts = stored["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{stored}");
    assert_eq!(alerts[0]["status"], "resolved");
    assert!(alerts[0]["ends_ms"].as_u64().unwrap() >= alerts[0]["starts_ms"].as_u64().unwrap());
    let firing_now = call(&scorer, Method::GET, "/v1/alerts?firing=true", None, None)
        .await
        .json()
        .unwrap();
    assert_eq!(firing_now["alerts"], json!([]));
    assert_eq!(
        got.lock().unwrap().len(),
        2,
        "one firing and one resolution, no repeats"
    );
}
