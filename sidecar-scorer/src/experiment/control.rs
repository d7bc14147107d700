//! What the deciding replica does for an experiment on each tick: once the next
//! interval's telemetry is complete (and one telemetry window more, so that requests
//! still in flight at the interval's end, sampled when they are answered, are in),
//! it sums the exposures and feedback since the
//! experiment started, judges them ([`super::judge`]), stores the run (once per
//! interval end, whichever replica leads), and returns the rollout change the run's
//! verdict calls for, with the run in the event's `details.experiment`.
//!
//! An experiment starts at the first whole telemetry window after the rollout began
//! or was last resumed: a resume (after a sample ratio mismatch, say) starts it
//! afresh, so counts taken under a broken split are never judged again.

use crate::api::{AppState, now_ms};
use crate::completeness::completeness;
use crate::metrics::VerdictLabels;
use crate::rollout::{Attribution, Change, Rollout, Status};
use crate::store::StoreError;

use super::judge::{Arm, ExperimentRun, Verdict, judge};
use super::{ExperimentSpec, Unit};

/// The change an experiment calls for now, if any. Errors are logged: the next tick
/// tries again.
pub async fn change(app: &AppState, rollout: &Rollout) -> Option<Change> {
    let spec = rollout.experiment.as_ref()?;
    match next(app, rollout, spec).await {
        Ok(change) => change,
        Err(e) => {
            tracing::warn!(rollout = %rollout.name, error = %e, "experiment could not run");
            None
        }
    }
}

/// Where the experiment's data start: the first whole window after its start.
pub fn start_ms(rollout: &Rollout, window_ms: u64) -> u64 {
    let window_ms = window_ms.max(1);
    rollout.step_started_ms.div_ceil(window_ms) * window_ms
}

async fn next(
    app: &AppState,
    rollout: &Rollout,
    spec: &ExperimentSpec,
) -> Result<Option<Change>, StoreError> {
    if rollout.status != Status::Progressing {
        return Ok(None);
    }
    let start = start_ms(rollout, app.config.window_ms);
    let mut latest = app
        .store
        .experiment_runs(&rollout.name, 1)
        .await?
        .pop()
        .filter(|r| r.start_ms == start);
    let window_ms = app.config.window_ms.max(1);
    let end = latest.as_ref().map_or(start, |r| r.end_ms) + spec.interval_ms();
    let marks = app.store.workers(&rollout.name).await?;
    let complete = completeness(
        &marks,
        now_ms(),
        app.started_ms,
        app.config.worker_timeout_ms,
    );
    if complete.complete_through_ms >= end + window_ms {
        let judged = latest.as_ref().map_or(0, |r| r.judged);
        let run = look(app, rollout, spec, (start, end), judged).await?;
        tracing::info!(rollout = %rollout.name, verdict = run.verdict.as_str(), reason = %run.reason, "experiment run");
        if app.store.add_experiment_run(&run).await? {
            app.metrics
                .experiment_runs
                .get_or_create(&VerdictLabels {
                    rollout: rollout.name.clone(),
                    verdict: run.verdict.as_str().to_owned(),
                })
                .inc();
        }
        latest = Some(run);
    }
    // A run decides once: a change made to the rollout since (by a person, or this
    // decision stored) supersedes it. A decision the store refused is taken again.
    Ok(latest
        .filter(|run| rollout.updated_ms <= run.computed_ms)
        .and_then(|run| decision(rollout, &run, now_ms())))
}

/// Sums the experiment's data from its start to `end` and judges them.
async fn look(
    app: &AppState,
    rollout: &Rollout,
    spec: &ExperimentSpec,
    (start, end): (u64, u64),
    judged: u32,
) -> Result<ExperimentRun, StoreError> {
    let computed_ms = now_ms();
    let sums = app
        .store
        .exposure_sums(&rollout.name, spec.unit, start, end)
        .await?;
    // By request, SRM counts every request the filters routed (the telemetry
    // windows), not only the sampled ones; by user, the users themselves.
    let windows = match spec.unit {
        Unit::Request => app.store.windows(&rollout.name, start, end).await?,
        Unit::User => Vec::new(),
    };
    let arms: Vec<Arm> = rollout
        .variants
        .iter()
        .map(|v| {
            let sums = sums
                .iter()
                .find(|s| s.variant == v.name)
                .cloned()
                .unwrap_or_else(|| crate::store::ExposureSums {
                    variant: v.name.clone(),
                    ..Default::default()
                });
            let srm_count = match spec.unit {
                Unit::Request => windows
                    .iter()
                    .filter(|w| w.variant == v.name)
                    .map(|w| w.requests)
                    .sum(),
                Unit::User => sums.exposures,
            };
            Arm {
                sums,
                weight: v.weight,
                srm_count,
            }
        })
        .collect();
    Ok(judge(
        &rollout.name,
        spec,
        (start, end),
        &arms,
        judged,
        computed_ms,
    ))
}

/// The change a run's verdict calls for, with the run as its evidence: a mismatch
/// pauses, a lost guardrail rolls back, a winner is promoted and the experiment
/// concluded, no winner concludes on the control. The actor is `experiment`.
pub fn decision(rollout: &Rollout, run: &ExperimentRun, now_ms: u64) -> Option<Change> {
    if rollout.status != Status::Progressing {
        return None;
    }
    let by = |what: &str| Attribution {
        actor: "experiment".into(),
        reason: format!("{what}: {}", run.reason),
    };
    let (next, mut event) = match run.verdict {
        Verdict::SampleRatioMismatch => rollout.pause(&by("paused"), now_ms).ok()?,
        Verdict::GuardrailLost => rollout.rollback(&by("rolled back"), now_ms).ok()?,
        Verdict::Winner => {
            let winner = run.winner.as_deref()?;
            let at = rollout.variants.iter().position(|v| v.name == winner)?;
            rollout.conclude(at, &by(&format!("concluded, {winner} promoted")), now_ms)
        }
        Verdict::NoWinner => {
            let control = &rollout.variants.first()?.name;
            rollout.conclude(0, &by(&format!("concluded, {control} kept")), now_ms)
        }
        Verdict::NotJudged | Verdict::Continue => return None,
    };
    event.details["experiment"] = serde_json::to_value(run).unwrap_or_default();
    Some((next, event))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::experiment::judge::judge;
    use crate::rollout::CreateRequest;
    use crate::store::ExposureSums;

    fn experiment() -> Rollout {
        let req: CreateRequest = serde_json::from_value(json!({
            "name": "shop", "mode": "ab",
            "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
            "experiment": {"interval_seconds": 5, "max_intervals": 3, "metrics": [
                {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"},
                {"name": "revenue", "kind": "revenue", "direction": "increase", "role": "guardrail"}]}
        }))
        .unwrap();
        Rollout::create(req, &Attribution::default(), 1_234)
            .unwrap()
            .0
    }

    /// A run of `experiment()` on these (exposures, conversions, value sum, value
    /// sum of squares, SRM count) per variant.
    fn run_of(r: &Rollout, arms: [(u64, u64, f64, f64, u64); 2], judged: u32) -> ExperimentRun {
        let arms: Vec<Arm> = r
            .variants
            .iter()
            .zip(arms)
            .map(|(v, (n, c, s, ss, srm))| Arm {
                sums: ExposureSums {
                    variant: v.name.clone(),
                    exposures: n,
                    conversions: c,
                    value_sum: s,
                    value_sum_sq: ss,
                },
                weight: v.weight,
                srm_count: srm,
            })
            .collect();
        let spec = r.experiment.as_ref().unwrap();
        judge(&r.name, spec, (5_000, 15_000), &arms, judged, 16_000)
    }

    fn weights(r: &Rollout) -> Vec<f64> {
        r.variants.iter().map(|v| v.weight).collect()
    }

    #[test]
    fn the_experiment_starts_at_the_first_whole_window() {
        let r = experiment();
        assert_eq!(start_ms(&r, 1_000), 2_000);
        assert_eq!(start_ms(&r, 5_000), 5_000);
    }

    #[test]
    fn a_winner_is_promoted_and_the_experiment_concluded() {
        let r = experiment();
        let run = run_of(
            &r,
            [(1000, 100, 0.0, 0.0, 1000), (1000, 200, 0.0, 0.0, 1000)],
            0,
        );
        let (next, event) = decision(&r, &run, 20_000).unwrap();
        assert_eq!(
            (next.status, weights(&next)),
            (Status::Concluded, vec![0.0, 100.0])
        );
        assert_eq!(
            (event.kind.as_str(), event.actor.as_str()),
            ("concluded", "experiment")
        );
        assert!(
            event.reason.starts_with("concluded, b promoted: b wins"),
            "{}",
            event.reason
        );
        assert_eq!(event.details["experiment"]["winner"], "b");
        assert_eq!(event.details["weights"]["b"], 100.0);
        assert!(
            decision(&next, &run, 21_000).is_none(),
            "concluded for good"
        );
    }

    #[test]
    fn each_verdict_has_its_change() {
        let r = experiment();
        let mismatch = run_of(&r, [(0, 0, 0.0, 0.0, 450), (0, 0, 0.0, 0.0, 560)], 0);
        assert_eq!(mismatch.verdict, Verdict::SampleRatioMismatch);
        let (paused, event) = decision(&r, &mismatch, 20_000).unwrap();
        assert_eq!(
            (paused.status, event.actor.as_str()),
            (Status::Paused, "experiment")
        );
        assert!(
            event
                .reason
                .starts_with("paused: sample ratio mismatch: requests a=450 b=560")
        );
        assert_eq!(event.details["experiment"]["srm"]["mismatch"], true);
        assert!(
            decision(&paused, &mismatch, 21_000).is_none(),
            "a paused rollout stays"
        );

        let lost = run_of(
            &r,
            [
                (1000, 100, 3000.0, 90_000.0, 1000),
                (1000, 100, 1000.0, 10_000.0, 1000),
            ],
            0,
        );
        let (back, event) = decision(&r, &lost, 20_000).unwrap();
        assert_eq!(
            (back.status, weights(&back)),
            (Status::RolledBack, vec![100.0, 0.0])
        );
        assert_eq!(event.details["experiment"]["verdict"], "guardrail_lost");

        let even = [(1000, 100, 0.0, 0.0, 1000), (1000, 101, 0.0, 0.0, 1000)];
        assert!(decision(&r, &run_of(&r, even, 0), 20_000).is_none());
        let (done, event) = decision(&r, &run_of(&r, even, 2), 20_000).unwrap();
        assert_eq!(
            (done.status, weights(&done)),
            (Status::Concluded, vec![100.0, 0.0])
        );
        assert!(
            event
                .reason
                .starts_with("concluded, a kept: no winner after 3"),
            "{}",
            event.reason
        );
        let few = run_of(&r, [(10, 1, 0.0, 0.0, 10), (10, 9, 0.0, 0.0, 10)], 0);
        assert!(decision(&r, &few, 20_000).is_none());
    }
}
