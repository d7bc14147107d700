//! The API in-process: `api::router` over an `App` on a SQLite store in a temporary
//! folder, called with `tower::ServiceExt::oneshot`. No sockets and no processes, so
//! every error path of every endpoint is covered here (status, code, field, message
//! and the whole error body), with the main successes; `api_errors.rs` and
//! `openapi.rs` check the same server over real HTTP.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use outrider_harness::prom::Metrics;
use outrider_scorer::api::{self, App, AppState};
use outrider_scorer::config::{ServeArgs, ServeConfig};
use outrider_scorer::store;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const TELEMETRY: &str = "telemetry-token-0123456789";
const FEEDBACK: &str = "feedback-token-0123456789";
/// `--max-body-bytes` of the app under test.
const LIMIT: usize = 4_096;

/// The router of a fresh scorer, and what it runs on.
struct Api {
    router: Router,
    app: AppState,
    _dir: tempfile::TempDir,
}

/// What came back.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("scorer.db").display().to_string();
        let config = ServeConfig::resolve(ServeArgs {
            store: Some(location.clone()),
            admin_token: Some(ADMIN.into()),
            telemetry_token: Some(TELEMETRY.into()),
            feedback_token: Some(FEEDBACK.into()),
            max_body_bytes: Some(LIMIT),
            window_seconds: Some(1),
            replica_id: Some("in-process".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        let app = App::new(store::open(&location).await.unwrap(), config);
        Self {
            router: api::router(app.clone()),
            app,
            _dir: dir,
        }
    }

    /// A fresh scorer with rollout `fraud`: stable 90, canary 10.
    async fn with_fraud() -> Self {
        let api = Self::new().await;
        api.admin(
            Method::POST,
            "/v1/rollouts",
            json!({"name": "fraud", "variants": [
                {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}),
        )
        .await;
        api
    }

    async fn call(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A JSON request (no body when `body` is `None`).
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.call(request(method, path, token).body(Body::from(body)).unwrap())
            .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, None).await
    }

    /// An admin call that must succeed; its JSON answer.
    async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let answer = self.send(method, path, Some(ADMIN), Some(body)).await;
        assert!(
            answer.status < 300,
            "{path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }

    /// A series of `/metrics`, 0 when absent.
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = String::from_utf8(self.get("/metrics").await.body).unwrap();
        Metrics::parse(&text).sum(name, labels)
    }
}

fn request(method: Method, path: &str, token: Option<&str>) -> axum::http::request::Builder {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
}

/// Checks an error answer: its status, and a body that is exactly
/// `{"error": {"code", "message", "field"}}` with a message containing `says` and no
/// `field` key when `field` is `None`.
#[track_caller]
fn assert_error(
    what: &str,
    answer: &Answer,
    status: u16,
    code: &str,
    field: Option<&str>,
    says: &str,
) {
    let body = answer.json();
    assert_eq!(answer.status, status, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{what}: `{message}` lacks `{says}`");
    let mut expected = json!({"error": {"code": code, "message": message}});
    if let Some(field) = field {
        expected["error"]["field"] = json!(field);
    }
    assert_eq!(body, expected, "{what}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}"
    );
}

/// A request that must be refused, and how.
struct Refusal {
    what: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    says: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn refusal(
    what: &'static str,
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    says: &'static str,
) -> Refusal {
    Refusal {
        what,
        method,
        path,
        token,
        body,
        status,
        code,
        field,
        says,
    }
}

/// Sends each request to `api` and checks how it was refused.
async fn refuse_all(api: &Api, refusals: Vec<Refusal>) {
    for r in refusals {
        let answer = api.send(r.method, r.path, r.token, r.body).await;
        assert_error(r.what, &answer, r.status, r.code, r.field, r.says);
        if r.status == 401 {
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer"),
                "{}",
                r.what
            );
        } else {
            assert_eq!(answer.header("www-authenticate"), None, "{}", r.what);
        }
    }
}

/// Every endpoint that needs a token, with a body it would accept.
fn guarded() -> Vec<(Method, &'static str, Value, &'static str)> {
    vec![
        (
            Method::POST,
            "/v1/rollouts",
            json!({"name": "other", "variants": [{"name": "a", "weight": 100}]}),
            "admin",
        ),
        (
            Method::PUT,
            "/v1/rollouts/fraud/weights",
            json!({"weights": {"stable": 50, "canary": 50}}),
            "admin",
        ),
        (Method::POST, "/v1/rollouts/fraud/pause", json!({}), "admin"),
        (
            Method::POST,
            "/v1/rollouts/fraud/resume",
            json!({}),
            "admin",
        ),
        (
            Method::POST,
            "/v1/rollouts/fraud/promote",
            json!({}),
            "admin",
        ),
        (
            Method::POST,
            "/v1/rollouts/fraud/rollback",
            json!({}),
            "admin",
        ),
        (
            Method::POST,
            "/v1/telemetry",
            telemetry_batch("t-1", &[("canary", 1)]),
            "telemetry",
        ),
        (
            Method::POST,
            "/v1/feedback",
            json!({"request_id": "r", "label": 1}),
            "feedback",
        ),
    ]
}

#[tokio::test]
async fn every_guarded_endpoint_refuses_a_missing_bad_or_foreign_token() {
    let api = Api::with_fraud().await;
    let before = api.get("/v1/rollouts/fraud").await.json();
    for (method, path, body, role) in guarded() {
        let send = |token: Option<&'static str>, header: Option<&'static str>| {
            let mut builder = request(method.clone(), path, token);
            if let Some(header) = header {
                builder = builder.header("authorization", header);
            }
            api.call(builder.body(Body::from(body.to_string())).unwrap())
        };
        let answer = send(None, None).await;
        assert_error(
            path,
            &answer,
            401,
            "unauthorized",
            None,
            "needs `authorization: Bearer <token>`",
        );
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{path}");
        let answer = send(None, Some("Token admin-token-0123456789")).await;
        assert_error(
            path,
            &answer,
            401,
            "unauthorized",
            None,
            "must be `Bearer <token>`",
        );
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{path}");
        let answer = send(Some("not-a-token-at-all-0000"), None).await;
        assert_error(
            path,
            &answer,
            401,
            "unauthorized",
            None,
            "the bearer token is not valid",
        );
        // A valid token of a role this endpoint does not take.
        let foreign = match role {
            "telemetry" => ADMIN,
            "feedback" => TELEMETRY,
            _ => TELEMETRY,
        };
        let answer = send(Some(foreign), None).await;
        assert_error(
            path,
            &answer,
            403,
            "forbidden",
            None,
            "this token may not use this endpoint",
        );
        assert_eq!(answer.header("www-authenticate"), None, "{path}");
        if role == "admin" {
            let answer = send(Some(FEEDBACK), None).await;
            assert_error(path, &answer, 403, "forbidden", None, "may not");
        }
    }
    // Nothing refused changed anything.
    assert_eq!(api.get("/v1/rollouts/fraud").await.json(), before);
    assert_eq!(
        api.get("/v1/rollouts").await.json()["rollouts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.app.store.feedback_count(None).await.unwrap(), 0);
    assert!(
        api.app
            .store
            .windows("fraud", 0, u64::MAX / 2)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bodies_are_refused_by_size_and_content_type_before_they_are_parsed() {
    let api = Api::with_fraud().await;
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(LIMIT));
    for (method, path, _, role) in guarded() {
        let token = match role {
            "telemetry" => TELEMETRY,
            _ => ADMIN,
        };
        // Declared too large: refused before a byte of the body is read.
        let answer = api
            .call(
                request(method.clone(), path, Some(token))
                    .header("content-length", big.len().to_string())
                    .body(Body::from(big.clone()))
                    .unwrap(),
            )
            .await;
        assert_error(
            path,
            &answer,
            413,
            "payload_too_large",
            None,
            "larger than 4096 bytes",
        );
        assert_eq!(answer.header("connection"), Some("close"), "{path}");
        // Not declared: refused once the limit is passed.
        let answer = api
            .call(
                request(method.clone(), path, Some(token))
                    .body(Body::from(big.clone()))
                    .unwrap(),
            )
            .await;
        assert_error(path, &answer, 413, "payload_too_large", None, "4096");
        assert_eq!(answer.header("connection"), Some("close"), "{path}");
        // Not JSON by its content type.
        let answer = api
            .call(
                Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "text/plain")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        assert_error(
            path,
            &answer,
            415,
            "unsupported_media_type",
            None,
            "send JSON (content-type: application/json), not text/plain",
        );
        // A token is checked before the body: no token and a huge body is a 401.
        let answer = api
            .call(
                request(method.clone(), path, None)
                    .body(Body::from(big.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, 401, "{path}");
    }
    // A body without a content type is taken as JSON.
    let answer = api
        .call(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/rollouts/fraud/pause")
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::from("{\"reason\": \"no content type\"}"))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["status"], "paused");
    // The statistics endpoints take no token, but the same limits.
    let answer = api
        .call(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/stats/ab")
                .header("content-type", "text/csv")
                .body(Body::from("a,b"))
                .unwrap(),
        )
        .await;
    assert_error(
        "stats",
        &answer,
        415,
        "unsupported_media_type",
        None,
        "text/csv",
    );
    let answer = api
        .call(
            request(Method::POST, "/v1/stats/drift", None)
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_error("stats", &answer, 413, "payload_too_large", None, "4096");
}

#[tokio::test]
async fn rollout_requests_are_refused_with_the_field_at_fault() {
    let api = Api::with_fraud().await;
    let variants = json!([{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]);
    let admin = Some(ADMIN);
    use Method as M;
    refuse_all(&api, vec![
        // Not JSON, or not of the shape.
        refusal("empty body", M::POST, "/v1/rollouts", admin, None, 400, "invalid_json", None, "the body is empty; send a JSON document"),
        refusal("wrong type", M::POST, "/v1/rollouts", admin, Some(json!({"name": 7, "variants": variants})), 400, "invalid_type", Some("name"), "expected a string"),
        refusal("missing field", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x"})), 400, "invalid_type", Some("variants"), "missing field `variants`"),
        refusal("unknown field", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "colour": "red"})), 400, "invalid_type", Some("colour"), "unknown field"),
        refusal("unknown mode", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "mode": "rainbow", "variants": variants})), 400, "invalid_type", Some("mode"), "rainbow"),
        refusal("a JSON string", M::POST, "/v1/rollouts", admin, Some(json!("fraud")), 400, "invalid_type", None, "invalid type: string \"fraud\", expected struct CreateRequest"),
        // Refused by the rollout rules.
        refusal("bad name", M::POST, "/v1/rollouts", admin, Some(json!({"name": "fraud.v2", "variants": variants})), 400, "invalid_value", Some("name"), "`fraud.v2` has the character '.'"),
        refusal("no variants", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": []})), 400, "invalid_value", Some("variants"), "give 1 to 16 variants, got 0"),
        refusal("bad variant name", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": [{"name": "", "weight": 100}]})), 400, "invalid_value", Some("variants[0].name"), "must not be empty"),
        refusal("duplicate variant", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]})), 400, "invalid_value", Some("variants[1].name"), "duplicate variant `a`"),
        refusal("sum", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 30}]})), 400, "invalid_value", Some("variants"), "weights must add up to 100, they add up to 90"),
        refusal("three decimals", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": [{"name": "a", "weight": 99.999}, {"name": "b", "weight": 0.001}]})), 400, "invalid_value", Some("variants.a"), "at most two decimal places"),
        refusal("blue-green split", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "mode": "blue_green", "variants": [{"name": "blue", "weight": 50}, {"name": "green", "weight": 50}]})), 400, "invalid_value", Some("variants"), "use weights of 0 and 100"),
        refusal("blue-green of three", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "mode": "blue_green", "variants": [{"name": "a", "weight": 100}, {"name": "b", "weight": 0}, {"name": "c", "weight": 0}]})), 400, "invalid_value", Some("variants"), "exactly two variants"),
        refusal("step with an unknown variant", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "steps": [{"weights": {"stable": 100}}, {"weights": {"shadow": 100}}]})), 400, "invalid_value", Some("steps[1].weights.shadow"), "no variant `shadow` in this rollout"),
        refusal("step not adding up", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "steps": [{"weights": {"stable": 50}}]})), 400, "invalid_value", Some("steps[0].weights"), "add up to 50"),
        refusal("bad shadow gate", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "shadow_gate": {"min_agreement": 1.5}})), 400, "invalid_value", Some("shadow_gate.min_agreement"), "must be between 0 and 1"),
        refusal("bad timeout rate", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "shadow_gate": {"max_timeout_rate": 2}})), 400, "invalid_value", Some("shadow_gate.max_timeout_rate"), "must be between 0 and 1"),
        refusal("copies as text", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "shadow_gate": {"min_copies": "many"}})), 400, "invalid_type", Some("shadow_gate.min_copies"), "invalid type"),
        refusal("unknown gate field", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "shadow_gate": {"max_latency_ms": 5}})), 400, "invalid_type", Some("shadow_gate.max_latency_ms"), "unknown field"),
        refusal("exists", M::POST, "/v1/rollouts", admin, Some(json!({"name": "fraud", "variants": variants})), 409, "conflict", None, "a rollout named `fraud` exists"),
        refusal("gate that is no URL", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "steps": [{"weights": {"stable": 100}}], "gates": {"pre_rollout": {"url": "gate:80"}}})), 400, "invalid_value", Some("gates.pre_rollout.url"), "is not an http:// or https:// URL"),
        refusal("unknown gate", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "gates": {"post_rollout": {"url": "http://gate"}}})), 400, "invalid_type", Some("gates.post_rollout"), "unknown field"),
        refusal("shadow stage without steps", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": variants, "shadow": {}})), 400, "invalid_value", Some("shadow"), "give a baseline, a candidate and steps"),
        refusal("blue-green section on a canary", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "variants": [{"name": "blue", "weight": 100}, {"name": "green", "weight": 0}], "blue_green": {}})), 400, "invalid_value", Some("blue_green"), "needs mode blue_green"),
        refusal("preview too large", M::POST, "/v1/rollouts", admin, Some(json!({"name": "x", "mode": "blue_green", "variants": [{"name": "blue", "weight": 100}, {"name": "green", "weight": 0}], "blue_green": {"preview_weight": 75}})), 400, "invalid_value", Some("blue_green.preview_weight"), "must be between 0 and 50"),
        // Changes.
        refusal("read an unknown rollout", M::GET, "/v1/rollouts/nope", None, None, 404, "not_found", None, "no rollout named `nope`"),
        refusal("events of an unknown rollout", M::GET, "/v1/rollouts/nope/events", None, None, 404, "not_found", None, "no rollout named `nope`"),
        refusal("weights of an unknown rollout", M::PUT, "/v1/rollouts/nope/weights", admin, Some(json!({"weights": {"a": 100}})), 404, "not_found", None, "no rollout named `nope`"),
        refusal("weights for an unknown variant", M::PUT, "/v1/rollouts/fraud/weights", admin, Some(json!({"weights": {"stable": 50, "shadow": 50}})), 400, "invalid_value", Some("weights.shadow"), "no variant `shadow`"),
        refusal("weights of the wrong type", M::PUT, "/v1/rollouts/fraud/weights", admin, Some(json!({"weights": {"stable": "all"}})), 400, "invalid_type", Some("weights.stable"), "invalid type"),
        refusal("weights without weights", M::PUT, "/v1/rollouts/fraud/weights", admin, Some(json!({"reason": "?"})), 400, "invalid_type", Some("weights"), "missing field"),
        refusal("weights not adding up", M::PUT, "/v1/rollouts/fraud/weights", admin, Some(json!({"weights": {"stable": 50, "canary": 40}})), 400, "invalid_value", Some("weights"), "they add up to 90"),
        refusal("weights on an empty body", M::PUT, "/v1/rollouts/fraud/weights", admin, None, 400, "invalid_json", None, "empty"),
        refusal("pause an unknown rollout", M::POST, "/v1/rollouts/nope/pause", admin, None, 404, "not_found", None, "nope"),
        refusal("resume an unknown rollout", M::POST, "/v1/rollouts/nope/resume", admin, None, 404, "not_found", None, "nope"),
        refusal("promote an unknown rollout", M::POST, "/v1/rollouts/nope/promote", admin, None, 404, "not_found", None, "nope"),
        refusal("roll back an unknown rollout", M::POST, "/v1/rollouts/nope/rollback", admin, None, 404, "not_found", None, "nope"),
        refusal("abort an unknown rollout", M::POST, "/v1/rollouts/nope/abort", admin, None, 404, "not_found", None, "nope"),
        refusal("resume a progressing rollout", M::POST, "/v1/rollouts/fraud/resume", admin, None, 409, "conflict", None, "only a paused rollout can be resumed; `fraud` is progressing"),
        refusal("pause with a variant", M::POST, "/v1/rollouts/fraud/pause", admin, Some(json!({"variant": "canary"})), 400, "invalid_value", Some("variant"), "only promote takes a variant"),
        refusal("rollback with a variant", M::POST, "/v1/rollouts/fraud/rollback", admin, Some(json!({"variant": "canary"})), 400, "invalid_value", Some("variant"), "only promote takes a variant"),
        refusal("action with an unknown field", M::POST, "/v1/rollouts/fraud/pause", admin, Some(json!({"why": "x"})), 400, "invalid_type", Some("why"), "unknown field"),
        refusal("action body not JSON", M::POST, "/v1/rollouts/fraud/rollback", admin, Some(json!("x")), 400, "invalid_type", None, "expected struct"),
        refusal("promote an unknown variant", M::POST, "/v1/rollouts/fraud/promote", admin, Some(json!({"variant": "shadow"})), 400, "invalid_value", Some("variant"), "no variant `shadow` in this rollout"),
    ])
    .await;

    // The changes refused by the rollout's status.
    api.admin(M::POST, "/v1/rollouts/fraud/pause", json!({}))
        .await;
    let paused_again = api
        .send(M::POST, "/v1/rollouts/fraud/pause", admin, None)
        .await;
    assert_error(
        "pause twice",
        &paused_again,
        409,
        "conflict",
        None,
        "only a progressing rollout can be paused; `fraud` is paused",
    );
    api.admin(M::POST, "/v1/rollouts/fraud/promote", json!({}))
        .await;
    let promoted_again = api
        .send(M::POST, "/v1/rollouts/fraud/promote", admin, None)
        .await;
    assert_error(
        "promote twice",
        &promoted_again,
        409,
        "conflict",
        None,
        "`fraud` is already promoted to canary",
    );
    api.admin(M::POST, "/v1/rollouts/fraud/rollback", json!({}))
        .await;
    let back_again = api
        .send(M::POST, "/v1/rollouts/fraud/rollback", admin, None)
        .await;
    assert_error(
        "roll back twice",
        &back_again,
        409,
        "conflict",
        None,
        "`fraud` is already rolled back",
    );
    let abort_done = api
        .send(M::POST, "/v1/rollouts/fraud/abort", admin, None)
        .await;
    assert_error(
        "abort a rolled back rollout",
        &abort_done,
        409,
        "conflict",
        None,
        "`fraud` is rolled_back: only a running rollout can be aborted",
    );

    // An A/B rollout names its winner.
    api.admin(
        M::POST,
        "/v1/rollouts",
        json!({"name": "ab", "mode": "ab", "variants": [
        {"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}),
    )
    .await;
    let answer = api
        .send(M::POST, "/v1/rollouts/ab/promote", admin, None)
        .await;
    assert_error(
        "ab promote",
        &answer,
        400,
        "invalid_value",
        Some("variant"),
        "an A/B rollout needs the winning variant named",
    );
    // Every refused change left no event behind.
    let kinds: Vec<Value> = api.get("/v1/rollouts/fraud/events").await.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            json!("created"),
            json!("paused"),
            json!("promoted"),
            json!("rolled_back")
        ]
    );
}

#[tokio::test]
async fn a_rollout_is_created_changed_and_recorded() {
    let api = Api::new().await;
    let answer = api
        .call(
            request(Method::POST, "/v1/rollouts", Some(ADMIN))
                .header("x-outrider-actor", "ci")
                .body(Body::from(
                    json!({"name": "fraud", "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
                        "steps": [{"weights": {"stable": 95, "canary": 5}, "hold_seconds": 600}],
                        "reason": "v7"})
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 201);
    let created = answer.json();
    assert_eq!(
        (
            &created["name"],
            &created["version"],
            &created["status"],
            &created["mode"],
            &created["step"]
        ),
        (
            &json!("fraud"),
            &json!(1),
            &json!("progressing"),
            &json!("canary"),
            &json!(0)
        )
    );
    assert_eq!(
        created["variants"],
        json!([{"name": "stable", "weight": 95.0}, {"name": "canary", "weight": 5.0}]),
        "the first step applies at once"
    );
    assert_eq!(
        created["shadow_gate"],
        json!({"min_agreement": 0.99, "min_comparisons": 1000, "max_error_rate": 0.01,
            "max_timeout_rate": 0.01, "min_copies": 1000})
    );
    assert_eq!(api.get("/v1/rollouts/fraud").await.json(), created);

    // The body's actor beats the header, which beats `api`.
    let changed = api
        .call(
            request(Method::PUT, "/v1/rollouts/fraud/weights", Some(ADMIN))
                .header("x-outrider-actor", "ci")
                .body(Body::from(
                    json!({"weights": {"stable": 70, "canary": 30}, "actor": "alice", "reason": "healthy"})
                        .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(changed.status, 200);
    let changed = changed.json();
    assert_eq!(
        (&changed["version"], &changed["step"]),
        (&json!(2), &Value::Null)
    );
    assert_eq!(
        changed["variants"][1],
        json!({"name": "canary", "weight": 30.0})
    );
    let paused = api
        .admin(Method::POST, "/v1/rollouts/fraud/pause", json!({}))
        .await;
    assert_eq!(
        (&paused["status"], &paused["version"]),
        (&json!("paused"), &json!(3))
    );
    // An action's body is optional.
    let resumed = api
        .send(Method::POST, "/v1/rollouts/fraud/resume", Some(ADMIN), None)
        .await;
    assert_eq!(
        (resumed.status, &resumed.json()["status"]),
        (200, &json!("progressing"))
    );
    let promoted = api
        .admin(
            Method::POST,
            "/v1/rollouts/fraud/promote",
            json!({"variant": "stable", "reason": "canary lost"}),
        )
        .await;
    assert_eq!(
        (&promoted["status"], &promoted["variants"]),
        (
            &json!("promoted"),
            &json!([{"name": "stable", "weight": 100.0}, {"name": "canary", "weight": 0.0}])
        )
    );
    let back = api
        .admin(
            Method::POST,
            "/v1/rollouts/fraud/rollback",
            json!({"reason": "undo"}),
        )
        .await;
    assert_eq!(
        (&back["status"], &back["version"]),
        (&json!("rolled_back"), &json!(6))
    );

    let events = api.get("/v1/rollouts/fraud/events").await.json();
    assert_eq!(events["rollout"], "fraud");
    let summary: Vec<(String, String, String, u64)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("created", "ci", "v7", 1),
        ("weights_set", "alice", "healthy", 2),
        ("paused", "api", "", 3),
        ("resumed", "api", "", 4),
        ("promoted", "api", "canary lost", 5),
        ("rolled_back", "api", "undo", 6),
    ]
    .map(|(k, a, r, v)| (k.to_owned(), a.to_owned(), r.to_owned(), v));
    assert_eq!(summary, expected);
    assert_eq!(
        events["events"][1]["details"]["weights"],
        json!({"stable": 70.0, "canary": 30.0})
    );

    let list = api.get("/v1/rollouts").await.json();
    assert_eq!(list["rollouts"].as_array().unwrap().len(), 1);
    assert_eq!(list["rollouts"][0]["version"], 6);
}

#[tokio::test]
async fn the_state_is_served_with_an_etag_and_304_when_unchanged() {
    let api = Api::with_fraud().await;
    let answer = api.get("/v1/rollouts/nope/state").await;
    assert_error(
        "unknown",
        &answer,
        404,
        "not_found",
        None,
        "no rollout named `nope`",
    );

    let answer = api.get("/v1/rollouts/fraud/state").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("etag"), Some("\"fraud-1\""));
    assert_eq!(answer.header("cache-control"), Some("no-cache"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.json(),
        json!({"rollout": "fraud", "version": 1, "status": "progressing",
            "weights": [{"variant": "stable", "weight": 90.0}, {"variant": "canary", "weight": 10.0}]})
    );
    for tag in ["\"fraud-1\"", "\"fraud-0\", \"fraud-1\"", "*"] {
        let answer = api
            .call(
                request(Method::GET, "/v1/rollouts/fraud/state", None)
                    .header("if-none-match", tag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, 304, "{tag}");
        assert!(answer.body.is_empty());
        assert_eq!(answer.header("etag"), Some("\"fraud-1\""));
    }
    // A change made here is served at once, with a new tag.
    api.admin(
        Method::PUT,
        "/v1/rollouts/fraud/weights",
        json!({"weights": {"stable": 50, "canary": 50}}),
    )
    .await;
    let answer = api
        .call(
            request(Method::GET, "/v1/rollouts/fraud/state", None)
                .header("if-none-match", "\"fraud-1\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (answer.status, answer.header("etag")),
        (200, Some("\"fraud-2\""))
    );
    assert_eq!(answer.json()["weights"][1]["weight"], 50.0);

    let polls = async |result: &str| {
        api.metric(
            "outrider_scorer_state_polls_total",
            &[("rollout", "fraud"), ("result", result)],
        )
        .await
    };
    assert_eq!(polls("ok").await, 2.0);
    assert_eq!(polls("not_modified").await, 3.0);
}

/// A telemetry batch for rollout `fraud` with these (variant, requests) counts.
fn telemetry_batch(id: &str, variants: &[(&str, u64)]) -> Value {
    json!({
        "batch_id": id, "rollout": "fraud", "proxy": "envoy-1",
        "window_start_ms": 1_000, "window_end_ms": 1_500,
        "variants": variants.iter().map(|(v, n)| json!({
            "variant": v, "requests": n, "responses": {"2xx": n}, "latency_ms": vec![*n; 23], "latency_sum_ms": 7 * n,
        })).collect::<Vec<_>>(),
    })
}

/// A batch from `worker` that ends at `end_ms`, with these counts (none: empty).
fn worker_batch(worker: &str, id: &str, end_ms: u64, variants: &[(&str, u64)]) -> Value {
    let batch = with(telemetry_batch(id, variants), "worker", json!(worker));
    with(
        with(batch, "window_start_ms", json!(end_ms - 500)),
        "window_end_ms",
        json!(end_ms),
    )
}

#[tokio::test]
async fn each_window_says_whether_every_worker_has_sent_it() {
    let api = Api::with_fraud().await;
    let post = |body: Value| {
        let api = &api;
        async move {
            let answer = api
                .send(Method::POST, "/v1/telemetry", Some(TELEMETRY), Some(body))
                .await;
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
        }
    };
    post(worker_batch("w1", "w1-1", 1_500, &[("canary", 2)])).await;
    post(worker_batch("w1", "w1-2", 3_500, &[("canary", 3)])).await;
    post(worker_batch("w2", "w2-1", 1_500, &[("stable", 5)])).await;
    post(worker_batch("w2", "w2-2", 2_000, &[])).await;
    let complete = |summary: &Value| -> Vec<(u64, String, bool)> {
        summary["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["window_start_ms"].as_u64().unwrap(),
                    w["variant"].as_str().unwrap().to_owned(),
                    w["complete"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let summary = api.get("/v1/rollouts/fraud/telemetry").await.json();
    assert_eq!(
        summary["complete_through_ms"], 2_000,
        "w2 has sent up to 2 s"
    );
    assert_eq!(
        complete(&summary),
        [
            (1_000, "canary".into(), true),
            (1_000, "stable".into(), true),
            (3_000, "canary".into(), false),
        ]
    );
    assert_eq!(summary["windows"][2]["window_end_ms"], 4_000);
    let workers = summary["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert!(
        workers
            .iter()
            .all(|w| w["live"] == true && w["proxy"] == "envoy-1")
    );
    let only = api
        .get("/v1/rollouts/fraud/telemetry?complete_only=true")
        .await
        .json();
    assert_eq!(
        (
            &only["variants"][0]["requests"],
            &only["variants"][1]["requests"]
        ),
        (&json!(5), &json!(2)),
        "stable 5, canary 2: the canary's 3 in the open window are left out"
    );

    // w2 says it saw nothing up to 4 s: still short of w1's 3.5 s... and now w1 too.
    post(worker_batch("w2", "w2-3", 4_000, &[])).await;
    let summary = api.get("/v1/rollouts/fraud/telemetry").await.json();
    assert_eq!(summary["complete_through_ms"], 3_500);
    assert!(!complete(&summary)[2].2);
    post(worker_batch("w1", "w1-3", 4_100, &[])).await;
    let summary = api.get("/v1/rollouts/fraud/telemetry").await.json();
    assert!(complete(&summary).iter().all(|(_, _, c)| *c));
    assert_eq!(
        api.get("/v1/rollouts/fraud/telemetry?complete_only=yes")
            .await
            .status,
        400
    );
}

/// `batch` with `key` set to `value`.
fn with(mut batch: Value, key: &str, value: Value) -> Value {
    batch[key] = value;
    batch
}

#[tokio::test]
async fn telemetry_is_refused_with_the_field_at_fault_and_applied_once() {
    let api = Api::with_fraud().await;
    let t = Some(TELEMETRY);
    let good = telemetry_batch("b-1", &[("canary", 4)]);
    let shadow = json!({"variant": "v3", "mirrored": 1, "completed": 1, "errors": 0, "timeouts": 0, "compared": 1,
        "confusion": [[1, 0], [0, 0]], "score_diff": vec![0; 11], "shadow_latency_ms": vec![0; 23], "primary_latency_ms": vec![0; 23]});
    use Method as M;
    refuse_all(&api, vec![
        refusal("not JSON", M::POST, "/v1/telemetry", t, None, 400, "invalid_json", None, "empty"),
        refusal("missing batch id", M::POST, "/v1/telemetry", t, Some(json!({"rollout": "fraud", "proxy": "p", "window_start_ms": 0, "window_end_ms": 1, "variants": []})), 400, "invalid_type", Some("batch_id"), "missing field"),
        refusal("unknown field", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "extra", json!(1))), 400, "invalid_type", Some("extra"), "unknown field"),
        refusal("count of the wrong type", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "variants", json!([{"variant": "canary", "requests": -1, "responses": {}, "latency_ms": []}]))), 400, "invalid_type", Some("variants[0].requests"), "invalid value"),
        refusal("unknown rollout", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "rollout", json!("nope"))), 404, "not_found", None, "no rollout named `nope`"),
        refusal("empty batch id", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "batch_id", json!(""))), 400, "invalid_value", Some("batch_id"), "must be 1 to 256 characters"),
        refusal("long proxy", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "proxy", json!("p".repeat(257)))), 400, "invalid_value", Some("proxy"), "must be 1 to 256 characters"),
        refusal("long worker", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "worker", json!("w".repeat(257)))), 400, "invalid_value", Some("worker"), "must be 1 to 256 characters"),
        refusal("window backwards", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "window_start_ms", json!(5_000))), 400, "invalid_value", Some("window_end_ms"), "ends before window_start_ms"),
        refusal("short histogram", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "variants", json!([{"variant": "canary", "requests": 1, "responses": {}, "latency_ms": [1]}]))), 400, "invalid_value", Some("variants[0].latency_ms"), "needs 23 counts (one per bucket and the overflow), got 1"),
        refusal("bad shadow name", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "shadows", json!([with(shadow.clone(), "variant", json!("v.3"))]))), 400, "invalid_value", Some("shadows[0].variant"), "'.'"),
        refusal("short shadow histogram", M::POST, "/v1/telemetry", t, Some(with(good.clone(), "shadows", json!([shadow.clone(), with(shadow.clone(), "primary_latency_ms", json!([0, 0]))]))), 400, "invalid_value", Some("shadows[1].primary_latency_ms"), "needs 23 counts, got 2"),
    ])
    .await;
    assert!(
        api.app
            .store
            .windows("fraud", 0, u64::MAX / 2)
            .await
            .unwrap()
            .is_empty(),
        "nothing refused was applied"
    );

    let batch = with(
        with(good.clone(), "shadows", json!([shadow])),
        "samples",
        json!([{"variant": "canary", "at_ms": 1_400, "request_id": "r-1", "features": {"amount": 3.5}, "score": 0.25},
            {"variant": "blue", "at_ms": 1_401, "request_id": "r-2"}]),
    );
    // A sample of a variant the rollout does not have is left out, not the batch.
    let answer = api
        .send(Method::POST, "/v1/telemetry", t, Some(batch.clone()))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"batch_id": "b-1", "result": "applied", "left_out_variants": ["blue"]})
    );
    let answer = api
        .send(Method::POST, "/v1/telemetry", t, Some(batch))
        .await;
    assert_eq!(
        answer.json(),
        json!({"batch_id": "b-1", "result": "duplicate", "left_out_variants": ["blue"]})
    );
    api.send(
        Method::POST,
        "/v1/telemetry",
        t,
        Some(telemetry_batch("b-2", &[("stable", 6), ("canary", 1)])),
    )
    .await;

    let summary = api.get("/v1/rollouts/fraud/telemetry").await.json();
    assert_eq!(
        (&summary["window_ms"], &summary["samples"]),
        (&json!(1000), &json!(1))
    );
    let totals: Vec<(Value, Value, Value)> = summary["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["variant"].clone(),
                v["requests"].clone(),
                v["latency_sum_ms"].clone(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [
            (json!("stable"), json!(6), json!(42)),
            (json!("canary"), json!(5), json!(35))
        ],
        "in the rollout's variant order, each batch counted once"
    );
    assert_eq!(summary["windows"][0]["window_start_ms"], 1000);
    let empty = api
        .get("/v1/rollouts/fraud/telemetry?from_ms=2000")
        .await
        .json();
    assert_eq!(empty["windows"], json!([]));
    assert_eq!(empty["variants"][0]["requests"], 0);
    let answer = api.get("/v1/rollouts/nope/telemetry").await;
    assert_error(
        "summary of an unknown rollout",
        &answer,
        404,
        "not_found",
        None,
        "nope",
    );

    let batches = async |result: &str| {
        api.metric(
            "outrider_scorer_telemetry_batches_total",
            &[("result", result)],
        )
        .await
    };
    assert_eq!(
        (batches("applied").await, batches("duplicate").await),
        (2.0, 1.0)
    );
    assert_eq!(
        api.metric(
            "outrider_scorer_ingested_requests_total",
            &[("rollout", "fraud"), ("variant", "canary")]
        )
        .await,
        5.0
    );
}

#[tokio::test]
async fn samples_and_shadow_reports_are_read_back_and_their_queries_checked() {
    let api = Api::with_fraud().await;
    let mut batch = telemetry_batch("b-1", &[("canary", 3)]);
    batch["samples"] = json!([
        {"variant": "canary", "at_ms": 1, "request_id": "r-1"},
        {"variant": "stable", "at_ms": 2, "user_key": "u-2", "features": {"amount": 9.5}, "score": 0.9},
    ]);
    batch["shadows"] = json!([{"variant": "v3", "mirrored": 100, "completed": 99, "errors": 1, "timeouts": 0,
        "skipped": {"body_too_large": 2}, "compared": 99, "confusion": [[50, 3], [0, 46]],
        "score_diff": vec![9; 11], "shadow_latency_ms": vec![0; 23], "primary_latency_ms": vec![0; 23]}]);
    api.send(Method::POST, "/v1/telemetry", Some(TELEMETRY), Some(batch))
        .await;

    let samples = api.get("/v1/rollouts/fraud/samples?limit=1").await.json();
    assert_eq!(
        samples,
        json!({"rollout": "fraud", "samples": [{"variant": "stable", "at_ms": 2, "request_id": null, "user_key": "u-2",
            "features": {"amount": 9.5}, "score": 0.9}]})
    );
    assert_eq!(
        api.get("/v1/rollouts/fraud/samples").await.json()["samples"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let report = api
        .get("/v1/rollouts/fraud/shadow?min_comparisons=50")
        .await
        .json();
    assert_eq!(
        report["gate"],
        json!({"min_agreement": 0.99, "min_comparisons": 50, "max_error_rate": 0.01,
            "max_timeout_rate": 0.01, "min_copies": 1000})
    );
    let v3 = &report["shadows"][0];
    assert_eq!(
        (&v3["variant"], &v3["compared"], &v3["verdict"]),
        (&json!("v3"), &json!(99), &json!("fail"))
    );
    // Agreement (96 of 99) fails; the 100 copies are too few to judge errors.
    assert_eq!(v3["rules"], json!(["min_agreement"]));
    assert_eq!(
        (
            &v3["ended"],
            &v3["error_rate"]["rate"],
            &v3["timeout_rate"]["rate"]
        ),
        (&json!(100), &json!(0.01), &json!(0.0))
    );
    assert_eq!(v3["skipped"], json!({"body_too_large": 2}));
    assert_eq!(v3["confusion"]["primary_0"]["shadow_1"], 3);
    let lenient = api
        .get("/v1/rollouts/fraud/shadow?min_comparisons=50&min_agreement=0.9&max_error_rate=0.05&min_copies=50")
        .await
        .json();
    assert_eq!(lenient["shadows"][0]["verdict"], "pass");
    let strict = api
        .get("/v1/rollouts/fraud/shadow?min_comparisons=50&min_agreement=0.9&min_copies=50&max_error_rate=0.005&max_timeout_rate=0")
        .await
        .json();
    assert_eq!(strict["gate"]["max_timeout_rate"], 0.0);
    assert_eq!(strict["shadows"][0]["rules"], json!(["max_error_rate"]));
    let few = api
        .get("/v1/rollouts/fraud/shadow?min_comparisons=50&min_agreement=0.9")
        .await
        .json();
    assert_eq!(few["shadows"][0]["verdict"], "insufficient_data");
    assert_eq!(few["shadows"][0]["rules"], json!(["min_copies"]));
    let later = api
        .get("/v1/rollouts/fraud/shadow?from_ms=5000")
        .await
        .json();
    assert_eq!(later["shadows"], json!([]));

    use Method as M;
    refuse_all(
        &api,
        vec![
            refusal(
                "samples of an unknown rollout",
                M::GET,
                "/v1/rollouts/nope/samples",
                None,
                None,
                404,
                "not_found",
                None,
                "no rollout named `nope`",
            ),
            refusal(
                "limit 0",
                M::GET,
                "/v1/rollouts/fraud/samples?limit=0",
                None,
                None,
                400,
                "invalid_value",
                Some("limit"),
                "must be between 1 and 10000",
            ),
            refusal(
                "limit too high",
                M::GET,
                "/v1/rollouts/fraud/samples?limit=10001",
                None,
                None,
                400,
                "invalid_value",
                Some("limit"),
                "must be between 1 and 10000",
            ),
            refusal(
                "shadow of an unknown rollout",
                M::GET,
                "/v1/rollouts/nope/shadow",
                None,
                None,
                404,
                "not_found",
                None,
                "no rollout named `nope`",
            ),
            refusal(
                "agreement above 1",
                M::GET,
                "/v1/rollouts/fraud/shadow?min_agreement=2",
                None,
                None,
                400,
                "invalid_value",
                Some("min_agreement"),
                "must be between 0 and 1",
            ),
            refusal(
                "negative error rate",
                M::GET,
                "/v1/rollouts/fraud/shadow?max_error_rate=-0.5",
                None,
                None,
                400,
                "invalid_value",
                Some("max_error_rate"),
                "must be between 0 and 1",
            ),
            refusal(
                "timeout rate above 1",
                M::GET,
                "/v1/rollouts/fraud/shadow?max_timeout_rate=1.5",
                None,
                None,
                400,
                "invalid_value",
                Some("max_timeout_rate"),
                "must be between 0 and 1",
            ),
        ],
    )
    .await;
}

/// A query string that does not parse is refused like a body that does not: 400
/// `invalid_type`, naming the parameter, never axum's plain-text 400. So is a path that
/// does not decode (404, as any name that is no rollout's).
#[tokio::test]
async fn bad_query_strings_and_paths_are_refused_in_json() {
    let api = Api::with_fraud().await;
    let admin = Some(ADMIN);
    use Method as M;
    refuse_all(&api, vec![
        // The summary of telemetry.
        refusal("from_ms not a number", M::GET, "/v1/rollouts/fraud/telemetry?from_ms=yesterday", None, None, 400, "invalid_type", Some("from_ms"), "`yesterday` is not a valid `from_ms`: invalid digit found in string"),
        refusal("negative to_ms", M::GET, "/v1/rollouts/fraud/telemetry?to_ms=-1", None, None, 400, "invalid_type", Some("to_ms"), "`-1` is not a valid `to_ms`"),
        refusal("empty from_ms", M::GET, "/v1/rollouts/fraud/telemetry?from_ms=&to_ms=5", None, None, 400, "invalid_type", Some("from_ms"), "`from_ms` is empty; give a value or leave the parameter out"),
        refusal("unknown telemetry parameter", M::GET, "/v1/rollouts/fraud/telemetry?window=10", None, None, 400, "invalid_type", Some("window"), "unknown query parameter `window`, expected one of `from_ms`, `to_ms`, `complete_only`"),
        // Samples.
        refusal("limit not a number", M::GET, "/v1/rollouts/fraud/samples?limit=abc", None, None, 400, "invalid_type", Some("limit"), "`abc` is not a valid `limit`: invalid digit found in string"),
        refusal("limit with a fraction", M::GET, "/v1/rollouts/fraud/samples?limit=2.5", None, None, 400, "invalid_type", Some("limit"), "`2.5` is not a valid `limit`"),
        refusal("unknown samples parameter", M::GET, "/v1/rollouts/fraud/samples?limit=5&offset=10", None, None, 400, "invalid_type", Some("offset"), "unknown query parameter `offset`, expected `limit`"),
        refusal("limit twice", M::GET, "/v1/rollouts/fraud/samples?limit=5&limit=6", None, None, 400, "invalid_type", Some("limit"), "repeated query parameter `limit`"),
        refusal("bad query of an unknown rollout", M::GET, "/v1/rollouts/nope/samples?limit=abc", None, None, 400, "invalid_type", Some("limit"), "not a valid `limit`"),
        // Shadow reports.
        refusal("agreement not a number", M::GET, "/v1/rollouts/fraud/shadow?min_agreement=high", None, None, 400, "invalid_type", Some("min_agreement"), "`high` is not a valid `min_agreement`: invalid float literal"),
        refusal("comparisons with a fraction", M::GET, "/v1/rollouts/fraud/shadow?min_comparisons=1.5", None, None, 400, "invalid_type", Some("min_comparisons"), "`1.5` is not a valid `min_comparisons`"),
        refusal("negative copies", M::GET, "/v1/rollouts/fraud/shadow?min_copies=-1", None, None, 400, "invalid_type", Some("min_copies"), "`-1` is not a valid `min_copies`"),
        refusal("window end not a number", M::GET, "/v1/rollouts/fraud/shadow?from_ms=0&to_ms=now", None, None, 400, "invalid_type", Some("to_ms"), "`now` is not a valid `to_ms`"),
        refusal("unknown shadow parameter", M::GET, "/v1/rollouts/fraud/shadow?verdict=pass", None, None, 400, "invalid_type", Some("verdict"), "unknown query parameter `verdict`, expected one of `from_ms`, `to_ms`, `min_agreement`, `min_comparisons`, `max_error_rate`, `max_timeout_rate`, `min_copies`"),
        // Names in the path that are no rollout's, decodable or not.
        refusal("a name that breaks the rules", M::GET, "/v1/rollouts/fraud.v2/telemetry", None, None, 404, "not_found", None, "no rollout named `fraud.v2`"),
        refusal("a name too long", M::GET, "/v1/rollouts/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", None, None, 404, "not_found", None, "no rollout named"),
        refusal("an encoded slash", M::GET, "/v1/rollouts/fr%2Faud", None, None, 404, "not_found", None, "no rollout named `fr/aud`"),
        refusal("a name that is not UTF-8", M::GET, "/v1/rollouts/%FF", None, None, 404, "not_found", None, "the `name` in this path is not UTF-8 once percent-decoded"),
        refusal("state of a name that is not UTF-8", M::GET, "/v1/rollouts/%C3%28/state", None, None, 404, "not_found", None, "not UTF-8"),
        refusal("samples of a name that is not UTF-8", M::GET, "/v1/rollouts/%FF/samples?limit=5", None, None, 404, "not_found", None, "not UTF-8"),
        refusal("a change to a name that is not UTF-8", M::PUT, "/v1/rollouts/%FF/weights", admin, Some(json!({"weights": {"a": 100}})), 404, "not_found", None, "not UTF-8"),
        refusal("an analysis that is not UTF-8", M::POST, "/v1/stats/%FF", None, Some(json!({})), 404, "not_found", None, "the `analysis` in this path is not UTF-8"),
    ])
    .await;

    // Good queries still work, and the refusals are counted under their route.
    let samples = api.get("/v1/rollouts/fraud/samples?limit=1").await;
    assert_eq!(samples.status, 200);
    let summary = api
        .get("/v1/rollouts/fraud/telemetry?from_ms=0&to_ms=5000")
        .await;
    assert_eq!(summary.status, 200);
    let count = async |route: &str, status: &str| {
        api.metric(
            "outrider_scorer_http_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
        .await
    };
    assert_eq!(count("/v1/rollouts/{name}/samples", "400").await, 5.0);
    assert_eq!(count("/v1/rollouts/{name}/samples", "200").await, 1.0);
    assert_eq!(count("/v1/rollouts/{name}/shadow", "400").await, 5.0);
    assert_eq!(count("/v1/rollouts/{name}/telemetry", "400").await, 4.0);
    assert_eq!(count("/v1/rollouts/{name}", "404").await, 3.0);
}

#[tokio::test]
async fn feedback_is_refused_with_the_field_at_fault_and_stored_once() {
    let api = Api::with_fraud().await;
    let f = Some(FEEDBACK);
    use Method as M;
    refuse_all(&api, vec![
        refusal("empty body", M::POST, "/v1/feedback", f, None, 400, "invalid_json", None, "empty"),
        refusal("no join key", M::POST, "/v1/feedback", f, Some(json!({"label": 1})), 400, "invalid_value", None, "give request_id or user_key, so the outcome can be joined"),
        refusal("no label", M::POST, "/v1/feedback", f, Some(json!({"request_id": "r"})), 400, "invalid_type", Some("label"), "missing field `label`"),
        refusal("long event id", M::POST, "/v1/feedback", f, Some(json!({"request_id": "r", "label": 1, "event_id": "e".repeat(300)})), 400, "invalid_value", Some("event_id"), "must be 1 to 256 characters"),
        refusal("empty user key", M::POST, "/v1/feedback", f, Some(json!({"user_key": "", "label": 1})), 400, "invalid_value", Some("user_key"), "must be 1 to 256"),
        refusal("unknown field", M::POST, "/v1/feedback", f, Some(json!({"request_id": "r", "label": 1, "lable": 1})), 400, "invalid_type", Some("lable"), "unknown field"),
        refusal("label of the wrong type in a batch", M::POST, "/v1/feedback", f, Some(json!({"events": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": "fraud"}]})), 400, "invalid_type", Some("events[1].label"), "invalid type"),
        refusal("one bad event in a batch", M::POST, "/v1/feedback", f, Some(json!({"events": [{"request_id": "a", "label": 1}, {"label": 0}]})), 400, "invalid_value", Some("events[1]"), "request_id or user_key"),
        refusal("bad rollout in a batch", M::POST, "/v1/feedback", f, Some(json!({"events": [{"request_id": "a", "label": 1, "rollout": ""}]})), 400, "invalid_value", Some("events[0].rollout"), "must be 1 to 256"),
        refusal("empty batch", M::POST, "/v1/feedback", f, Some(json!({"events": []})), 400, "invalid_value", Some("events"), "must not be empty"),
        refusal("events not a list", M::POST, "/v1/feedback", f, Some(json!({"events": 3})), 400, "invalid_type", Some("events"), "invalid type"),
    ])
    .await;
    assert_eq!(
        api.app.store.feedback_count(None).await.unwrap(),
        0,
        "a refused post stores nothing"
    );

    let one = api
        .send(M::POST, "/v1/feedback", f, Some(json!({"request_id": "r-1", "label": 1, "value": 412.5, "event_id": "cb-1", "rollout": "fraud"})))
        .await;
    assert_eq!(
        (one.status, one.json()),
        (200, json!({"accepted": 1, "duplicates": 0}))
    );
    // The admin token may post feedback too.
    let batch = json!({"events": [{"request_id": "r-1", "label": 1, "event_id": "cb-1"}, {"user_key": "u-9", "label": 0}]});
    let answer = api
        .send(M::POST, "/v1/feedback", Some(ADMIN), Some(batch))
        .await;
    assert_eq!(
        (answer.status, answer.json()),
        (200, json!({"accepted": 1, "duplicates": 1}))
    );
    assert_eq!(api.app.store.feedback_count(None).await.unwrap(), 2);
    assert_eq!(
        api.app.store.feedback_count(Some("fraud")).await.unwrap(),
        1
    );
    let events = async |result: &str| {
        api.metric(
            "outrider_scorer_feedback_events_total",
            &[("result", result)],
        )
        .await
    };
    assert_eq!(
        (events("accepted").await, events("duplicate").await),
        (2.0, 1.0)
    );
}

#[tokio::test]
async fn routes_methods_analyses_and_operations() {
    let api = Api::with_fraud().await;
    use Method as M;
    let ab = json!({"metric": "binomial", "variants": [{"name": "a", "n": 1000, "sum": 120}, {"name": "b", "n": 1000, "sum": 150}]});
    refuse_all(
        &api,
        vec![
            refusal(
                "unknown endpoint",
                M::GET,
                "/v1/nothing-here",
                None,
                None,
                404,
                "not_found",
                None,
                "no such endpoint; see docs/api.md",
            ),
            refusal(
                "unknown endpoint, with a token",
                M::POST,
                "/v2/rollouts",
                Some(ADMIN),
                Some(json!({})),
                404,
                "not_found",
                None,
                "no such endpoint",
            ),
            refusal(
                "wrong method",
                M::DELETE,
                "/v1/rollouts",
                Some(ADMIN),
                None,
                405,
                "method_not_allowed",
                None,
                "this endpoint does not take that method",
            ),
            refusal(
                "wrong method on a rollout",
                M::PATCH,
                "/v1/rollouts/fraud",
                Some(ADMIN),
                None,
                405,
                "method_not_allowed",
                None,
                "method",
            ),
            refusal(
                "GET of a change",
                M::GET,
                "/v1/rollouts/fraud/pause",
                None,
                None,
                405,
                "method_not_allowed",
                None,
                "method",
            ),
            refusal(
                "GET of telemetry",
                M::GET,
                "/v1/telemetry",
                None,
                None,
                405,
                "method_not_allowed",
                None,
                "method",
            ),
            refusal(
                "POST to healthz",
                M::POST,
                "/healthz",
                None,
                None,
                405,
                "method_not_allowed",
                None,
                "method",
            ),
            refusal(
                "unknown analysis",
                M::POST,
                "/v1/stats/nope",
                None,
                Some(ab.clone()),
                404,
                "not_found",
                None,
                "no analysis `nope`; use ab, drift, judge or power",
            ),
            refusal(
                "bad analysis input",
                M::POST,
                "/v1/stats/ab",
                None,
                Some(
                    json!({"metric": "binomial", "variants": [{"name": "a", "n": "x", "sum": 1}]}),
                ),
                400,
                "invalid_type",
                Some("variants[0].n"),
                "invalid type",
            ),
            refusal(
                "empty analysis input",
                M::POST,
                "/v1/stats/drift",
                None,
                None,
                400,
                "invalid_json",
                None,
                "EOF",
            ),
        ],
    )
    .await;
    // An unknown analysis is refused before its body is read.
    let answer = api
        .call(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/stats/nope")
                .header("content-type", "text/plain")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_error(
        "unknown analysis, not JSON",
        &answer,
        404,
        "not_found",
        None,
        "no analysis `nope`",
    );

    let report = api.send(M::POST, "/v1/stats/ab", None, Some(ab)).await;
    assert_eq!(report.status, 200);
    assert_eq!(report.header("content-type"), Some("application/json"));
    assert!(report.json().is_object());

    let health = api.get("/healthz").await;
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let ready = api.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.json()),
        (
            200,
            json!({"status": "ready", "store": "sqlite", "replica": "in-process", "leader": false})
        )
    );
    api.app.leading.store(true, Ordering::Relaxed);
    assert_eq!(api.get("/readyz").await.json()["leader"], true);

    let metrics = api.get("/metrics").await;
    assert_eq!(
        metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    // Requests are counted by the route they matched, unmatched ones as such.
    let count = async |route: &str, method: &str, status: &str| {
        api.metric(
            "outrider_scorer_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
        .await
    };
    assert_eq!(count("/v1/rollouts", "POST", "201").await, 1.0);
    assert_eq!(count("/v1/rollouts", "DELETE", "405").await, 1.0);
    assert_eq!(count("unmatched", "GET", "404").await, 1.0);
    assert_eq!(count("/readyz", "GET", "200").await, 2.0);
    // Routes with a parameter are counted under their template, braces and all.
    assert_eq!(count("/v1/stats/{analysis}", "POST", "404").await, 2.0);
    assert_eq!(count("/v1/stats/{analysis}", "POST", "400").await, 2.0);
    assert_eq!(count("/v1/stats/{analysis}", "POST", "200").await, 1.0);
    assert_eq!(count("/v1/rollouts/{name}", "PATCH", "405").await, 1.0);
}

/// A guardrail trip of the canary (5xx, 34 of 40) made under state `version`.
fn trip(version: u64) -> Value {
    json!({"variant": "canary", "reason": "5xx_share", "requests": 40, "offending": 34,
        "share": 0.85, "limit": 0.5, "window_ms": 10_000, "at_ms": 1_800_000_000_000u64,
        "state_version": version})
}

/// The events of rollout `fraud`.
async fn events(api: &Api) -> Vec<Value> {
    api.get("/v1/rollouts/fraud/events").await.json()["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_guardrail_trip_rolls_the_rollout_back_with_its_figures() {
    let api = Api::with_fraud().await;
    let t = Some(TELEMETRY);
    let batch = |id: &str, trips: Value| {
        with(
            with(
                telemetry_batch(id, &[("canary", 40)]),
                "guardrail_trips",
                trips,
            ),
            "worker",
            json!("w-1"),
        )
    };
    use Method as M;
    refuse_all(
        &api,
        vec![
            refusal(
                "trip of an unknown reason",
                M::POST,
                "/v1/telemetry",
                t,
                Some(batch("r-2", json!([with(trip(1), "reason", json!("5xx"))]))),
                400,
                "invalid_type",
                Some("guardrail_trips[0].reason"),
                "unknown GuardrailReason `5xx`",
            ),
            refusal(
                "share above 1",
                M::POST,
                "/v1/telemetry",
                t,
                Some(batch("r-3", json!([with(trip(1), "share", json!(1.5))]))),
                400,
                "invalid_value",
                Some("guardrail_trips[0].share"),
                "from 0 to 1",
            ),
            refusal(
                "more offending than requests",
                M::POST,
                "/v1/telemetry",
                t,
                Some(batch("r-4", json!([with(trip(1), "offending", json!(41))]))),
                400,
                "invalid_value",
                Some("guardrail_trips[0].offending"),
                "not be more than `requests`",
            ),
        ],
    )
    .await;
    assert_eq!(events(&api).await.len(), 1, "refused trips change nothing");

    // Filled while the rollout was planned anew: the counts of a variant of the old plan
    // (`old`) and a trip of another (`blue`) are left out, the rest is applied.
    let across_plans = with(
        with(
            telemetry_batch("b-1", &[("canary", 40), ("old", 7)]),
            "guardrail_trips",
            json!([trip(1), with(trip(1), "variant", json!("blue"))]),
        ),
        "worker",
        json!("w-1"),
    );
    let answer = api
        .send(M::POST, "/v1/telemetry", t, Some(across_plans))
        .await;
    assert_eq!(
        answer.json(),
        json!({"batch_id": "b-1", "result": "applied", "left_out_variants": ["blue", "old"]})
    );
    let rollout = api.get("/v1/rollouts/fraud").await.json();
    assert_eq!(
        (
            &rollout["status"],
            &rollout["version"],
            &rollout["variants"]
        ),
        (
            &json!("rolled_back"),
            &json!(2),
            &json!([{"name": "stable", "weight": 100.0}, {"name": "canary", "weight": 0.0}])
        )
    );
    let state = api.get("/v1/rollouts/fraud/state").await.json();
    assert_eq!(
        (&state["version"], &state["weights"][1]["weight"]),
        (&json!(2), &json!(0.0)),
        "what every other Envoy gets at its next poll"
    );
    let all = events(&api).await;
    assert_eq!(all.len(), 2);
    let event = &all[1];
    assert_eq!(
        (&event["kind"], &event["actor"], &event["reason"]),
        (
            &json!("rolled_back"),
            &json!("guardrail"),
            &json!(
                "guardrail tripped on envoy-1: variant `canary` 5xx share 0.850 (34 of 40 \
                 requests in 10000 ms) above 0.5"
            )
        )
    );
    assert_eq!(
        event["details"]["guardrail"],
        with(
            with(trip(1), "proxy", json!("envoy-1")),
            "worker",
            json!("w-1")
        )
    );
    assert_eq!(
        event["details"]["weights"],
        json!({"stable": 100.0, "canary": 0.0})
    );
    let summary = api.get("/v1/rollouts/fraud/telemetry").await.json();
    assert_eq!(
        summary["variants"][1]["requests"], 40,
        "the counts are in too"
    );
    assert_eq!(summary["variants"].as_array().unwrap().len(), 2);

    // The same batch again, and another worker's trip: already rolled back.
    let again = api
        .send(
            M::POST,
            "/v1/telemetry",
            t,
            Some(batch("b-1", json!([trip(1)]))),
        )
        .await;
    assert_eq!(again.json()["result"], "duplicate");
    api.send(
        M::POST,
        "/v1/telemetry",
        t,
        Some(batch("b-2", json!([trip(1)]))),
    )
    .await;
    assert_eq!(events(&api).await.len(), 2);

    // Back to 10% (version 3): a late trip made under version 1 is superseded; one made
    // under version 3 rolls it back again.
    api.admin(
        M::PUT,
        "/v1/rollouts/fraud/weights",
        json!({"weights": {"stable": 90, "canary": 10}, "reason": "fixed"}),
    )
    .await;
    api.send(
        M::POST,
        "/v1/telemetry",
        t,
        Some(batch("b-3", json!([trip(1)]))),
    )
    .await;
    let rollout = api.get("/v1/rollouts/fraud").await.json();
    assert_eq!(
        (&rollout["status"], &rollout["version"]),
        (&json!("progressing"), &json!(3))
    );
    api.send(
        M::POST,
        "/v1/telemetry",
        t,
        Some(batch("b-4", json!([trip(3)]))),
    )
    .await;
    let rollout = api.get("/v1/rollouts/fraud").await.json();
    assert_eq!(
        (&rollout["status"], &rollout["version"]),
        (&json!("rolled_back"), &json!(4))
    );
    let all = events(&api).await;
    assert_eq!(
        all.iter()
            .map(|e| e["actor"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["api", "guardrail", "api", "guardrail"]
    );
    assert_eq!(all[3]["details"]["guardrail"]["state_version"], 3);
}

/// What a dashboard file refers to: `/ui/assets/...` in the page, `./x.js` imports.
fn dashboard_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (prefix, end) in [("\"/ui/assets/", '"'), ("from \"./", '"')] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            if let Some(stop) = rest.find(end) {
                found.push(rest[..stop].to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_with_its_types_and_etags() {
    let api = Api::with_fraud().await;
    let page = api.get("/ui").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    let rollout_page = api.get("/ui/rollouts/fraud").await;
    assert_eq!(
        (rollout_page.status, &rollout_page.body),
        (200, &page.body),
        "one page: its script reads the path"
    );

    // Every file the page and its modules refer to is served, with its type, and
    // none of them names anything outside the scorer.
    let mut queue = dashboard_references(&String::from_utf8(page.body.clone()).unwrap());
    let mut served = std::collections::BTreeSet::new();
    while let Some(file) = queue.pop() {
        if !served.insert(file.clone()) {
            continue;
        }
        let answer = api.get(&format!("/ui/assets/{file}")).await;
        assert_eq!(answer.status, 200, "{file}");
        let expected = match file.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("{file}: unexpected kind {other:?}"),
        };
        assert_eq!(answer.header("content-type"), Some(expected), "{file}");
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{file}");
        let text = String::from_utf8(answer.body.clone()).unwrap();
        let outside: Vec<&str> = text
            .match_indices("http")
            .map(|(at, _)| &text[at..text.len().min(at + 40)])
            .filter(|s| {
                (s.starts_with("http://") || s.starts_with("https://"))
                    && !s.starts_with("http://www.w3.org/2000/svg")
            })
            .collect();
        assert!(outside.is_empty(), "{file} refers outside: {outside:?}");
        queue.extend(dashboard_references(&text));
    }
    for file in [
        "app.js",
        "charts.js",
        "models.js",
        "style.css",
        "favicon.svg",
    ] {
        assert!(served.contains(file), "{file} is referred to: {served:?}");
    }

    // An ETag spares the download while the binary is the same.
    let etag = page.header("etag").unwrap().to_owned();
    let again = api
        .call(
            request(Method::GET, "/ui", None)
                .header("if-none-match", &etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    let missing = api.get("/ui/assets/missing.js").await;
    assert_error(
        "missing file",
        &missing,
        404,
        "not_found",
        None,
        "the dashboard has no file `missing.js`",
    );
}
