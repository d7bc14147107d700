//! The monitor's loop. Every replica runs it; only the one holding the decision lock
//! works: it joins new feedback to samples, judges each watched version's windows
//! that are due (a time window once the telemetry of its end is complete, a count
//! window once its samples are in), each once, and stores them with the events of
//! the findings they raise or clear, then the realised performance of each version on
//! its labelled window. A new leader carries on from the stored windows.

use std::sync::atomic::Ordering;
use std::time::Duration;

use outrider_model::profile::ModelProfile;
use tokio::sync::watch;

use super::findings::{EventKind, Finding, ModelEvent, changes, hysteresis};
use super::judge::{MonitoredSample, Span, WindowReport, judge};
use super::realised::{self, RealisedPerformance};
use super::settings::WindowBy;
use super::watched::{Source, versions};
use crate::api::{AppState, now_ms};
use crate::completeness::completeness;
use crate::store::{SampleRange, StoreError};

const TICK: Duration = Duration::from_secs(1);
/// Windows judged per version per tick, so a long backlog does not hold the loop.
const WINDOWS_PER_TICK: usize = 20;
/// Feedback events joined per round.
const LABELS_PER_ROUND: u64 = 5_000;
/// How often the realised performance is computed again.
const REALISED_EVERY_MS: u64 = 10_000;

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    if let Some(why) = app.monitor.off() {
        tracing::warn!("{why}");
        return;
    }
    tracing::info!(registry = ?app.monitor.registry(), "model monitoring on");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut realised_at = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if !app.leading.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = round(&app, &mut realised_at).await {
            tracing::warn!(error = %e, "model monitoring could not run");
        }
    }
}

/// One watched version and where its samples come from.
pub struct Target {
    pub model: String,
    pub version: u64,
    pub sources: Vec<Source>,
}

/// The versions watched now.
pub async fn targets(app: &AppState) -> Result<Vec<Target>, StoreError> {
    let rollouts = app.store.rollouts().await?;
    Ok(versions(&rollouts)
        .into_iter()
        .map(|((model, version), sources)| Target {
            model,
            version,
            sources,
        })
        .collect())
}

async fn round(app: &AppState, realised_at: &mut u64) -> Result<(), StoreError> {
    let delay = app.monitor.settings.performance.label_delay_seconds * 1000;
    loop {
        let joined = app
            .store
            .label_samples(now_ms().saturating_sub(delay), LABELS_PER_ROUND)
            .await?;
        if joined.feedback < LABELS_PER_ROUND {
            break;
        }
    }
    let evaluate_realised = now_ms() >= *realised_at + REALISED_EVERY_MS;
    for target in targets(app).await? {
        let profile = match app
            .monitor
            .profile(&target.model, target.version, now_ms())
            .await
        {
            Ok(p) => p,
            Err(_) => continue,
        };
        judge_due(app, &target, &profile).await?;
        if evaluate_realised {
            realised_performance(app, &target, &profile).await?;
        }
    }
    if evaluate_realised {
        *realised_at = now_ms();
    }
    Ok(())
}

/// How far every rollout feeding the target has complete telemetry.
async fn complete_through(app: &AppState, target: &Target) -> Result<u64, StoreError> {
    let mut through = u64::MAX;
    let mut rollouts: Vec<&str> = target.sources.iter().map(|s| s.rollout.as_str()).collect();
    rollouts.dedup();
    for rollout in rollouts {
        let marks = app.store.workers(rollout).await?;
        let c = completeness(
            &marks,
            now_ms(),
            app.started_ms,
            app.config.worker_timeout_ms,
        );
        through = through.min(c.complete_through_ms);
    }
    Ok(through)
}

async fn read(
    app: &AppState,
    target: &Target,
    range: SampleRange,
) -> Result<Vec<MonitoredSample>, StoreError> {
    let mut all = Vec::new();
    for s in &target.sources {
        all.extend(
            app.store
                .monitored_samples(&s.rollout, &s.variant, range)
                .await?,
        );
    }
    all.sort_by_key(|s| s.id);
    Ok(all)
}

/// The next window after `last` (or the first one) and its samples; `None` while it
/// is not due yet.
async fn next_window(
    app: &AppState,
    target: &Target,
    last: Option<&WindowReport>,
) -> Result<Option<(Span, Vec<MonitoredSample>)>, StoreError> {
    let spec = app.monitor.settings.window;
    let (width, slide) = (spec.width_key(), spec.slide_key());
    match spec.by {
        WindowBy::Time => {
            let through = complete_through(app, target).await?;
            let mut end = match last {
                Some(w) => w.end + slide,
                None => match first_at_or_after(app, target, 0).await? {
                    Some(first) => spec.first_end_holding(first),
                    None => return Ok(None),
                },
            };
            loop {
                if end > through {
                    return Ok(None);
                }
                let (start, _) = spec.span_ending(end);
                let samples = read(
                    app,
                    target,
                    SampleRange::Time {
                        from_ms: start,
                        to_ms: end,
                    },
                )
                .await?;
                if !samples.is_empty() {
                    return Ok(Some((
                        Span {
                            by: WindowBy::Time,
                            start,
                            end,
                        },
                        samples,
                    )));
                }
                // No traffic: skip to the first window that has some.
                match first_at_or_after(app, target, end).await? {
                    Some(next) => end = spec.first_end_holding(next).max(end + slide),
                    None => return Ok(None),
                }
            }
        }
        WindowBy::Count => {
            let after = last.map_or(0, |w| w.end);
            let fresh = read(
                app,
                target,
                SampleRange::After {
                    id: after,
                    limit: slide,
                },
            )
            .await?;
            if (fresh.len() as u64) < slide {
                return Ok(None);
            }
            let end = fresh[slide as usize - 1].id;
            let mut window = read(
                app,
                target,
                SampleRange::Through {
                    id: end,
                    limit: width,
                },
            )
            .await?;
            // Each source gave its newest `width`; the window is the newest `width` of all.
            let keep = window.len().saturating_sub(width as usize);
            window.drain(..keep);
            let start = window.first().map_or(after, |s| s.id - 1);
            Ok(Some((
                Span {
                    by: WindowBy::Count,
                    start,
                    end,
                },
                window,
            )))
        }
    }
}

async fn first_at_or_after(
    app: &AppState,
    target: &Target,
    from_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let mut first: Option<u64> = None;
    for s in &target.sources {
        if let Some(at) = app
            .store
            .next_sample_ms(&s.rollout, &s.variant, from_ms)
            .await?
        {
            first = Some(first.map_or(at, |f| f.min(at)));
        }
    }
    Ok(first)
}

/// Judges the target's due windows, each once.
async fn judge_due(
    app: &AppState,
    target: &Target,
    profile: &ModelProfile,
) -> Result<(), StoreError> {
    let settings = &app.monitor.settings;
    let keep = (settings.hysteresis.windows * 4 + 1) as u64;
    let mut history = app
        .store
        .drift_windows(&target.model, target.version, keep)
        .await?;
    for _ in 0..WINDOWS_PER_TICK {
        let Some((span, samples)) = next_window(app, target, history.last()).await? else {
            break;
        };
        let now = now_ms();
        let mut report = judge(profile, target.version, span, &samples, settings, now);
        report.sources = target.sources.clone();
        let previous: Vec<Finding> = history
            .last()
            .map(|w| w.findings.clone())
            .unwrap_or_default();
        let mut all: Vec<&WindowReport> = history.iter().collect();
        all.push(&report);
        let (findings, _) = hysteresis(&all, &settings.hysteresis, &previous, now);
        report.findings = findings;
        let events = changes(&previous, &report);
        if app.store.add_drift_window(&report, &events).await? {
            app.metrics.observe_window_judged(&report);
            app.monitor.publish(&events);
            for e in &events {
                tracing::warn!(model = %e.model, version = e.version, kind = %e.kind, finding = %e.finding.key.kind, subject = %e.finding.key.subject, detail = %e.finding.detail, "model finding");
            }
            tracing::info!(model = %report.model, version = report.version, end = report.end, samples = report.samples, drifted = ?report.dataset.drifted, "window judged");
            history.push(report);
        } else {
            // Another leader stored it meanwhile: read what it judged.
            history = app
                .store
                .drift_windows(&target.model, target.version, keep)
                .await?;
        }
        if history.len() as u64 > keep {
            history.remove(0);
        }
    }
    Ok(())
}

/// The realised performance on the labelled window, stored with the events of its
/// findings.
async fn realised_performance(
    app: &AppState,
    target: &Target,
    profile: &ModelProfile,
) -> Result<(), StoreError> {
    let Some(reference) = &profile.performance else {
        return Ok(());
    };
    let limits = &app.monitor.settings.performance;
    let now = now_ms();
    let from = now.saturating_sub(limits.labelled_window_seconds * 1000);
    let mut rows = Vec::new();
    for s in &target.sources {
        rows.extend(
            app.store
                .labelled(
                    &s.rollout,
                    &s.variant,
                    SampleRange::Time {
                        from_ms: from,
                        to_ms: now,
                    },
                )
                .await?,
        );
    }
    let previous = app
        .store
        .realised()
        .await?
        .into_iter()
        .find(|p| p.model == target.model && p.version == target.version);
    let mut performance: RealisedPerformance = realised::evaluate(
        (&target.model, target.version),
        reference,
        &rows,
        (from, now),
        limits,
        now,
    );
    let before = previous.map(|p| p.findings).unwrap_or_default();
    for f in &mut performance.findings {
        if let Some(old) = before.iter().find(|o| o.key == f.key) {
            f.since_ms = old.since_ms;
        }
    }
    let events = realised_changes(&before, &performance);
    app.store.put_realised(&performance, &events).await?;
    app.monitor.publish(&events);
    Ok(())
}

fn realised_changes(before: &[Finding], after: &RealisedPerformance) -> Vec<ModelEvent> {
    let event = |kind, finding: &Finding| ModelEvent {
        id: 0,
        model: after.model.clone(),
        version: after.version,
        kind,
        finding: finding.clone(),
        window_end: after.to_ms,
        at_ms: after.evaluated_ms,
    };
    let now = &after.findings;
    let raised = now
        .iter()
        .filter(|f| !before.iter().any(|o| o.key == f.key))
        .map(|f| event(EventKind::Raised, f));
    let cleared = before
        .iter()
        .filter(|f| !now.iter().any(|n| n.key == f.key))
        .map(|f| event(EventKind::Cleared, f));
    raised.chain(cleared).collect()
}
