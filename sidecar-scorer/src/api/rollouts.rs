//! `/v1/rollouts`: create, list, read, change (weights, pause, resume, promote,
//! rollback, abort), the event history, and the state filters poll.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use outrider_protocol::PollResult;
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::body::JsonBody;
use super::error::ApiError;
use super::params::{PathParams, Query};
use super::{AppState, load_rollout, now_ms};
use crate::analysis::ScorerSetup;
use crate::metrics::{Named, PollLabels};
use crate::rollout::{Attribution, Change, CreateRequest, Rollout, RolloutError};
use crate::store::StoreError;

/// Who changes a rollout: the `actor` of the body, else the `x-outrider-actor`
/// header, else `api`.
fn attribution(headers: &HeaderMap, actor: Option<String>, reason: Option<String>) -> Attribution {
    let header = headers
        .get("x-outrider-actor")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Attribution {
        actor: actor.or(header).unwrap_or_else(|| "api".to_owned()),
        reason: reason.unwrap_or_default(),
    }
}

/// Stores a change made to `current`, and answers with the new rollout.
async fn commit(
    app: &AppState,
    current: &Rollout,
    (next, event): Change,
) -> Result<Response, ApiError> {
    app.store
        .update_rollout(&next, current.version, &event)
        .await?;
    app.states.put(&next);
    tracing::info!(rollout = %next.name, version = next.version, kind = %event.kind, actor = %event.actor, reason = %event.reason, "rollout changed");
    crate::retrain::champion::on_change(app, &next, &event).await;
    Ok(Json(next).into_response())
}

pub async fn create(
    _: Admin,
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    let by = attribution(&headers, request.actor.clone(), request.reason.clone());
    let rollout = create_or_replan(&app, request, &by).await?;
    Ok((StatusCode::CREATED, Json(rollout)).into_response())
}

/// Creates a rollout, or gives a finished one of that name (promoted, rolled back,
/// aborted, concluded) a new plan: its versions go on growing, so every filter takes
/// the new plan as newer. A running rollout of that name is a conflict.
pub async fn create_or_replan(
    app: &AppState,
    request: CreateRequest,
    by: &Attribution,
) -> Result<Rollout, ApiError> {
    if let Some(analysis) = &request.analysis {
        let setup = ScorerSetup {
            window_ms: app.config.window_ms,
            prometheus: app.config.prometheus_url.is_some(),
        };
        analysis.check("analysis.", &setup)?;
    }
    if let Some(experiment) = &request.experiment {
        experiment.check("experiment.", app.config.window_ms)?;
    }
    let name = request.name.clone();
    let (rollout, event) = Rollout::create(request, by, now_ms())?;
    match app.store.create_rollout(&rollout, &event).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            let current = load_rollout(app, &name).await?;
            let (next, event) = current.replan(rollout, event)?;
            app.store
                .update_rollout(&next, current.version, &event)
                .await?;
            app.states.put(&next);
            tracing::info!(rollout = %next.name, version = next.version, actor = %event.actor, "rollout planned anew");
            return Ok(next);
        }
        Err(e) => return Err(e.into()),
    }
    app.states.put(&rollout);
    tracing::info!(rollout = %rollout.name, actor = %event.actor, "rollout created");
    Ok(rollout)
}

pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let rollouts = app.store.rollouts().await?;
    Ok(Json(json!({ "rollouts": rollouts })).into_response())
}

pub async fn get_one(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    Ok(Json(load_rollout(&app, &name).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisQuery {
    #[serde(default)]
    limit: Option<u64>,
}

impl AnalysisQuery {
    /// How many runs to give: 50 unless asked, 1 to 1,000.
    fn limit(&self) -> Result<u64, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=1_000).contains(&limit) {
            return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
        }
        Ok(limit)
    }
}

/// The rollout's analysis spec and its newest runs (oldest first), each with the
/// figures of every check.
pub async fn analysis(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<AnalysisQuery>,
) -> Result<Response, ApiError> {
    let rollout = load_rollout(&app, &name).await?;
    let limit = query.limit()?;
    let runs = app.store.runs(&name, limit).await?;
    Ok(Json(json!({
        "rollout": name,
        "status": rollout.status,
        "step": rollout.step,
        "held": rollout.held,
        "awaiting_promotion": rollout.awaiting_promotion,
        "rollback_window_until_ms": rollout.rollback_window_until_ms,
        "analysis": rollout.analysis,
        "runs": runs,
    }))
    .into_response())
}

/// The rollout's experiment spec and its newest runs (oldest first), each with every
/// variant's sums and every comparison.
pub async fn experiment(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<AnalysisQuery>,
) -> Result<Response, ApiError> {
    let rollout = load_rollout(&app, &name).await?;
    let limit = query.limit()?;
    let runs = app.store.experiment_runs(&name, limit).await?;
    Ok(Json(json!({
        "rollout": name,
        "status": rollout.status,
        "variants": rollout.variants,
        "experiment": rollout.experiment,
        "runs": runs,
    }))
    .into_response())
}

pub async fn events(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    load_rollout(&app, &name).await?;
    let events = app.store.events(&name).await?;
    Ok(Json(json!({ "rollout": name, "events": events })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsRequest {
    weights: BTreeMap<String, f64>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn set_weights(
    _: Admin,
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<WeightsRequest>,
) -> Result<Response, ApiError> {
    let current = load_rollout(&app, &name).await?;
    let by = attribution(&headers, request.actor, request.reason);
    let change = current.set_weights(&request.weights, &by, now_ms())?;
    commit(&app, &current, change).await
}

/// The body of pause, resume, promote and rollback; all of it optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// Promote only: the variant that takes all traffic.
    #[serde(default)]
    variant: Option<String>,
}

/// Pause, resume, rollback and abort: an action on the rollout that takes no variant.
async fn act(
    app: AppState,
    name: String,
    headers: HeaderMap,
    request: Option<JsonBody<ActionRequest>>,
    action: fn(&Rollout, &Attribution, u64) -> Result<Change, RolloutError>,
) -> Result<Response, ApiError> {
    let request = request.map(|JsonBody(r)| r).unwrap_or_default();
    if request.variant.is_some() {
        return Err(ApiError::invalid("variant", "only promote takes a variant"));
    }
    let current = load_rollout(&app, &name).await?;
    let by = attribution(&headers, request.actor, request.reason);
    let change = action(&current, &by, now_ms())?;
    commit(&app, &current, change).await
}

pub async fn pause(
    _: Admin,
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    request: Option<JsonBody<ActionRequest>>,
) -> Result<Response, ApiError> {
    act(app, name, headers, request, Rollout::pause).await
}

pub async fn resume(
    _: Admin,
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    request: Option<JsonBody<ActionRequest>>,
) -> Result<Response, ApiError> {
    act(app, name, headers, request, Rollout::resume).await
}

pub async fn rollback(
    _: Admin,
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    request: Option<JsonBody<ActionRequest>>,
) -> Result<Response, ApiError> {
    act(app, name, headers, request, Rollout::rollback).await
}

pub async fn abort(
    _: Admin,
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    request: Option<JsonBody<ActionRequest>>,
) -> Result<Response, ApiError> {
    act(app, name, headers, request, Rollout::abort).await
}

pub async fn promote(
    _: Admin,
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    request: Option<JsonBody<ActionRequest>>,
) -> Result<Response, ApiError> {
    let request = request.map(|JsonBody(r)| r).unwrap_or_default();
    let current = load_rollout(&app, &name).await?;
    let by = attribution(&headers, request.actor, request.reason);
    let change = current.promote(request.variant.as_deref(), &by, now_ms())?;
    commit(&app, &current, change).await
}

/// What filters poll. With `if-none-match` equal to the current ETag the answer is an
/// empty 304, so an idle poll costs a map lookup.
pub async fn state(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(state) = app.states.get(app.store.as_ref(), &name).await? else {
        return Err(ApiError::not_found(format!("no rollout named `{name}`")));
    };
    let etag = HeaderValue::from_str(&state.etag).map_err(|e| ApiError::internal(e.to_string()))?;
    let unchanged = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            given
                .split(',')
                .any(|tag| tag.trim() == state.etag || tag.trim() == "*")
        });
    let result = if unchanged {
        PollResult::NotModified
    } else {
        PollResult::Ok
    };
    app.metrics
        .state_polls
        .get_or_create(&PollLabels {
            rollout: name,
            result: Named(result),
        })
        .inc();
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([("content-type", "application/json")], state.body.clone()).into_response()
    };
    response.headers_mut().insert("etag", etag);
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}
