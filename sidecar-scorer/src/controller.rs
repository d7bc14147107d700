//! Rollout decisions. Every replica runs this loop, but only the one that holds the
//! store's decision lock (a PostgreSQL advisory lock, or a lease row in SQLite)
//! decides. When it dies, a PostgreSQL lock frees with its session and another replica
//! takes over within a tick; a SQLite lease lasts until it expires
//! ([`crate::store::sqlite::LEASE_MS`]), unless the same replica id comes back first.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::analysis::{
    AnalysisSpec, Check, Decision, Metric, Outcome, Queried, Run, Side, decide as decide_runs,
    judge,
};
use crate::api::{AppState, now_ms};
use crate::completeness::completeness;
use crate::experiment::control as experiment;
use crate::gates::{Gate, ask};
use crate::metrics::RunLabels;
use crate::prometheus::{self, Bindings};
use crate::rollout::{Attribution, Change, Rollout, Status};
use crate::shadow_report::reports;
use crate::store::StoreError;

const TICK: Duration = Duration::from_millis(500);

/// When each gate was last asked, so a holding gate is asked every `retry_seconds`
/// rather than every tick. Kept by the leader only; a new leader asks at once.
#[derive(Default)]
struct GateCalls {
    http: reqwest::Client,
    asked_ms: HashMap<(String, Gate), u64>,
}

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut gates = GateCalls::default();
    // Without a client every prometheus check is inconclusive, saying why; the other
    // checks and the step schedules carry on.
    let prometheus = prometheus::Client::new();
    if let Err(e) = &prometheus {
        tracing::error!(error = %e, "prometheus checks cannot query");
    }
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
            decide(&app, &prometheus, &mut gates).await;
        }
    }
    if app.leading.swap(false, Ordering::Relaxed)
        && let Err(e) = app.store.release_lead(&app.config.replica_id).await
    {
        tracing::warn!(error = %e, "could not release the decision lock");
    }
}

/// Moves every rollout on as its stage allows: a pending one once its pre-rollout
/// gate agrees, a shadowing one once its shadow report passes (or aborts it when the
/// report fails), a progressing one to its next step once the step has been held long
/// enough and, with an analysis, its runs passed (or rolls it back or pauses it as
/// they say), an experiment on its next complete interval as its run says.
/// Promotions and rollbacks the controller decides first pass their gates.
async fn decide(app: &AppState, prometheus: &PrometheusClient, gates: &mut GateCalls) {
    let rollouts = match app.store.rollouts().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read rollouts");
            return;
        }
    };
    for current in rollouts {
        let proposed = match propose(app, prometheus, &current).await {
            Ok(change) => change,
            Err(e) => {
                tracing::warn!(rollout = %current.name, error = %e, "analysis could not run");
                None
            }
        };
        let change = match proposed {
            Some(change) => match gate_of(&current, &change) {
                Some(gate) => through_gate(gates, &current, gate, change).await,
                None => Some(change),
            },
            None => None,
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
                crate::retrain::champion::on_change(app, &next, &event).await;
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

/// The change a rollout's stage calls for now, before any gate.
async fn propose(
    app: &AppState,
    prometheus: &PrometheusClient,
    current: &Rollout,
) -> Result<Option<Change>, StoreError> {
    let now = now_ms();
    Ok(match current.status {
        Status::Pending => current.start(
            &Attribution {
                actor: "controller".into(),
                reason: "pre-rollout gate passed".into(),
            },
            now,
        ),
        Status::Shadowing => shadow_stage(app, current).await?,
        Status::Progressing => match &current.analysis {
            None if current.experiment.is_some() => experiment::change(app, current).await,
            None => current.advance(now, None),
            Some(spec) => analyse(app, prometheus, current, spec).await?,
        },
        _ => None,
    })
}

/// The gate a change must pass first: starting a pending rollout, a promotion by the
/// controller, a rollback by the analysis. People's own actions and the guardrail's
/// rollbacks pass no gate.
fn gate_of(current: &Rollout, (next, event): &Change) -> Option<Gate> {
    let gate = if current.status == Status::Pending {
        Gate::PreRollout
    } else if next.status == Status::Promoted && event.actor == "controller" {
        Gate::ConfirmPromotion
    } else if next.status == Status::RolledBack && event.actor == "analysis" {
        Gate::PreRollback
    } else {
        return None;
    };
    current.gates.get(gate).map(|_| gate)
}

/// Asks `gate` about `change` (at most every `retry_seconds`): a 2xx answer lets the
/// change through with the answer in its event; any other holds the rollout, recorded
/// once per gate and status.
async fn through_gate(
    gates: &mut GateCalls,
    current: &Rollout,
    gate: Gate,
    (next, mut event): Change,
) -> Option<Change> {
    let hook = current.gates.get(gate)?;
    let now = now_ms();
    let key = (current.name.clone(), gate);
    if let Some(asked) = gates.asked_ms.get(&key)
        && now < asked.saturating_add(hook.retry_seconds.saturating_mul(1000))
    {
        return None;
    }
    gates.asked_ms.insert(key, now);
    let body = serde_json::json!({
        "gate": gate.as_str(),
        "rollout": current.name,
        "version": current.version,
        "status": current.status.as_str(),
        "step": current.step,
        "weights": weights(current),
        "next": {
            "kind": event.kind,
            "status": next.status.as_str(),
            "weights": weights(&next),
            "actor": event.actor,
            "reason": event.reason,
        },
    });
    let answer = ask(&gates.http, gate, hook, &body, now).await;
    tracing::info!(rollout = %current.name, gate = gate.as_str(), status = ?answer.status, "gate answered");
    if !answer.passed() {
        return current.hold(&answer, now);
    }
    event.reason = format!("{}; {}", event.reason, answer.describe());
    event.details["gate"] = serde_json::to_value(&answer).unwrap_or_default();
    Some((next, event))
}

fn weights(r: &Rollout) -> serde_json::Value {
    r.variants
        .iter()
        .map(|v| (v.name.clone(), serde_json::json!(v.weight)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The shadow stage: the shadow's report over the copies mirrored since the stage
/// began (from its first whole window) passes the rollout on to its first step, or
/// fails it and aborts the rollout; with too little data yet, it waits.
async fn shadow_stage(app: &AppState, rollout: &Rollout) -> Result<Option<Change>, StoreError> {
    let Some(variant) = rollout.shadow_variant() else {
        return Ok(None);
    };
    let window_ms = app.config.window_ms.max(1);
    let from = rollout.step_started_ms.div_ceil(window_ms) * window_ms;
    let windows = app
        .store
        .shadow_windows(&rollout.name, from, u64::MAX / 2)
        .await?;
    let Some(report) = reports(&windows, &rollout.shadow_gate)
        .into_iter()
        .find(|r| r.variant == variant)
    else {
        return Ok(None);
    };
    let by = |reason: String| Attribution {
        actor: "shadow_gate".into(),
        reason,
    };
    let now = now_ms();
    let change = match report.verdict {
        "pass" => {
            let agreement = report
                .agreement
                .rate
                .map_or_else(|| "-".to_owned(), |a| format!("{a:.4}"));
            let why = format!(
                "shadow gate passed: `{variant}` agreed on {agreement} of {} comparisons, {} errors and {} timeouts in {} copies",
                report.compared, report.errors, report.timeouts, report.ended
            );
            rollout.first_step(&by(why), now)
        }
        "fail" => {
            let why = format!("shadow gate failed: {}", report.reasons.join("; "));
            rollout.abort(&by(why), now).ok()
        }
        _ => None,
    };
    Ok(change.map(|(next, mut event)| {
        event.details["shadow"] = serde_json::to_value(&report).unwrap_or_default();
        (next, event)
    }))
}

/// Runs the analysis of the step in effect on the next interval once its telemetry is
/// complete, and returns the change its runs call for. Runs are stored once per
/// interval end, so a decision the store refused is taken again from the same runs.
async fn analyse(
    app: &AppState,
    prometheus: &PrometheusClient,
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
        let run = run_interval(app, prometheus, rollout, spec, step, (start, end)).await?;
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

/// The controller's Prometheus client, or why it has none.
type PrometheusClient = Result<prometheus::Client, String>;

/// One run: each variant's complete windows, sampled scores and prometheus figures in
/// the interval.
async fn run_interval(
    app: &AppState,
    prometheus: &PrometheusClient,
    rollout: &Rollout,
    spec: &AnalysisSpec,
    step: usize,
    (start, end): (u64, u64),
) -> Result<Run, StoreError> {
    let windows = app.store.windows(&rollout.name, start, end).await?;
    let scores = app.store.scores(&rollout.name, start, end).await?;
    let mut sides: Vec<(String, Side)> = rollout
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
    let context = QueryContext {
        client: prometheus,
        default_url: app.config.prometheus_url.as_deref(),
        rollout: &rollout.name,
        spec,
        end_ms: end,
    };
    query_prometheus(&context, &mut sides).await;
    Ok(judge(&rollout.name, Some(step), spec, (start, end), &sides))
}

/// What the prometheus checks of one run are asked with.
struct QueryContext<'a> {
    client: &'a PrometheusClient,
    default_url: Option<&'a str>,
    rollout: &'a str,
    spec: &'a AnalysisSpec,
    end_ms: u64,
}

/// Runs every prometheus check's query, concurrently, for each candidate and for the
/// baseline where a bound compares with it, and puts the answers in the sides, so
/// that [`judge`] stays pure. A side below `min_requests` is not asked: the run is
/// inconclusive without judging any check.
async fn query_prometheus(context: &QueryContext<'_>, sides: &mut [(String, Side)]) {
    let mut queries = tokio::task::JoinSet::new();
    for check in context.spec.checks.iter() {
        if check.metric != Metric::Prometheus {
            continue;
        }
        for (i, (variant, side)) in sides.iter().enumerate() {
            let needed = if i == 0 { check.compares() } else { true };
            if !needed || side.counts.requests < context.spec.min_requests.max(1) {
                continue;
            }
            let name = check.name();
            let ask = one_query(context, check, variant);
            queries.spawn(async move { (i, name, ask.await) });
        }
    }
    while let Some(joined) = queries.join_next().await {
        match joined {
            Ok((i, name, queried)) => {
                sides[i].1.queried.insert(name, queried);
            }
            Err(e) => tracing::warn!(error = %e, "a prometheus query task failed"),
        }
    }
}

/// One check's query for one variant, ready to run on its own task.
fn one_query(
    context: &QueryContext<'_>,
    check: &Check,
    variant: &str,
) -> impl std::future::Future<Output = Queried> + Send + 'static {
    let raw = check.query.clone().unwrap_or_default();
    let bindings = Bindings {
        rollout: context.rollout,
        variant,
        interval_seconds: context.spec.interval_seconds,
    };
    let query = prometheus::substitute(&raw, &bindings);
    let url = check
        .address
        .as_deref()
        .or(context.default_url)
        .map(str::to_owned);
    let client = context.client.clone();
    let at_ms = context.end_ms;
    async move {
        let query = match query {
            Ok(q) => q,
            Err(why) => {
                return Queried {
                    query: raw,
                    value: Err(why),
                };
            }
        };
        let value = match (url, client) {
            (Some(url), Ok(client)) => client.instant(&url, &query, at_ms).await,
            (None, _) => Err(
                "no Prometheus to ask: the check has no address and the scorer no --prometheus-url"
                    .to_owned(),
            ),
            (Some(_), Err(why)) => Err(why),
        };
        Queried { query, value }
    }
}
