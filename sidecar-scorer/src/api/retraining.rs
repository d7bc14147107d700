//! `/v1/models/{name}/retraining`, `/v1/models/{name}/retrain`, `/v1/models/{name}/jobs`
//! and `/v1/jobs/{id}`: a model's retraining policy, starting a job by hand, and the
//! jobs with their logs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::body::JsonBody;
use super::error::ApiError;
use super::params::{PathParams, Query};
use super::{AppState, now_ms};
use crate::retrain::{Policy, runner};

pub async fn put_policy(
    _: Admin,
    State(app): State<AppState>,
    PathParams(model): PathParams<String>,
    JsonBody(policy): JsonBody<Policy>,
) -> Result<Response, ApiError> {
    outrider_protocol::rules::check_name("model", &model)?;
    policy.check()?;
    if let Some(template) = &policy.rollout {
        let req: crate::rollout::CreateRequest = serde_json::from_value(template.clone())
            .map_err(|e| ApiError::invalid("rollout", format!("not a rollout spec: {e}")))?;
        if req.variants.len() < 2 {
            return Err(ApiError::invalid(
                "rollout.variants",
                "give the baseline (the champion) first and the candidate (the challenger) last",
            ));
        }
    }
    app.store.put_policy(&model, &policy, now_ms()).await?;
    tracing::info!(model = %model, "retraining policy set");
    Ok(Json(json!({"model": model, "policy": policy})).into_response())
}

pub async fn get_policy(
    State(app): State<AppState>,
    PathParams(model): PathParams<String>,
) -> Result<Response, ApiError> {
    let policy = app
        .store
        .policies()
        .await?
        .into_iter()
        .find(|(m, _)| *m == model)
        .map(|(_, p)| p)
        .ok_or_else(|| ApiError::not_found(format!("model `{model}` has no retraining policy")))?;
    Ok(Json(json!({"model": model, "policy": policy})).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetrainRequest {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn retrain(
    _: Admin,
    State(app): State<AppState>,
    PathParams(model): PathParams<String>,
    request: Option<JsonBody<RetrainRequest>>,
) -> Result<Response, ApiError> {
    let has_policy = app.store.policies().await?.iter().any(|(m, _)| *m == model);
    if !has_policy {
        return Err(ApiError::not_found(format!(
            "model `{model}` has no retraining policy: PUT /v1/models/{model}/retraining first"
        )));
    }
    let reason = request
        .and_then(|JsonBody(r)| r.reason)
        .unwrap_or_else(|| "started by hand".to_owned());
    match runner::queue(&app, &model, "manual", &reason).await? {
        Some(job) => Ok((StatusCode::ACCEPTED, Json(job)).into_response()),
        None => Err(ApiError::conflict(format!(
            "model `{model}` has a retraining job queued or running"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    #[serde(default)]
    limit: Option<u64>,
}

/// A model's newest jobs, oldest first, without their logs.
pub async fn jobs(
    State(app): State<AppState>,
    PathParams(model): PathParams<String>,
    Query(query): Query<JobsQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    let jobs: Vec<_> = app
        .store
        .jobs(&model, limit)
        .await?
        .into_iter()
        .map(|s| {
            let mut job = s.job;
            job.log = String::new();
            job
        })
        .collect();
    Ok(Json(json!({"model": model, "jobs": jobs})).into_response())
}

pub async fn job(
    State(app): State<AppState>,
    PathParams(id): PathParams<u64>,
) -> Result<Response, ApiError> {
    let stored = app
        .store
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no retraining job {id}")))?;
    Ok(Json(json!({"job": stored.job, "heartbeat_ms": stored.heartbeat_ms})).into_response())
}
