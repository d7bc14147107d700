//! Rollout decisions. Every replica runs this loop, but only the one that holds the
//! store's decision lock (a PostgreSQL advisory lock, or a lease row in SQLite)
//! decides. When it dies, a PostgreSQL lock frees with its session and another replica
//! takes over within a tick; a SQLite lease lasts until it expires
//! ([`crate::store::sqlite::LEASE_MS`]), unless the same replica id comes back first.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::analysis::{
    AnalysisSpec, Check, Decision, Metric, Outcome, Queried, Run, Side, decide as decide_runs,
    judge,
};
use crate::api::{AppState, now_ms};
use crate::completeness::completeness;
use crate::metrics::RunLabels;
use crate::prometheus::{self, Bindings};
use crate::rollout::{Attribution, Change, Rollout, Status};
use crate::store::StoreError;

const TICK: Duration = Duration::from_millis(500);

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
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
            decide(&app, &prometheus).await;
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
/// pauses as its runs say.
async fn decide(app: &AppState, prometheus: &PrometheusClient) {
    let rollouts = match app.store.rollouts().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read rollouts");
            return;
        }
    };
    for current in rollouts {
        let change = match &current.analysis {
            None => current.advance(now_ms(), None),
            Some(spec) => match analyse(app, prometheus, &current, spec).await {
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
    prometheus: &PrometheusClient,
    rollout: &Rollout,
    spec: &AnalysisSpec,
) -> Result<Option<Change>, StoreError> {
    if rollout.status != Status::Active {
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
