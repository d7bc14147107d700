//! Health, readiness, metrics, and the statistics endpoints.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::body::JsonText;
use super::error::ApiError;
use super::params::{PathParams, Query};
use crate::stats::{self, Analysis};

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready when the store answers.
pub async fn readyz(State(app): State<AppState>) -> Result<Response, ApiError> {
    app.store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({
        "status": "ready",
        "store": app.store.backend(),
        "replica": app.config.replica_id,
        "leader": app.leading.load(std::sync::atomic::Ordering::Relaxed),
    }))
    .into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    firing: bool,
}

/// Alerts raised, oldest first: the newest `limit` (default 100), or only those firing.
pub async fn alerts(
    State(app): State<AppState>,
    Query(query): Query<AlertsQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let alerts = app.store.alerts(limit, query.firing).await?;
    Ok(Json(json!({ "alerts": alerts })).into_response())
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// `POST /v1/stats/{ab,drift,judge,power}`: the same computation as
/// `outrider-scorer stats ...`.
pub async fn analysis(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let analysis = match name.as_str() {
        "ab" => Analysis::Ab,
        "drift" => Analysis::Drift,
        "judge" => Analysis::Judge,
        "power" => Analysis::Power,
        other => {
            return Err(ApiError::not_found(format!(
                "no analysis `{other}`; use ab, drift, judge or power"
            )));
        }
    };
    // The body is read only for an analysis that exists.
    let JsonText(text) = JsonText::from_request(request, &app).await?;
    let report = stats::run(analysis, &text)?;
    Ok(([("content-type", "application/json")], report).into_response())
}
