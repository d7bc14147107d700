//! The server against its OpenAPI document (docs/openapi.yaml): every documented
//! operation is served; every answer has a documented status and a body that
//! validates against the documented schema; every route the server answered is
//! documented; docs/api.md covers every path.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::Method;
use outrider_harness::client::{HttpClient, Reply};
use outrider_harness::paths;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, TELEMETRY_TOKEN};
use serde_json::{Value, json};

struct Spec {
    doc: Value,
}

/// A request: method, documented path, concrete path, token, body, extra headers.
type Call = (
    Method,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<Value>,
    Vec<(&'static str, &'static str)>,
);

impl Spec {
    fn load() -> Self {
        let text = std::fs::read_to_string(paths::repo_root().join("docs/openapi.yaml")).unwrap();
        Self {
            doc: serde_saphyr::from_str(&text).unwrap(),
        }
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    ops.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    /// Checks an answer against the operation's documented responses.
    fn check(&self, method: &str, template: &str, reply: &Reply) {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let status = reply.status.to_string();
        let mut response = op["responses"]
            .get(&status)
            .unwrap_or_else(|| {
                panic!("{method} {template} answered {status}, which is not documented")
            })
            .clone();
        if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap();
            response = self.doc["components"]["responses"][name].clone();
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(
                reply.body.is_empty(),
                "{method} {template} {status}: a body where none is documented"
            );
            return;
        };
        let media_type = reply
            .header("content-type")
            .and_then(|t| t.split(';').next())
            .unwrap_or_default()
            .trim();
        assert!(
            content.contains_key(media_type),
            "{method} {template} {status}: content-type `{media_type}` is not documented"
        );
        let Some(json_schema) = content.get("application/json").map(|c| c["schema"].clone()) else {
            return;
        };
        let mut schema = json_schema;
        schema["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let body: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| panic!("{method} {template} {status}: body is not JSON"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: {errors:#?}\n{body}"
        );
    }
}

async fn send(
    scorer: &Scorer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    headers.extend_from_slice(extra);
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    HttpClient::new()
        .request(method, &format!("{}{path}", scorer.url()), &headers, body)
        .await
        .unwrap()
}

/// An A/B rollout `shop` with an experiment judged every `interval_seconds`.
fn experiment(interval_seconds: u64) -> Value {
    json!({"name": "shop", "mode": "ab",
        "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
        "experiment": {"interval_seconds": interval_seconds, "unit": "user", "max_intervals": 3,
            "metrics": [
                {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"},
                {"name": "revenue", "kind": "revenue", "direction": "decrease", "role": "guardrail"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_its_openapi_document() {
    let spec = Spec::load();
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "openapi").await;
    let admin = Some(ADMIN_TOKEN);
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let batch = json!({"batch_id": "b1", "rollout": "fraud", "proxy": "p", "window_start_ms": 0, "window_end_ms": 1,
        "shadows": [{"variant": "v3", "mirrored": 2, "completed": 2, "errors": 0, "timeouts": 0, "skipped": {"in_flight_cap": 1},
            "compared": 2, "confusion": [[1, 0], [1, 0]], "score_diff": vec![1; 11], "shadow_latency_ms": vec![0; 23],
            "primary_latency_ms": vec![0; 23], "latency_delta_sum_ms": -4}],
        "variants": [{"variant": "canary", "requests": 2, "responses": {"2xx": 2}, "latency_ms": vec![1; 23], "latency_sum_ms": 3}],
        "samples": [{"variant": "canary", "at_ms": 1, "request_id": "r1", "features": {"amount": 3.5}, "score": 0.2}]});
    let ab = json!({"metric": "binomial", "alpha": 0.05, "control": "a", "correction": "none", "sequential": false, "tuning": 5000,
        "variants": [{"name": "a", "n": 1000, "sum": 120, "sum_sq": 120, "expected_share": 0.5}, {"name": "b", "n": 1000, "sum": 150, "sum_sq": 150, "expected_share": 0.5}]});

    let calls: Vec<Call> = vec![
        (Method::GET, "/healthz", "/healthz", None, None, vec![]),
        (Method::GET, "/readyz", "/readyz", None, None, vec![]),
        (Method::GET, "/metrics", "/metrics", None, None, vec![]),
        (Method::GET, "/v1/alerts", "/v1/alerts", None, None, vec![]),
        (
            Method::GET,
            "/v1/alerts",
            "/v1/alerts?firing=true&limit=5000",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(
                json!({"name": "fraud", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
            "steps": [{"weights": {"stable": 90, "canary": 10}, "hold_seconds": 3600}]}),
            ),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(json!({"name": "fraud", "variants": [{"name": "stable", "weight": 100}]})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            None,
            Some(json!({})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(json!({"name": 3})),
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts",
            "/v1/rollouts",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}",
            "/v1/rollouts/fraud",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}",
            "/v1/rollouts/nope",
            None,
            None,
            vec![],
        ),
        (
            Method::PUT,
            "/v1/rollouts/{name}/weights",
            "/v1/rollouts/fraud/weights",
            admin,
            Some(json!({"weights": {"stable": 80, "canary": 20}, "reason": "ramp"})),
            vec![],
        ),
        (
            Method::PUT,
            "/v1/rollouts/{name}/weights",
            "/v1/rollouts/fraud/weights",
            admin,
            Some(json!({"weights": {"stable": 80}})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/pause",
            "/v1/rollouts/fraud/pause",
            admin,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/pause",
            "/v1/rollouts/fraud/pause",
            admin,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/resume",
            "/v1/rollouts/fraud/resume",
            admin,
            Some(json!({"reason": "looks fine"})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/promote",
            "/v1/rollouts/fraud/promote",
            admin,
            Some(json!({"variant": "canary"})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/rollback",
            "/v1/rollouts/fraud/rollback",
            admin,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/events",
            "/v1/rollouts/fraud/events",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(
                json!({"name": "judged", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
                "steps": [{"weights": {"stable": 90, "canary": 10}}, {"weights": {"stable": 0, "canary": 100}}],
                "analysis": {"interval_seconds": 5, "checks": [
                    {"metric": "error_rate", "max": 0.01, "max_increase": 0.005},
                    {"metric": "prediction_ks", "max": 0.2, "min_samples": 100},
                    {"name": "fraud_share", "metric": "score_share_above", "threshold": 0.5, "max_increase": 0.05, "dry_run": true},
                    {"metric": "judge", "pass_threshold": 95, "marginal_threshold": 80},
                    {"name": "upstream_5xx", "metric": "prometheus", "max": 0.02, "max_increase": 0.01,
                     "query": "sum(rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"{{variant}}\"}[{{interval}}])) / sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=\"{{variant}}\"}[{{interval}}]))",
                     "address": "http://prometheus.monitoring:9090"},
                    {"name": "availability", "metric": "prometheus", "min": 0.99,
                     "query": "avg_over_time(up{job=\"{{rollout}}-{{variant}}\"}[{{interval}}])",
                     "address": "http://prometheus.monitoring:9090"}]}}),
            ),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(
                json!({"name": "misjudged", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
                "steps": [{"weights": {"stable": 90, "canary": 10}}],
                "analysis": {"interval_seconds": 3, "checks": [{"metric": "error_rate", "max": 0.01}]}}),
            ),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(
                json!({"name": "staged", "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
                "steps": [{"weights": {"stable": 90, "canary": 10}}],
                "shadow": {"variant": "canary-shadow"},
                "gates": {"pre_rollout": {"url": "http://127.0.0.1:9/gate", "timeout_seconds": 1, "retry_seconds": 60},
                          "pre_rollback": {"url": "https://gate.example/rollback"}}}),
            ),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(json!({"name": "colours", "mode": "blue_green",
                "variants": [{"name": "blue", "weight": 100}, {"name": "green", "weight": 0}],
                "blue_green": {"preview_weight": 5, "auto_promote": false, "hold_seconds": 0, "rollback_window_seconds": 60},
                "analysis": {"interval_seconds": 5, "checks": [{"metric": "error_rate", "max": 0.01}]}})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(
                json!({"name": "bad-gate", "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
                "steps": [{"weights": {"stable": 90, "canary": 10}}],
                "gates": {"confirm_promotion": {"url": "gate.example"}}}),
            ),
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/analysis",
            "/v1/rollouts/staged/analysis",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/abort",
            "/v1/rollouts/staged/abort",
            admin,
            Some(json!({"reason": "not this week"})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts/{name}/abort",
            "/v1/rollouts/staged/abort",
            admin,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/analysis",
            "/v1/rollouts/judged/analysis",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/analysis",
            "/v1/rollouts/fraud/analysis?limit=0",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/analysis",
            "/v1/rollouts/nope/analysis",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(experiment(5)),
            vec![],
        ),
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(json!({"name": "untried", "mode": "ab",
                "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
                "experiment": {"interval_seconds": 5, "max_intervals": 3, "metrics": [
                    {"name": "converted", "kind": "conversion", "direction": "increase", "role": "guardrail"}]}})),
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/experiment",
            "/v1/rollouts/fraud/experiment?limit=0",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/experiment",
            "/v1/rollouts/nope/experiment",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/state",
            "/v1/rollouts/fraud/state",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/state",
            "/v1/rollouts/fraud/state",
            None,
            None,
            vec![("if-none-match", "\"fraud-7\"")],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/state",
            "/v1/rollouts/nope/state",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/telemetry",
            "/v1/telemetry",
            Some(TELEMETRY_TOKEN),
            Some(batch.clone()),
            vec![],
        ),
        (
            Method::POST,
            "/v1/telemetry",
            "/v1/telemetry",
            Some(TELEMETRY_TOKEN),
            Some(batch),
            vec![],
        ),
        (
            Method::POST,
            "/v1/telemetry",
            "/v1/telemetry",
            admin,
            Some(json!({})),
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/telemetry",
            "/v1/rollouts/fraud/telemetry",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/telemetry",
            "/v1/rollouts/fraud/telemetry?from_ms=abc",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/samples",
            "/v1/rollouts/fraud/samples?limit=abc",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/shadow",
            "/v1/rollouts/fraud/shadow?verdict=pass",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/samples",
            "/v1/rollouts/fraud/samples?limit=5",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/samples",
            "/v1/rollouts/fraud/samples?limit=0",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/shadow",
            "/v1/rollouts/fraud/shadow?min_comparisons=1",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/rollouts/{name}/shadow",
            "/v1/rollouts/fraud/shadow?min_agreement=2",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/feedback",
            "/v1/feedback",
            admin,
            Some(json!({"request_id": "r1", "label": 1, "event_id": "e1"})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/feedback",
            "/v1/feedback",
            admin,
            Some(
                json!({"events": [{"user_key": "u1", "label": 0, "value": 12.5}, {"request_id": "r1", "label": 1, "event_id": "e1"}]}),
            ),
            vec![],
        ),
        (
            Method::POST,
            "/v1/feedback",
            "/v1/feedback",
            None,
            Some(json!({"request_id": "r1", "label": 1})),
            vec![],
        ),
        (
            Method::POST,
            "/v1/stats/{analysis}",
            "/v1/stats/ab",
            None,
            Some(ab),
            vec![],
        ),
        (
            Method::POST,
            "/v1/stats/{analysis}",
            "/v1/stats/drift",
            None,
            Some(
                json!({"kind": "numeric", "reference": [1, 2, 3], "current": [2, 3, 4], "bins": 2}),
            ),
            vec![],
        ),
        (
            Method::POST,
            "/v1/stats/{analysis}",
            "/v1/stats/judge",
            None,
            Some(json!({"metrics": "x"})),
            vec![],
        ),
        // Model monitoring: a variant names the version it serves. This scorer has
        // no registry: the answers say monitoring is off, and list the version.
        (
            Method::POST,
            "/v1/rollouts",
            "/v1/rollouts",
            admin,
            Some(
                json!({"name": "scoring", "variants": [{"name": "stable", "weight": 100, "model": "models:/fraud/1"}]}),
            ),
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/drift",
            "/v1/models/fraud/drift",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/drift",
            "/v1/models/fraud/drift?version=1&limit=5",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/drift",
            "/v1/models/nope/drift",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/drift",
            "/v1/models/fraud/drift?limit=0",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/performance",
            "/v1/models/fraud/performance",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/performance",
            "/v1/models/fraud/performance?version=9",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/performance",
            "/v1/models/fraud/performance?limit=x",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/events",
            "/v1/models/events?after=0",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/events",
            "/v1/models/events?limit=0",
            None,
            None,
            vec![],
        ),
    ];
    for (method, template, path, token, body, extra) in calls {
        let reply = send(&scorer, method.clone(), path, token, body, &extra).await;
        spec.check(method.as_str(), template, &reply);
        seen.insert((method.to_string(), template.to_owned()));
    }
    // A guardrail trip in a batch rolls the rollout back; its event carries the trip.
    let reactivate = send(
        &scorer,
        Method::PUT,
        "/v1/rollouts/fraud/weights",
        admin,
        Some(json!({"weights": {"stable": 90, "canary": 10}})),
        &[],
    )
    .await;
    spec.check("PUT", "/v1/rollouts/{name}/weights", &reactivate);
    let tripped = json!({"batch_id": "b-trip", "rollout": "fraud", "proxy": "p", "worker": "w",
        "window_start_ms": 1, "window_end_ms": 2, "variants": [],
        "guardrail_trips": [{"variant": "canary", "reason": "p99_latency", "requests": 100, "offending": 3,
            "share": 0.03, "limit": 2000.0, "window_ms": 10000, "at_ms": 2, "state_version": 0}]});
    let reply = send(
        &scorer,
        Method::POST,
        "/v1/telemetry",
        Some(TELEMETRY_TOKEN),
        Some(tripped),
        &[],
    )
    .await;
    spec.check("POST", "/v1/telemetry", &reply);
    let events = send(
        &scorer,
        Method::GET,
        "/v1/rollouts/fraud/events",
        None,
        None,
        &[],
    )
    .await;
    spec.check("GET", "/v1/rollouts/{name}/events", &events);
    let last = events.json().unwrap()["events"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        (&last["actor"], &last["details"]["guardrail"]["reason"]),
        (&json!("guardrail"), &json!("p99_latency"))
    );
    // An experiment's runs: the first look comes once its interval (and one window)
    // is over, with nothing sampled yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let looked = loop {
        let reply = send(
            &scorer,
            Method::GET,
            "/v1/rollouts/shop/experiment",
            None,
            None,
            &[],
        )
        .await;
        if reply.json().unwrap()["runs"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no experiment run in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    spec.check("GET", "/v1/rollouts/{name}/experiment", &looked);
    assert_eq!(looked.json().unwrap()["runs"][0]["verdict"], "not_judged");
    seen.insert(("GET".into(), "/v1/rollouts/{name}/experiment".into()));
    // Retraining: no policy yet, then one; this scorer has no registry, so the job
    // fails at once, saying why.
    let calls: Vec<Call> = vec![
        (
            Method::POST,
            "/v1/models/{name}/retrain",
            "/v1/models/fraud/retrain",
            admin,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/retraining",
            "/v1/models/fraud/retraining",
            None,
            None,
            vec![],
        ),
        (
            Method::PUT,
            "/v1/models/{name}/retraining",
            "/v1/models/fraud/retraining",
            admin,
            Some(
                json!({"command": ["true"], "timeout_seconds": 60, "labelled_window_seconds": 3600,
                "triggers": {"drift": {"verdicts": ["dataset_drift"], "cooldown_seconds": 600},
                             "schedule": {"every_seconds": 86400}},
                "gate": {"min_pr_auc_gain": 0.01, "min_labelled": 100},
                "rollout": {"name": "fraud", "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
                            "steps": [{"weights": {"stable": 90, "canary": 10}}]}}),
            ),
            vec![],
        ),
        (
            Method::PUT,
            "/v1/models/{name}/retraining",
            "/v1/models/fraud/retraining",
            admin,
            Some(json!({"timeout_seconds": 0})),
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/retraining",
            "/v1/models/fraud/retraining",
            None,
            None,
            vec![],
        ),
        (
            Method::POST,
            "/v1/models/{name}/retrain",
            "/v1/models/fraud/retrain",
            admin,
            Some(json!({"reason": "contract test"})),
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/jobs",
            "/v1/models/fraud/jobs?limit=5",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/models/{name}/jobs",
            "/v1/models/fraud/jobs?limit=0",
            None,
            None,
            vec![],
        ),
        (
            Method::GET,
            "/v1/jobs/{id}",
            "/v1/jobs/999",
            None,
            None,
            vec![],
        ),
    ];
    for (method, template, path, token, body, extra) in calls {
        let reply = send(&scorer, method.clone(), path, token, body, &extra).await;
        spec.check(method.as_str(), template, &reply);
        seen.insert((method.as_str().to_owned(), template.to_owned()));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let failed = loop {
        let reply = send(&scorer, Method::GET, "/v1/jobs/1", None, None, &[]).await;
        if reply.json().unwrap()["job"]["status"] == "failed" {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job 1 did not end in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    spec.check("GET", "/v1/jobs/{id}", &failed);
    assert_eq!(
        failed.json().unwrap()["job"]["outcome"],
        "the scorer has no --registry to register a version in"
    );
    let etag_reply = send(
        &scorer,
        Method::GET,
        "/v1/rollouts/fraud/state",
        None,
        None,
        &[],
    )
    .await;
    let etag = etag_reply.header("etag").unwrap().to_owned();
    let not_modified = send(
        &scorer,
        Method::GET,
        "/v1/rollouts/fraud/state",
        None,
        None,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(not_modified.status, 304);
    spec.check("GET", "/v1/rollouts/{name}/state", &not_modified);

    // The dashboard: its page, a rollout's page, its files; an ETag saves a download.
    for (template, path) in [
        ("/ui", "/ui"),
        ("/ui/rollouts/{name}", "/ui/rollouts/fraud"),
        ("/ui/assets/{file}", "/ui/assets/app.js"),
        ("/ui/assets/{file}", "/ui/assets/style.css"),
        ("/ui/assets/{file}", "/ui/assets/favicon.svg"),
        ("/ui/assets/{file}", "/ui/assets/missing.js"),
    ] {
        let reply = send(&scorer, Method::GET, path, None, None, &[]).await;
        spec.check("GET", template, &reply);
        seen.insert(("GET".to_owned(), template.to_owned()));
        if reply.status == 200 {
            let etag = reply.header("etag").unwrap().to_owned();
            assert_eq!(reply.header("cache-control"), Some("no-cache"), "{path}");
            let again = send(
                &scorer,
                Method::GET,
                path,
                None,
                None,
                &[("if-none-match", &etag)],
            )
            .await;
            assert_eq!(again.status, 304, "{path}");
            spec.check("GET", template, &again);
        }
    }

    assert_eq!(
        seen,
        spec.operations(),
        "every documented operation was exercised"
    );

    // Every route the server matched is documented.
    let metrics = String::from_utf8(
        send(&scorer, Method::GET, "/metrics", None, None, &[])
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    let documented: BTreeSet<String> = spec.operations().into_iter().map(|(_, p)| p).collect();
    for (labels, _) in outrider_harness::prom::Metrics::parse(&metrics)
        .series("outrider_scorer_http_requests_total")
    {
        let route = labels
            .iter()
            .find(|(k, _)| k == "route")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(
            documented.contains(&route),
            "route {route} is served but not documented"
        );
    }

    // The prose reference names every path.
    let api_md = std::fs::read_to_string(paths::repo_root().join("docs/api.md")).unwrap();
    for path in &documented {
        assert!(
            api_md.contains(path.as_str()),
            "docs/api.md does not mention {path}"
        );
    }
}
