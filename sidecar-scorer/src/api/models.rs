//! What the model monitor found, per model version: `GET /v1/models/{name}/drift`,
//! `GET /v1/models/{name}/performance`, and the feed of findings raised and cleared,
//! `GET /v1/models/events`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use outrider_stats::performance::realised::realised;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::params::{PathParams, Query};
use super::{AppState, now_ms};
use crate::monitor::findings::hysteresis;
use crate::monitor::judge::WindowReport;
use crate::monitor::runner::targets;
use crate::monitor::settings::WindowBy;
use crate::monitor::watched::Source;
use crate::store::SampleRange;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelQuery {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

fn limit(query: &ModelQuery) -> Result<u64, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    Ok(limit)
}

/// Whether the monitor runs, and why not.
fn monitoring(app: &AppState) -> Value {
    json!({
        "enabled": app.monitor.off().is_none(),
        "registry": app.monitor.registry(),
        "reason": app.monitor.off(),
    })
}

/// The versions of `name` to report, with the variants that serve each: those the
/// rollouts name now, and those with stored windows; 404 when there are none.
async fn versions(
    app: &AppState,
    name: &str,
    only: Option<u64>,
) -> Result<BTreeMap<u64, Vec<Source>>, ApiError> {
    let mut out: BTreeMap<u64, Vec<Source>> = BTreeMap::new();
    for t in targets(app).await? {
        if t.model == name {
            out.insert(t.version, t.sources);
        }
    }
    for v in app.store.model_versions(name).await? {
        out.entry(v).or_default();
    }
    if out.is_empty() {
        return Err(ApiError::not_found(format!(
            "no version of model `{name}` is watched: no rollout variant names one (\"model\": \"models:/{name}/1\") and no window of it is stored"
        )));
    }
    if let Some(v) = only {
        let sources = out.remove(&v).ok_or_else(|| {
            ApiError::not_found(format!("version {v} of model `{name}` is not watched"))
        })?;
        return Ok(BTreeMap::from([(v, sources)]));
    }
    Ok(out)
}

async fn profile_status(app: &AppState, name: &str, version: u64) -> Value {
    match app.monitor.cached_profile(name, version).await {
        Some(Ok(p)) => json!({
            "loaded": true,
            "features": p.features.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "performance": p.performance.is_some(),
        }),
        Some(Err(why)) => json!({"loaded": false, "error": why}),
        None => json!({"loaded": false}),
    }
}

/// Per version: the newest windows (oldest first) with every feature's statistics
/// and verdict, the dataset verdict, the findings and the hysteresis tallies.
pub async fn drift(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<ModelQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(&query)?;
    let rule = app.monitor.settings.hysteresis;
    let mut out = Vec::new();
    for (version, sources) in versions(&app, &name, query.version).await? {
        let keep = limit.max((rule.windows * 4 + 1) as u64);
        let windows = app.store.drift_windows(&name, version, keep).await?;
        let history: Vec<&WindowReport> = windows.iter().collect();
        let latest = windows.last();
        let findings = latest.map(|w| w.findings.clone()).unwrap_or_default();
        let (_, tallies) = hysteresis(&history, &rule, &findings, now_ms());
        let shown = &windows[windows.len().saturating_sub(limit as usize)..];
        out.push(json!({
            "version": version,
            "uri": format!("models:/{name}/{version}"),
            "served_by": sources,
            "profile": profile_status(&app, &name, version).await,
            "findings": findings,
            "hysteresis": tallies,
            "latest": latest,
            "windows": shown,
        }));
    }
    Ok(Json(json!({
        "model": name,
        "monitoring": monitoring(&app),
        "settings": app.monitor.settings,
        "versions": out,
    }))
    .into_response())
}

/// Per version: the reference's figures, the realised performance on the labelled
/// window (with CBPE's estimate on the same samples), and per window the estimate
/// beside what its labelled samples realise so far.
pub async fn performance(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<ModelQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(&query)?;
    let labelled_windows = app.store.realised().await?;
    let mut out = Vec::new();
    for (version, sources) in versions(&app, &name, query.version).await? {
        let profile = match app.monitor.cached_profile(&name, version).await {
            Some(Ok(p)) => Some(p),
            _ => None,
        };
        let reference = profile.as_ref().and_then(|p| p.performance.clone());
        let windows = app.store.drift_windows(&name, version, limit).await?;
        let mut rows = Vec::new();
        for w in &windows {
            let range = match w.by {
                WindowBy::Time => SampleRange::Time {
                    from_ms: w.start,
                    to_ms: w.end,
                },
                WindowBy::Count => SampleRange::Ids {
                    after: w.start,
                    through: w.end,
                },
            };
            // Windows stored before they named their variants read today's.
            let judged_on = if w.sources.is_empty() {
                &sources
            } else {
                &w.sources
            };
            let mut labelled = Vec::new();
            for s in judged_on {
                labelled.extend(app.store.labelled(&s.rollout, &s.variant, range).await?);
            }
            let realised_now = reference
                .as_ref()
                .filter(|_| !labelled.is_empty())
                .map(|r| {
                    let scores: Vec<f64> = labelled.iter().map(|l| l.score).collect();
                    let labels: Vec<bool> = labelled.iter().map(|l| l.label).collect();
                    realised(&scores, &labels, r.threshold)
                });
            rows.push(json!({
                "by": w.by,
                "start": w.start,
                "end": w.end,
                "first_ms": w.first_ms,
                "last_ms": w.last_ms,
                "samples": w.samples,
                "labelled": labelled.len(),
                "estimated": w.performance,
                "realised": realised_now,
            }));
        }
        let labelled_window = labelled_windows
            .iter()
            .find(|p| p.model == name && p.version == version);
        out.push(json!({
            "version": version,
            "served_by": sources,
            "reference": reference.map(|r| json!({
                "threshold": r.threshold,
                "calibrated": r.calibration.is_some(),
                "rows": r.rows,
                "positives": r.positives,
                "precision": r.precision,
                "recall": r.recall,
                "pr_auc": r.pr_auc,
            })),
            "labelled_window": labelled_window,
            "windows": rows,
        }));
    }
    Ok(Json(json!({
        "model": name,
        "monitoring": monitoring(&app),
        "versions": out,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// Findings raised and cleared after event `after`, oldest first: a retraining job
/// in another process follows this feed from the last id it handled.
pub async fn events(
    State(app): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let events = app
        .store
        .model_events(query.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(json!({ "events": events })).into_response())
}
