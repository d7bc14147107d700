//! Every kind of bad request gets the right 4xx, a JSON error with a machine code, a
//! message, and the field at fault; and a refused request changes nothing.

mod common;

use common::*;
use hyper::Method;
use outrider_harness::scorer::{ADMIN_TOKEN, TELEMETRY_TOKEN};
use serde_json::{Value, json};

/// A request and what must come back.
struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    /// Words the message must contain.
    says: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: Value,
) -> Case {
    Case {
        what,
        method,
        path,
        token,
        content_type: Some("application/json"),
        body: body.to_string(),
        status: 0,
        code: "",
        field: None,
        says: "",
    }
}

impl Case {
    fn raw(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    fn content_type(mut self, ct: Option<&'static str>) -> Self {
        self.content_type = ct;
        self
    }

    fn expect(
        mut self,
        status: u16,
        code: &'static str,
        field: Option<&'static str>,
        says: &'static str,
    ) -> Self {
        (self.status, self.code, self.field, self.says) = (status, code, field, says);
        self
    }
}

fn batch(overrides: Value) -> Value {
    let mut b = json!({
        "batch_id": "b-1", "rollout": "fraud", "proxy": "p1",
        "window_start_ms": 1000, "window_end_ms": 2000,
        "variants": [{"variant": "canary", "requests": 1, "responses": {"2xx": 1}, "latency_ms": vec![0; 23]}]
    });
    for (k, v) in overrides.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// A canary rollout `judged` whose analysis has this one check.
fn analysed(check: Value) -> Value {
    json!({"name": "judged", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
        "steps": [{"weights": {"stable": 90, "canary": 10}}],
        "analysis": {"interval_seconds": 10, "checks": [check]}})
}

fn cases() -> Vec<Case> {
    let admin = Some(ADMIN_TOKEN);
    let variants = json!([{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]);
    let ab = json!([{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]);
    let metric = |name: &str, role: &str| json!({"name": name, "kind": "conversion", "direction": "increase", "role": role});
    // A valid experiment with `changes` made to it.
    let experiment = |changes: Value| {
        let mut e = json!({"interval_seconds": 10, "max_intervals": 3, "metrics": [metric("converted", "primary")]});
        for (k, v) in changes.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let mut long_latency = batch(json!({}));
    long_latency["variants"][0]["latency_ms"] = json!([0, 1]);
    let huge = format!(
        "{{\"events\": [{}]}}",
        vec![r#"{"request_id": "r", "label": 1}"#; 3_000].join(",")
    );
    vec![
        // Tokens.
        case("no token", Method::POST, "/v1/rollouts", None, json!({})).expect(401, "unauthorized", None, "Bearer"),
        case("wrong token", Method::POST, "/v1/rollouts", Some("not-a-token-at-all-000000"), json!({})).expect(401, "unauthorized", None, "not valid"),
        case("telemetry token on admin endpoint", Method::POST, "/v1/rollouts", Some(TELEMETRY_TOKEN), json!({})).expect(403, "forbidden", None, "may not"),
        case("admin token on telemetry", Method::POST, "/v1/telemetry", admin, batch(json!({}))).expect(403, "forbidden", None, "may not"),
        case("no token on telemetry", Method::POST, "/v1/telemetry", None, batch(json!({}))).expect(401, "unauthorized", None, "Bearer"),
        case("no token on feedback", Method::POST, "/v1/feedback", None, json!({"request_id": "r", "label": 1})).expect(401, "unauthorized", None, "Bearer"),
        // Bodies that are not JSON of the right shape.
        case("not JSON", Method::POST, "/v1/rollouts", admin, json!({})).raw("{\"name\": ").expect(400, "invalid_json", Some("name"), "EOF"),
        case("empty body", Method::POST, "/v1/rollouts", admin, json!({})).raw("").expect(400, "invalid_json", None, "empty"),
        case("wrong content type", Method::POST, "/v1/rollouts", admin, json!({})).content_type(Some("text/plain")).expect(415, "unsupported_media_type", None, "JSON"),
        case("name of the wrong type", Method::POST, "/v1/rollouts", admin, json!({"name": 7, "variants": variants})).expect(400, "invalid_type", Some("name"), "expected a string"),
        case("missing variants", Method::POST, "/v1/rollouts", admin, json!({"name": "fraud"})).expect(400, "invalid_type", Some("variants"), "missing field"),
        case("misspelt field", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "variants": [{"name": "a", "wieght": 100}]})).expect(400, "invalid_type", Some("variants[0].wieght"), "unknown field"),
        case("unknown mode", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "mode": "rainbow", "variants": variants})).expect(400, "invalid_type", Some("mode"), "rainbow"),
        // Values out of their domain.
        case("weights not adding up", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 30}]})).expect(400, "invalid_value", Some("variants"), "add up to 90"),
        case("duplicate variant", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]})).expect(400, "invalid_value", Some("variants[1].name"), "duplicate"),
        case("bad name", Method::POST, "/v1/rollouts", admin, json!({"name": "fraud.v2", "variants": variants})).expect(400, "invalid_value", Some("name"), "'.'"),
        case("negative weight", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "variants": [{"name": "a", "weight": 110}, {"name": "b", "weight": -10}]})).expect(400, "invalid_value", Some("variants.a"), "between 0 and 100"),
        case("blue-green split", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "mode": "blue_green", "variants": [{"name": "blue", "weight": 50}, {"name": "green", "weight": 50}]})).expect(400, "invalid_value", Some("variants"), "blue-green"),
        case("step naming an unknown variant", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "variants": variants, "steps": [{"weights": {"shadow": 100}}]})).expect(400, "invalid_value", Some("steps[0].weights.shadow"), "no variant"),
        // Analysis checks: a prometheus check needs a query and a Prometheus to ask.
        case("prometheus check without a query", Method::POST, "/v1/rollouts", admin, analysed(json!({"metric": "prometheus", "max": 0.1}))).expect(400, "invalid_value", Some("analysis.checks[0].query"), "PromQL"),
        case("unknown placeholder in a query", Method::POST, "/v1/rollouts", admin, analysed(json!({"metric": "prometheus", "query": "up{job=\"{{job}}\"}", "max": 0.1}))).expect(400, "invalid_value", Some("analysis.checks[0].query"), "`{{job}}`"),
        case("prometheus check with no Prometheus", Method::POST, "/v1/rollouts", admin, analysed(json!({"metric": "prometheus", "query": "up", "min": 1}))).expect(400, "invalid_value", Some("analysis.checks[0].address"), "--prometheus-url"),
        case("query on a built-in metric", Method::POST, "/v1/rollouts", admin, analysed(json!({"metric": "error_rate", "max": 0.1, "query": "up"}))).expect(400, "invalid_value", Some("analysis.checks[0].query"), "only prometheus checks"),
        case("rollout exists", Method::POST, "/v1/rollouts", admin, json!({"name": "fraud", "variants": variants})).expect(409, "conflict", None, "exists"),
        // A/B experiments.
        case("experiment on a canary", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "variants": variants, "experiment": experiment(json!({}))})).expect(400, "invalid_value", Some("experiment"), "give mode ab"),
        case("experiment interval too short", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "mode": "ab", "variants": ab, "experiment": experiment(json!({"interval_seconds": 3}))})).expect(400, "invalid_value", Some("experiment.interval_seconds"), "at least 5"),
        case("experiment with two conversion metrics", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "mode": "ab", "variants": ab, "experiment": experiment(json!({"metrics": [metric("converted", "primary"), metric("again", "guardrail")]}))})).expect(400, "invalid_value", Some("experiment.metrics[1].kind"), "same feedback label"),
        case("experiment misspelt", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "mode": "ab", "variants": ab, "experiment": experiment(json!({"max_interval": 3}))})).expect(400, "invalid_type", Some("experiment.max_interval"), "unknown field"),
        case("experiment variant without traffic", Method::POST, "/v1/rollouts", admin, json!({"name": "x", "mode": "ab", "variants": [{"name": "a", "weight": 100}, {"name": "b", "weight": 0}], "experiment": experiment(json!({}))})).expect(400, "invalid_value", Some("variants[1].weight"), "share of traffic"),
        // Unknown rollouts and invalid changes.
        case("unknown rollout", Method::GET, "/v1/rollouts/nope", None, json!({})).expect(404, "not_found", None, "nope"),
        case("weights of an unknown rollout", Method::PUT, "/v1/rollouts/nope/weights", admin, json!({"weights": {"a": 100}})).expect(404, "not_found", None, "nope"),
        case("state of an unknown rollout", Method::GET, "/v1/rollouts/nope/state", None, json!({})).expect(404, "not_found", None, "nope"),
        case("weights for an unknown variant", Method::PUT, "/v1/rollouts/fraud/weights", admin, json!({"weights": {"stable": 50, "shadow": 50}})).expect(400, "invalid_value", Some("weights.shadow"), "no variant"),
        case("weights of the wrong type", Method::PUT, "/v1/rollouts/fraud/weights", admin, json!({"weights": {"stable": "all"}})).expect(400, "invalid_type", Some("weights.stable"), "invalid type"),
        case("weights not adding up (change)", Method::PUT, "/v1/rollouts/fraud/weights", admin, json!({"weights": {"stable": 50, "canary": 40}})).expect(400, "invalid_value", Some("weights"), "add up to 90"),
        case("resume an active rollout", Method::POST, "/v1/rollouts/fraud/resume", admin, json!({})).expect(409, "conflict", None, "only a paused"),
        case("promote an unknown variant", Method::POST, "/v1/rollouts/fraud/promote", admin, json!({"variant": "shadow"})).expect(400, "invalid_value", Some("variant"), "no variant"),
        case("rollback with a variant", Method::POST, "/v1/rollouts/fraud/rollback", admin, json!({"variant": "canary"})).expect(400, "invalid_value", Some("variant"), "only promote"),
        // Telemetry.
        case("telemetry for an unknown rollout", Method::POST, "/v1/telemetry", Some(TELEMETRY_TOKEN), batch(json!({"rollout": "nope"}))).expect(404, "not_found", None, "nope"),
        case("telemetry with a short histogram", Method::POST, "/v1/telemetry", Some(TELEMETRY_TOKEN), long_latency).expect(400, "invalid_value", Some("variants[0].latency_ms"), "23 counts"),
        case("telemetry without a batch id", Method::POST, "/v1/telemetry", Some(TELEMETRY_TOKEN), json!({"rollout": "fraud", "proxy": "p", "window_start_ms": 0, "window_end_ms": 1, "variants": []})).expect(400, "invalid_type", Some("batch_id"), "missing field"),
        case("telemetry with an unknown field", Method::POST, "/v1/telemetry", Some(TELEMETRY_TOKEN), batch(json!({"extra": 1}))).expect(400, "invalid_type", Some("extra"), "unknown field"),
        case("telemetry window backwards", Method::POST, "/v1/telemetry", Some(TELEMETRY_TOKEN), batch(json!({"window_start_ms": 5000}))).expect(400, "invalid_value", Some("window_end_ms"), "before"),
        // Feedback.
        case("feedback without a join key", Method::POST, "/v1/feedback", admin, json!({"label": 1})).expect(400, "invalid_value", None, "request_id or user_key"),
        case("feedback label of the wrong type", Method::POST, "/v1/feedback", admin, json!({"events": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": "fraud"}]})).expect(400, "invalid_type", Some("events[1].label"), "invalid type"),
        case("feedback with one bad event in a batch", Method::POST, "/v1/feedback", admin, json!({"events": [{"request_id": "a", "label": 1}, {"label": 0}]})).expect(400, "invalid_value", Some("events[1]"), "request_id or user_key"),
        case("empty feedback batch", Method::POST, "/v1/feedback", admin, json!({"events": []})).expect(400, "invalid_value", Some("events"), "empty"),
        case("body over the limit", Method::POST, "/v1/feedback", admin, json!({})).raw(&huge).expect(413, "payload_too_large", None, "65536"),
        // Query strings and path parameters.
        case("limit not a number", Method::GET, "/v1/rollouts/fraud/samples?limit=abc", None, json!({})).expect(400, "invalid_type", Some("limit"), "not a valid `limit`"),
        case("unknown samples parameter", Method::GET, "/v1/rollouts/fraud/samples?offset=10", None, json!({})).expect(400, "invalid_type", Some("offset"), "unknown query parameter"),
        case("telemetry window not a number", Method::GET, "/v1/rollouts/fraud/telemetry?from_ms=yesterday", None, json!({})).expect(400, "invalid_type", Some("from_ms"), "yesterday"),
        case("unknown telemetry parameter", Method::GET, "/v1/rollouts/fraud/telemetry?window=10", None, json!({})).expect(400, "invalid_type", Some("window"), "unknown query parameter"),
        case("shadow threshold not a number", Method::GET, "/v1/rollouts/fraud/shadow?min_agreement=high", None, json!({})).expect(400, "invalid_type", Some("min_agreement"), "invalid float"),
        case("unknown shadow parameter", Method::GET, "/v1/rollouts/fraud/shadow?verdict=pass", None, json!({})).expect(400, "invalid_type", Some("verdict"), "unknown query parameter"),
        case("rollout name not UTF-8", Method::GET, "/v1/rollouts/%FF/state", None, json!({})).expect(404, "not_found", None, "not UTF-8"),
        // Routes and methods.
        case("unknown endpoint", Method::GET, "/v1/nothing-here", None, json!({})).expect(404, "not_found", None, "no such endpoint"),
        case("wrong method", Method::DELETE, "/v1/rollouts", admin, json!({})).expect(405, "method_not_allowed", None, "method"),
        case("unknown analysis", Method::POST, "/v1/stats/nope", None, json!({})).expect(404, "not_found", None, "nope"),
        case("bad analysis input", Method::POST, "/v1/stats/ab", None, json!({"metric": "binomial", "variants": [{"name": "a", "n": "x", "sum": 1}]})).expect(400, "invalid_type", Some("variants[0].n"), "invalid type"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_4xx_and_change_nothing() {
    let backend = Backend::sqlite();
    let scorer = outrider_harness::scorer::Scorer::start(outrider_harness::scorer::ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: backend.store(),
        replica_id: "errors".into(),
        extra_args: vec!["--max-body-bytes".into(), "65536".into()],
    })
    .await
    .unwrap();
    create_rollout(&scorer, 90.0, 10.0).await;
    let before = call(&scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap();

    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let client = outrider_harness::client::HttpClient::new();
    for c in cases {
        let auth = c.token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(ct) = c.content_type {
            headers.push(("content-type", ct));
        }
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let reply = client
            .request(
                c.method.clone(),
                &format!("{}{}", scorer.url(), c.path),
                &headers,
                bytes::Bytes::from(c.body.clone()),
            )
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| panic!("{}: not JSON: {:?}", c.what, reply.body));
        assert_eq!(reply.status, c.status, "{}: {body}", c.what);
        let error = &body["error"];
        assert_eq!(error["code"], c.code, "{}: {body}", c.what);
        assert_eq!(error["field"].as_str(), c.field, "{}: {body}", c.what);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(c.says),
            "{}: `{message}` lacks `{}`",
            c.what,
            c.says
        );
        if c.status == 401 {
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "{}",
                c.what
            );
        }
    }

    // Nothing refused was applied.
    let after = call(&scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap();
    assert_eq!(before, after);
    let summary = scorer_counts(&scorer).await;
    assert_eq!(requests_of(&summary, "canary"), 0, "no telemetry applied");
    assert_eq!(
        scorer_metric(&scorer, "outrider_scorer_feedback_events_total", &[]).await,
        0.0,
        "no feedback stored"
    );
}
