//! HTTP API v1 (see docs/api.md and docs/openapi.yaml). JSON in and out; errors are
//! `{"error": {"code", "message", "field"}}` with a 4xx status; mutating endpoints
//! need a bearer token.
//!
//! - [`auth`]: the token a handler needs, as an extractor;
//! - [`body`]: JSON bodies as extractors (size limit, content type, field paths);
//! - [`error`]: [`ApiError`], and how domain and store errors become answers;
//! - [`params`]: path and query parameters as extractors, refused as [`ApiError`];
//! - `rollouts`, `ingest`, `models`, `ops`: the handlers;
//! - `ui`: the dashboard at `/ui`, files built into the binary;
//! - [`StateCache`]: what filters poll, kept in memory for a moment.

pub mod auth;
pub mod body;
pub mod error;
mod ingest;
mod models;
mod ops;
pub mod params;
mod retraining;
pub mod rollouts;
mod state_cache;
mod ui;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

use crate::config::ServeConfig;
use crate::metrics::{HttpLabels, Metrics};
use crate::monitor::Monitor;
use crate::store::Store;

pub use error::ApiError;
pub use state_cache::StateCache;

/// What every handler shares.
pub struct App {
    pub store: Arc<dyn Store>,
    pub config: ServeConfig,
    pub metrics: Metrics,
    pub states: StateCache,
    /// Set by the controller while this replica holds the decision lock.
    pub leading: AtomicBool,
    /// When this process started (ms since the epoch): it waits for the filter
    /// workers it knew before then as if it had just heard from them.
    pub started_ms: u64,
    /// The model monitor: registry link, cached profiles, the feed of findings.
    pub monitor: Monitor,
}

pub type AppState = Arc<App>;

impl App {
    /// A replica that does not lead yet, with fresh metrics and an empty state cache.
    pub fn new(store: Arc<dyn Store>, config: ServeConfig) -> AppState {
        let monitor = Monitor::new(config.registry.as_deref(), config.monitor.clone());
        Arc::new(App {
            monitor,
            store,
            config,
            metrics: Metrics::new(),
            states: StateCache::default(),
            leading: AtomicBool::new(false),
            started_ms: now_ms(),
        })
    }
}

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/alerts", get(ops::alerts))
        .route("/v1/rollouts", get(rollouts::list).post(rollouts::create))
        .route("/v1/rollouts/{name}", get(rollouts::get_one))
        .route("/v1/rollouts/{name}/weights", put(rollouts::set_weights))
        .route("/v1/rollouts/{name}/pause", post(rollouts::pause))
        .route("/v1/rollouts/{name}/resume", post(rollouts::resume))
        .route("/v1/rollouts/{name}/promote", post(rollouts::promote))
        .route("/v1/rollouts/{name}/rollback", post(rollouts::rollback))
        .route("/v1/rollouts/{name}/abort", post(rollouts::abort))
        .route("/v1/rollouts/{name}/events", get(rollouts::events))
        .route("/v1/rollouts/{name}/analysis", get(rollouts::analysis))
        .route("/v1/rollouts/{name}/experiment", get(rollouts::experiment))
        .route("/v1/rollouts/{name}/state", get(rollouts::state))
        .route(
            "/v1/rollouts/{name}/telemetry",
            get(ingest::telemetry_summary),
        )
        .route("/v1/rollouts/{name}/samples", get(ingest::samples))
        .route("/v1/rollouts/{name}/shadow", get(ingest::shadow))
        .route("/v1/telemetry", post(ingest::telemetry))
        .route("/v1/feedback", post(ingest::feedback))
        .route("/v1/stats/{analysis}", post(ops::analysis))
        .route(
            "/v1/models/{name}/retraining",
            get(retraining::get_policy).put(retraining::put_policy),
        )
        .route("/v1/models/{name}/retrain", post(retraining::retrain))
        .route("/v1/models/{name}/jobs", get(retraining::jobs))
        .route("/v1/jobs/{id}", get(retraining::job))
        .route("/v1/models/events", get(models::events))
        .route("/v1/models/{name}/drift", get(models::drift))
        .route("/v1/models/{name}/performance", get(models::performance))
        .route("/ui", get(ui::page))
        .route("/ui/rollouts/{name}", get(ui::page))
        .route("/ui/assets/{file}", get(ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see docs/api.md")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("this endpoint does not take that method")
}

async fn count_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The rollout named `name`, or a 404 that says so.
async fn load_rollout(app: &AppState, name: &str) -> Result<crate::rollout::Rollout, ApiError> {
    app.store
        .rollout(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rollout named `{name}`")))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
