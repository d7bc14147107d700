//! Rollout decisions. Every replica runs this loop, but only the one that holds the
//! store's decision lock (a PostgreSQL advisory lock, or a lease row in SQLite)
//! decides. When it dies, a PostgreSQL lock frees with its session and another replica
//! takes over within a tick; a SQLite lease lasts until it expires
//! ([`crate::store::sqlite::LEASE_MS`]), unless the same replica id comes back first.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::analysis::{AnalysisSpec, Decision, Outcome, Run, Side, decide as decide_runs, judge};
use crate::api::{AppState, now_ms};
use crate::completeness::completeness;
use crate::experiment::control as experiment;
use crate::metrics::RunLabels;
use crate::rollout::{Attribution, Change, Rollout, Status};
use crate::store::StoreError;

const TICK: Duration = Duration::from_millis(500);

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let leading = match app.store.try_lead(&app.config.replica_id, now_ms()).await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the store for the decision lock");
                false
            }
        };
        if app.leading.swap(leading, Ordering::Relaxed) != leading {
            tracing::info!(replica = %app.config.replica_id, leading, "decision lock {}", if leading { "acquired" } else { "lost" });
        }
        app.metrics.leader.set(i64::from(leading));
        if leading {
            decide(&app).await;
        }
    }
    if app.leading.swap(false, Ordering::Relaxed)
        && let Err(e) = app.store.release_lead(&app.config.replica_id).await
    {
        tracing::warn!(error = %e, "could not release the decision lock");
    }
}

/// Advances every rollout whose step has been held long enough; a rollout with an
/// analysis first runs it on the next complete interval, and moves on, rolls back or
/// pauses as its runs say; an experiment is judged on its next complete interval and
/// ended as its run says.
async fn decide(app: &AppState) {
    let rollouts = match app.store.rollouts().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read rollouts");
            return;
        }
    };
    for current in rollouts {
        let change = match &current.analysis {
            None if current.experiment.is_some() => experiment::change(app, &current).await,
            None => current.advance(now_ms(), None),
            Some(spec) => match analyse(app, &current, spec).await {
                Ok(change) => change,
                Err(e) => {
                    tracing::warn!(rollout = %current.name, error = %e, "analysis could not run");
                    None
                }
            },
        };
        let Some((next, mut event)) = change else {
            continue;
        };
        event.details["replica"] = serde_json::json!(app.config.replica_id);
        match app
            .store
            .update_rollout(&next, current.version, &event)
            .await
        {
            Ok(()) => {
                app.states.put(&next);
                app.metrics.controller_steps.inc();
                tracing::info!(rollout = %next.name, version = next.version, kind = %event.kind, reason = %event.reason, "controller changed rollout");
            }
            // Someone changed it meanwhile; look again next tick.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(rollout = %next.name, error = %e, "controller could not store a change")
            }
        }
    }
}

/// Runs the analysis of the step in effect on the next interval once its telemetry is
/// complete, and returns the change its runs call for. Runs are stored once per
/// interval end, so a decision the store refused is taken again from the same runs.
async fn analyse(
    app: &AppState,
    rollout: &Rollout,
    spec: &AnalysisSpec,
) -> Result<Option<Change>, StoreError> {
    if rollout.status != Status::Progressing {
        return Ok(None);
    }
    let Some(step) = rollout.step else {
        return Ok(None);
    };
    let window_ms = app.config.window_ms.max(1);
    let interval_ms = spec.interval_ms();
    // The first whole window after the step began: the runs of a step see its weights.
    let step_start = rollout.step_started_ms.div_ceil(window_ms) * window_ms;
    let runs: Vec<Run> = app
        .store
        .runs(&rollout.name, RUNS_READ)
        .await?
        .into_iter()
        .filter(|r| r.step == Some(step) && r.start_ms >= step_start)
        .collect();
    let start = runs.last().map_or(step_start, |r| r.end_ms);
    let end = start + interval_ms;
    let marks = app.store.workers(&rollout.name).await?;
    let complete = completeness(
        &marks,
        now_ms(),
        app.started_ms,
        app.config.worker_timeout_ms,
    );
    let mut runs = runs;
    if complete.complete_through_ms >= end {
        let run = run_interval(app, rollout, spec, step, (start, end)).await?;
        tracing::info!(rollout = %rollout.name, step, outcome = ?run.outcome, reason = %run.reason, "analysis run");
        if app.store.add_run(&run).await? {
            app.metrics
                .analysis_runs
                .get_or_create(&RunLabels {
                    rollout: rollout.name.clone(),
                    outcome: run.outcome.as_str().to_owned(),
                })
                .inc();
        }
        runs.push(run);
    }
    let analysis = |kind: &str, reason: String| Attribution {
        actor: "analysis".into(),
        reason: format!("{kind}: {reason}"),
    };
    let last = runs.last().cloned();
    let with_run = |change: Option<Change>| -> Option<Change> {
        let (next, mut event) = change?;
        if let Some(run) = &last {
            event.details["analysis"] = serde_json::to_value(run).unwrap_or_default();
        }
        Some((next, event))
    };
    let now = now_ms();
    Ok(match decide_runs(spec, &runs) {
        Decision::Wait => None,
        Decision::StepPassed => {
            let passed = runs.iter().filter(|r| r.outcome == Outcome::Passed).count();
            let why = format!("{passed} of {} runs passed", runs.len());
            with_run(rollout.advance(now, Some(&why)))
        }
        Decision::RollBack(reason) => {
            with_run(rollout.rollback(&analysis("rolled back", reason), now).ok())
        }
        Decision::Pause(reason) => with_run(rollout.pause(&analysis("paused", reason), now).ok()),
    })
}

/// Analysis runs read back to decide: more than any step needs.
const RUNS_READ: u64 = 200;

/// One run: each variant's complete windows and sampled scores in the interval.
async fn run_interval(
    app: &AppState,
    rollout: &Rollout,
    spec: &AnalysisSpec,
    step: usize,
    (start, end): (u64, u64),
) -> Result<Run, StoreError> {
    let windows = app.store.windows(&rollout.name, start, end).await?;
    let scores = app.store.scores(&rollout.name, start, end).await?;
    let sides: Vec<(String, Side)> = rollout
        .variants
        .iter()
        .map(|v| {
            let mut side = Side::default();
            side.counts.variant = v.name.clone();
            for w in windows.iter().filter(|w| w.variant == v.name) {
                side.counts.add(w);
                side.windows.push(w.clone());
            }
            side.scores = scores
                .iter()
                .filter(|(variant, _)| *variant == v.name)
                .map(|(_, s)| *s)
                .collect();
            (v.name.clone(), side)
        })
        .collect();
    Ok(judge(&rollout.name, Some(step), spec, (start, end), &sides))
}
