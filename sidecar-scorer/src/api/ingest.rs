//! What flows in: telemetry batches from filters, feedback (outcome labels) from the
//! systems that learn them; and the per-variant sums read back.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use outrider_protocol::rules::MAX_VARIANTS;
use outrider_protocol::{
    BatchOutcome, FieldError, GuardrailTrip, LATENCY_SLOTS, TelemetryAck, TelemetryBatch,
};
use serde::Deserialize;
use serde_json::json;

use super::auth::{FeedbackOrAdmin, Telemetry};
use super::body::{JsonBody, JsonText, parse};
use super::error::ApiError;
use super::params::{PathParams, Query};
use super::{AppState, load_rollout, now_ms};
use crate::completeness::completeness;
use crate::histogram::latency_quantile;
use crate::metrics::{BatchLabels, FeedbackLabels, FeedbackResult, Named, VariantLabels};
use crate::rollout::{Attribution, Status};
use crate::shadow_report::reports;
use crate::store::{FeedbackEvent, StoreError, WindowCounts};

const MAX_ID_LEN: usize = 256;
const MAX_SAMPLES: usize = 10_000;

/// What is wrong with an id, if anything.
fn id_problem(value: &str) -> Option<String> {
    (value.is_empty() || value.len() > MAX_ID_LEN)
        .then(|| format!("must be 1 to {MAX_ID_LEN} characters"))
}

fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    match id_problem(value) {
        Some(problem) => Err(FieldError::new(field, problem)),
        None => Ok(()),
    }
}

/// Takes out of the batch the counts, samples and trips of variants the rollout does
/// not have, and names those variants. A batch filled while the rollout was planned
/// anew with other variants holds the last counts of the old ones beside the first of
/// the new: refusing it whole would lose what belongs to the plan in effect, a
/// guardrail trip among them.
fn leave_out_unknown_variants(batch: &mut TelemetryBatch, variants: &[String]) -> Vec<String> {
    let known = |name: &String| variants.contains(name);
    let mut left_out: Vec<String> = batch
        .variants
        .iter()
        .map(|v| &v.variant)
        .chain(batch.samples.iter().map(|s| &s.variant))
        .chain(batch.guardrail_trips.iter().map(|t| &t.variant))
        .filter(|name| !known(name))
        .cloned()
        .collect();
    left_out.sort();
    left_out.dedup();
    if !left_out.is_empty() {
        batch.variants.retain(|v| known(&v.variant));
        batch.samples.retain(|s| known(&s.variant));
        batch.guardrail_trips.retain(|t| known(&t.variant));
    }
    left_out
}

/// Everything wrong with a batch is found before anything is stored.
fn validate(batch: &TelemetryBatch) -> Result<(), FieldError> {
    check_id("batch_id", &batch.batch_id)?;
    check_id("proxy", &batch.proxy)?;
    if let Some(worker) = &batch.worker {
        check_id("worker", worker)?;
    }
    if batch.window_end_ms < batch.window_start_ms {
        return Err(FieldError::new(
            "window_end_ms",
            "ends before window_start_ms",
        ));
    }
    for (i, v) in batch.variants.iter().enumerate() {
        if v.latency_ms.len() != LATENCY_SLOTS {
            return Err(FieldError::new(
                format!("variants[{i}].latency_ms"),
                format!(
                    "needs {LATENCY_SLOTS} counts (one per bucket and the overflow), got {}",
                    v.latency_ms.len()
                ),
            ));
        }
    }
    for (i, s) in batch.shadows.iter().enumerate() {
        outrider_protocol::rules::check_name(&format!("shadows[{i}].variant"), &s.variant)?;
        let lengths = [
            (
                "score_diff",
                s.score_diff.len(),
                outrider_protocol::SCORE_DIFF_SLOTS,
            ),
            (
                "shadow_latency_ms",
                s.shadow_latency_ms.len(),
                LATENCY_SLOTS,
            ),
            (
                "primary_latency_ms",
                s.primary_latency_ms.len(),
                LATENCY_SLOTS,
            ),
        ];
        for (name, got, want) in lengths {
            if got != want {
                return Err(FieldError::new(
                    format!("shadows[{i}].{name}"),
                    format!("needs {want} counts, got {got}"),
                ));
            }
        }
    }
    if batch.guardrail_trips.len() > MAX_VARIANTS {
        return Err(FieldError::new(
            "guardrail_trips",
            format!(
                "at most {MAX_VARIANTS} per batch, got {}",
                batch.guardrail_trips.len()
            ),
        ));
    }
    for (i, t) in batch.guardrail_trips.iter().enumerate() {
        if !t.share.is_finite() || !(0.0..=1.0).contains(&t.share) {
            return Err(FieldError::new(
                format!("guardrail_trips[{i}].share"),
                "must be a share from 0 to 1",
            ));
        }
        if !t.limit.is_finite() || t.limit < 0.0 {
            return Err(FieldError::new(
                format!("guardrail_trips[{i}].limit"),
                "must be a finite number, 0 or more",
            ));
        }
        if t.offending > t.requests {
            return Err(FieldError::new(
                format!("guardrail_trips[{i}].offending"),
                "must not be more than `requests`",
            ));
        }
    }
    if batch.samples.len() > MAX_SAMPLES {
        return Err(FieldError::new(
            "samples",
            format!(
                "at most {MAX_SAMPLES} per batch, got {}",
                batch.samples.len()
            ),
        ));
    }
    for (i, s) in batch.samples.iter().enumerate() {
        if let Some(score) = s.score
            && !score.is_finite()
        {
            return Err(FieldError::new(
                format!("samples[{i}].score"),
                "must be a finite number",
            ));
        }
    }
    Ok(())
}

pub async fn telemetry(
    _: Telemetry,
    State(app): State<AppState>,
    JsonBody(batch): JsonBody<TelemetryBatch>,
) -> Result<Response, ApiError> {
    // The polling cache knows the variants of the plan in effect: no read per batch.
    let rollout = app
        .states
        .get_existing(app.store.as_ref(), &batch.rollout)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rollout named `{}`", batch.rollout)))?;
    let mut batch = batch;
    let left_out = leave_out_unknown_variants(&mut batch, &rollout.variants);
    validate(&batch)?;
    let result = app
        .store
        .ingest(&batch, app.config.window_ms, now_ms())
        .await?;
    if result == BatchOutcome::Applied {
        for v in &batch.variants {
            app.metrics
                .ingested_requests
                .get_or_create(&VariantLabels {
                    rollout: batch.rollout.clone(),
                    variant: v.variant.clone(),
                })
                .inc_by(v.requests);
        }
        for trip in &batch.guardrail_trips {
            // The batch is applied: a failure here is logged, not answered, or the
            // filter would send the batch again and get `duplicate`.
            if let Err(e) = roll_back_on_trip(&app, &batch, trip).await {
                tracing::error!(rollout = %batch.rollout, variant = %trip.variant, error = %e,
                    "guardrail trip not recorded: the rollout is not rolled back");
            }
        }
    }
    app.metrics
        .telemetry_batches
        .get_or_create(&BatchLabels {
            result: Named(result),
        })
        .inc();
    if !left_out.is_empty() {
        tracing::info!(rollout = %batch.rollout, proxy = %batch.proxy, variants = ?left_out,
            "telemetry for variants the rollout does not have left out");
    }
    Ok(Json(TelemetryAck {
        batch_id: batch.batch_id,
        result,
        left_out_variants: left_out,
    })
    .into_response())
}

/// A guardrail tripped in a filter, which took the variant to 0% on its Envoy: the
/// rollout is rolled back (actor `guardrail`, the trip in `details.guardrail`), so
/// every other Envoy stops sending the variant traffic at its next poll. Nothing is
/// done for a rollout already rolled back, nor for a trip made under an older state
/// than the rollout's (filters lift a trip when they apply a newer state; a variant
/// that still fails trips again under it). A lost compare-and-set is tried again.
async fn roll_back_on_trip(
    app: &AppState,
    batch: &TelemetryBatch,
    trip: &GuardrailTrip,
) -> Result<(), StoreError> {
    for _ in 0..3 {
        let Some(current) = app.store.rollout(&batch.rollout).await? else {
            return Ok(());
        };
        if current.status == Status::RolledBack {
            return Ok(());
        }
        if trip.state_version != 0 && trip.state_version < current.version {
            tracing::info!(rollout = %current.name, variant = %trip.variant,
                trip_version = trip.state_version, version = current.version,
                "guardrail trip under an older state: the rollout changed since; not rolled back");
            return Ok(());
        }
        let by = Attribution {
            actor: "guardrail".to_owned(),
            reason: format!(
                "guardrail tripped on {}: variant `{}` {}",
                batch.proxy,
                trip.variant,
                trip.figures()
            ),
        };
        let Ok((next, mut event)) = current.rollback(&by, now_ms()) else {
            return Ok(());
        };
        let mut evidence = serde_json::to_value(trip).unwrap_or_default();
        evidence["proxy"] = json!(batch.proxy);
        evidence["worker"] = json!(batch.worker);
        event.details["guardrail"] = evidence;
        match app
            .store
            .update_rollout(&next, current.version, &event)
            .await
        {
            Ok(()) => {
                app.states.put(&next);
                tracing::warn!(rollout = %next.name, version = next.version, actor = %event.actor,
                    reason = %event.reason, "rollout rolled back by a guardrail");
                return Ok(());
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(
        "the rollout kept changing meanwhile".to_owned(),
    ))
}

/// One feedback event as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackIn {
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    rollout: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    user_key: Option<String>,
    /// The outcome, e.g. 1 for confirmed fraud and 0 for a legitimate transaction.
    label: f64,
    /// An optional amount that goes with it (e.g. the loss).
    #[serde(default)]
    value: Option<f64>,
    /// When the outcome was observed (ms since the epoch); default: on receipt.
    #[serde(default)]
    observed_at_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBatch {
    events: Vec<FeedbackIn>,
}

/// Checks one posted event; `index` is its place in a batch. Field paths are only
/// built for an error: a batch holds thousands of events.
fn feedback_event(
    index: Option<usize>,
    e: FeedbackIn,
    now: u64,
) -> Result<FeedbackEvent, FieldError> {
    let field = |name: &str| match (index, name) {
        (None, name) => name.to_owned(),
        (Some(i), "") => format!("events[{i}]"),
        (Some(i), name) => format!("events[{i}].{name}"),
    };
    if e.request_id.is_none() && e.user_key.is_none() {
        return Err(FieldError::new(
            field(""),
            "give request_id or user_key, so the outcome can be joined",
        ));
    }
    for (name, value) in [
        ("event_id", &e.event_id),
        ("rollout", &e.rollout),
        ("request_id", &e.request_id),
        ("user_key", &e.user_key),
    ] {
        if let Some(problem) = value.as_deref().and_then(id_problem) {
            return Err(FieldError::new(field(name), problem));
        }
    }
    if !e.label.is_finite() {
        return Err(FieldError::new(field("label"), "must be a finite number"));
    }
    if e.value.is_some_and(|v| !v.is_finite()) {
        return Err(FieldError::new(field("value"), "must be a finite number"));
    }
    Ok(FeedbackEvent {
        event_id: e.event_id,
        rollout: e.rollout,
        request_id: e.request_id,
        user_key: e.user_key,
        label: e.label,
        value: e.value,
        observed_ms: e.observed_at_ms.unwrap_or(now),
    })
}

/// Whether a body is the batch form: a JSON object with an `events` key. The probe
/// walks the document without building it.
fn is_batch(text: &str) -> bool {
    /// True once the key is seen, whatever its value.
    #[derive(Default)]
    struct Present(bool);
    impl<'de> Deserialize<'de> for Present {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
        }
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        events: Present,
    }
    text.trim_start().starts_with('{')
        && serde_json::from_str::<Probe>(text).is_ok_and(|p| p.events.0)
}

/// One event (`{"request_id": ..., "label": 1}`) or many (`{"events": [...]}`); all
/// are checked before any is stored.
pub async fn feedback(
    _: FeedbackOrAdmin,
    State(app): State<AppState>,
    JsonText(text): JsonText,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let events = if is_batch(&text) {
        let batch: FeedbackBatch = parse(&text)?;
        if batch.events.is_empty() {
            return Err(ApiError::invalid("events", "must not be empty"));
        }
        batch
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| feedback_event(Some(i), e, now))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![feedback_event(None, parse(&text)?, now)?]
    };
    let outcome = app.store.add_feedback(&events, now).await?;
    for (result, n) in [
        (FeedbackResult::Accepted, outcome.accepted),
        (FeedbackResult::Duplicate, outcome.duplicates),
    ] {
        app.metrics
            .feedback_events
            .get_or_create(&FeedbackLabels {
                result: Named(result),
            })
            .inc_by(n);
    }
    Ok(Json(outcome).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    #[serde(default)]
    from_ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
    /// Sum only the windows that are complete.
    #[serde(default)]
    complete_only: bool,
}

fn summary_json(w: &WindowCounts) -> serde_json::Value {
    json!({
        "variant": w.variant,
        "requests": w.requests,
        "responses": w.responses,
        "grpc_errors": w.grpc_errors,
        "latency_sum_ms": w.latency_sum_ms,
        "latency_ms": w.latency_ms,
        "p50_ms": latency_quantile(&w.latency_ms, 0.5),
        "p99_ms": latency_quantile(&w.latency_ms, 0.99),
    })
}

/// Per-variant sums over `[from_ms, to_ms)` (default: everything), the windows, and
/// which of them are complete.
pub async fn telemetry_summary(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<SummaryQuery>,
) -> Result<Response, ApiError> {
    let rollout = load_rollout(&app, &name).await?;
    let from = query.from_ms.unwrap_or(0);
    let to = query.to_ms.unwrap_or(u64::MAX / 2);
    let window_ms = app.config.window_ms;
    // The marks first: a window read after them is at least as full as they say.
    let marks = app.store.workers(&name).await?;
    let completeness = completeness(
        &marks,
        now_ms(),
        app.started_ms,
        app.config.worker_timeout_ms,
    );
    let windows = app.store.windows(&name, from, to).await?;
    let mut totals: BTreeMap<String, WindowCounts> = rollout
        .variants
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                WindowCounts {
                    variant: v.name.clone(),
                    latency_ms: vec![0; LATENCY_SLOTS],
                    ..WindowCounts::default()
                },
            )
        })
        .collect();
    let complete = |w: &WindowCounts| completeness.window_complete(w.window_start_ms, window_ms);
    for w in &windows {
        if query.complete_only && !complete(w) {
            continue;
        }
        if let Some(total) = totals.get_mut(&w.variant) {
            total.add(w);
        }
    }
    let samples = app.store.sample_count(&name).await?;
    Ok(Json(json!({
        "rollout": name,
        "window_ms": window_ms,
        "complete_through_ms": completeness.complete_through_ms,
        "worker_timeout_ms": app.config.worker_timeout_ms,
        "workers": completeness.workers,
        "variants": rollout.variants.iter().filter_map(|v| totals.get(&v.name)).map(summary_json).collect::<Vec<_>>(),
        "windows": windows.iter().map(|w| {
            let mut j = summary_json(w);
            j["window_start_ms"] = json!(w.window_start_ms);
            j["window_end_ms"] = json!(w.window_start_ms + window_ms);
            j["complete"] = json!(complete(w));
            j
        }).collect::<Vec<_>>(),
        "samples": samples,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesQuery {
    #[serde(default)]
    limit: Option<u64>,
}

/// The newest sampled requests (features, score, join keys), newest first.
pub async fn samples(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<SamplesQuery>,
) -> Result<Response, ApiError> {
    load_rollout(&app, &name).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 10000"));
    }
    let samples = app.store.samples(&name, limit).await?;
    Ok(Json(json!({ "rollout": name, "samples": samples })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowQuery {
    #[serde(default)]
    from_ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
    /// Overrides of the rollout's shadow gate, for a look with other thresholds.
    #[serde(default)]
    min_agreement: Option<f64>,
    #[serde(default)]
    min_comparisons: Option<u64>,
    #[serde(default)]
    max_error_rate: Option<f64>,
    #[serde(default)]
    max_timeout_rate: Option<f64>,
    #[serde(default)]
    min_copies: Option<u64>,
}

/// How each shadow variant compares with the primary, and its verdict against the
/// shadow gate.
pub async fn shadow(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    Query(query): Query<ShadowQuery>,
) -> Result<Response, ApiError> {
    let rollout = load_rollout(&app, &name).await?;
    let mut gate = rollout.shadow_gate;
    gate.min_agreement = query.min_agreement.unwrap_or(gate.min_agreement);
    gate.min_comparisons = query.min_comparisons.unwrap_or(gate.min_comparisons);
    gate.max_error_rate = query.max_error_rate.unwrap_or(gate.max_error_rate);
    gate.max_timeout_rate = query.max_timeout_rate.unwrap_or(gate.max_timeout_rate);
    gate.min_copies = query.min_copies.unwrap_or(gate.min_copies);
    gate.check("")?;
    let windows = app
        .store
        .shadow_windows(
            &name,
            query.from_ms.unwrap_or(0),
            query.to_ms.unwrap_or(u64::MAX / 2),
        )
        .await?;
    let reports = reports(&windows, &gate);
    Ok(Json(json!({ "rollout": name, "gate": gate, "shadows": reports })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_form_is_an_object_with_events() {
        assert!(is_batch(r#"{"events": [{"request_id": "r", "label": 1}]}"#));
        assert!(is_batch(r#" {"events": null}"#));
        assert!(!is_batch(r#"{"request_id": "r", "label": 1}"#));
        assert!(!is_batch(r#"[{"events": []}]"#));
        assert!(!is_batch(r#"{"events": []"#));
    }

    #[test]
    fn feedback_errors_name_the_field() {
        let event = |json: &str| serde_json::from_str::<FeedbackIn>(json).unwrap();
        let err = feedback_event(Some(3), event(r#"{"label": 1}"#), 0).unwrap_err();
        assert_eq!(ApiError::from(err).field.as_deref(), Some("events[3]"));
        let err = feedback_event(None, event(r#"{"label": 1}"#), 0).unwrap_err();
        assert_eq!(ApiError::from(err).field, None);
        let err = feedback_event(Some(0), event(r#"{"user_key": "", "label": 1}"#), 0).unwrap_err();
        assert_eq!(
            ApiError::from(err).field.as_deref(),
            Some("events[0].user_key")
        );
        let ok = feedback_event(None, event(r#"{"request_id": "r", "label": 1}"#), 7).unwrap();
        assert_eq!(ok.observed_ms, 7);
    }
}
