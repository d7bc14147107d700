//! One look at an experiment: from each variant's sufficient statistics (exposures,
//! conversions, Σ and Σ² of the value) to a run with every comparison and a verdict.
//! Pure: the statistics are the engine's (`outrider_stats::ab`), the store's sums come
//! from [`super::control`].
//!
//! In order, a run:
//! 1. tests the sample ratio (chi-square of the counts against the weights); a
//!    mismatch below `srm_alpha` is the verdict, nothing else is judged on counts that
//!    broke the design;
//! 2. judges nothing while a variant has fewer than `min_exposures` exposures;
//! 3. compares every treatment with the control (the first variant) on every metric,
//!    and adjusts all the p-values together by Holm;
//! 4. a guardrail significantly worse for a treatment loses the experiment; else a
//!    treatment whose primary is significantly better wins (the best one, if
//!    several); else, after `max_intervals` judged intervals, nobody won.

use std::collections::BTreeMap;

use outrider_stats::ab::holm::holm;
use outrider_stats::ab::srm::srm;
use outrider_stats::ab::{AbRequest, Comparison, Correction, TestKind, VariantStats, analyze};
use serde::{Deserialize, Serialize};

use super::{Direction, ExperimentSpec, MetricKind, MetricSpec, Role, Unit};
use crate::store::ExposureSums;

/// The sample size (both arms) at which the confidence sequence is tightest: the
/// engine's default.
const TUNING: f64 = 5000.0;

/// One variant as the judge takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// Exposures and their feedback since the experiment started.
    pub sums: ExposureSums,
    /// The planned share: the variant's weight (percent).
    pub weight: f64,
    /// What the sample ratio test counts for the variant.
    pub srm_count: u64,
}

/// How a run came out, and what it asks of the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The variants' counts are not what the weights promise: pause.
    SampleRatioMismatch,
    /// Too few exposures (or nothing the statistics could take): wait.
    NotJudged,
    /// Judged, nothing decided yet: go on.
    Continue,
    /// A treatment won: promote it and conclude.
    Winner,
    /// A treatment is significantly worse on a guardrail: roll back.
    GuardrailLost,
    /// `max_intervals` judged without a winner: conclude on the control.
    NoWinner,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::SampleRatioMismatch => "sample_ratio_mismatch",
            Verdict::NotJudged => "not_judged",
            Verdict::Continue => "continue",
            Verdict::Winner => "winner",
            Verdict::GuardrailLost => "guardrail_lost",
            Verdict::NoWinner => "no_winner",
        }
    }
}

/// What a significant comparison says, in the metric's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Significant after Holm, in the metric's good direction.
    Better,
    /// Significant after Holm, in the bad direction.
    Worse,
    NotSignificant,
}

/// One variant in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmResult {
    pub variant: String,
    /// Its weight as a share of 1: what SRM expects.
    pub expected_share: f64,
    pub exposures: u64,
    /// What SRM counted (requests, or users: see [`SrmCheck::counted`]).
    pub srm_count: u64,
    pub conversions: u64,
    pub value_sum: f64,
    pub value_sum_sq: f64,
    /// Each metric's figure: the conversion rate, or the mean value per exposure.
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// The sample ratio test of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmCheck {
    /// `requests` (every request, from the telemetry windows) or `users`.
    pub counted: String,
    pub statistic: f64,
    pub p_value: f64,
    pub alpha: f64,
    pub mismatch: bool,
}

/// A treatment against the control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub metric: String,
    pub kind: MetricKind,
    pub role: Role,
    pub direction: Direction,
    pub variant: String,
    pub control: String,
    /// The control's and the treatment's rate (conversion) or mean (revenue).
    pub control_value: f64,
    pub variant_value: f64,
    /// Treatment minus control, and its interval at `alpha` (a confidence sequence
    /// when the experiment is sequential; not Holm-adjusted).
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// `difference / control_value`, and the interval divided the same way (the
    /// control's own noise is not in it); null when the control's figure is 0.
    pub lift: Option<f64>,
    pub lift_low: Option<f64>,
    pub lift_high: Option<f64>,
    pub p_value: f64,
    /// Holm-adjusted over every comparison of the run.
    pub p_value_adjusted: f64,
    pub test: TestKind,
    pub effect: Effect,
}

/// One look at an experiment: cumulative from its start to `end_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRun {
    pub rollout: String,
    /// The exposures judged were sampled in `[start_ms, end_ms)` (filter clocks).
    pub start_ms: u64,
    pub end_ms: u64,
    /// When the run was taken (the scorer's clock): the feedback received by then is
    /// in it.
    pub computed_ms: u64,
    /// Intervals judged so far, this one included (not-judged runs do not count).
    pub judged: u32,
    pub unit: Unit,
    pub variants: Vec<ArmResult>,
    pub srm: SrmCheck,
    pub comparisons: Vec<MetricComparison>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    pub reason: String,
}

/// A p-value as people read it: four decimals, or scientific when smaller.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
}

/// A metric's figure: a rate in percent, a mean as it is.
fn figure_text(kind: MetricKind, v: f64) -> String {
    match kind {
        MetricKind::Conversion => format!("{:.2}%", v * 100.0),
        MetricKind::Revenue => format!("{v:.4}"),
    }
}

fn signed_percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:+.1}%", v * 100.0))
}

impl MetricComparison {
    /// `converted b 20.00% vs 10.00% (+100.0% [+60.2%, +139.8%]), p 1.20e-5 (Holm 2.40e-5)`
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} vs {} ({} [{}, {}]), p {} (Holm {})",
            self.metric,
            self.variant,
            figure_text(self.kind, self.variant_value),
            figure_text(self.kind, self.control_value),
            signed_percent(self.lift),
            signed_percent(self.lift_low),
            signed_percent(self.lift_high),
            p_text(self.p_value),
            p_text(self.p_value_adjusted)
        )
    }
}

fn arm_result(arm: &Arm, share: f64, metrics: &[MetricSpec]) -> ArmResult {
    let s = &arm.sums;
    let per = |x: f64| (s.exposures > 0).then(|| x / s.exposures as f64);
    ArmResult {
        variant: s.variant.clone(),
        expected_share: share,
        exposures: s.exposures,
        srm_count: arm.srm_count,
        conversions: s.conversions,
        value_sum: s.value_sum,
        value_sum_sq: s.value_sum_sq,
        metrics: metrics
            .iter()
            .map(|m| {
                let x = match m.kind {
                    MetricKind::Conversion => s.conversions as f64,
                    MetricKind::Revenue => s.value_sum,
                };
                (m.name.clone(), per(x))
            })
            .collect(),
    }
}

/// The engine's comparisons of every treatment with the control on one metric.
fn compare(
    spec: &ExperimentSpec,
    metric: &MetricSpec,
    arms: &[Arm],
) -> Result<Vec<Comparison>, String> {
    let request = AbRequest {
        metric: match metric.kind {
            MetricKind::Conversion => outrider_stats::ab::MetricKind::Binomial,
            MetricKind::Revenue => outrider_stats::ab::MetricKind::Continuous,
        },
        alpha: spec.alpha,
        control: None,
        correction: Correction::None,
        sequential: spec.sequential,
        tuning: TUNING,
        variants: arms
            .iter()
            .map(|a| {
                let s = &a.sums;
                let (sum, sum_sq) = match metric.kind {
                    MetricKind::Conversion => (s.conversions as f64, None),
                    MetricKind::Revenue => (s.value_sum, Some(s.value_sum_sq)),
                };
                VariantStats {
                    name: s.variant.clone(),
                    n: s.exposures,
                    sum,
                    sum_sq,
                    expected_share: None,
                }
            })
            .collect(),
    };
    analyze(&request)
        .map(|report| report.comparisons)
        .map_err(|e| format!("{}: {e}", metric.name))
}

/// The run of an experiment over `[start_ms, end_ms)`. `arms` are the rollout's
/// variants in order, the control first; `judged_before` counts the intervals judged
/// before this one.
pub fn judge(
    rollout: &str,
    spec: &ExperimentSpec,
    (start_ms, end_ms): (u64, u64),
    arms: &[Arm],
    judged_before: u32,
    computed_ms: u64,
) -> ExperimentRun {
    let total_weight: f64 = arms.iter().map(|a| a.weight).sum();
    let shares: Vec<f64> = arms
        .iter()
        .map(|a| {
            if total_weight > 0.0 {
                a.weight / total_weight
            } else {
                0.0
            }
        })
        .collect();
    let counts: Vec<u64> = arms.iter().map(|a| a.srm_count).collect();
    // A weight taken to 0 by hand leaves nothing to expect: no test, and no look.
    let unweighted: Vec<&str> = arms
        .iter()
        .filter(|a| a.weight <= 0.0)
        .map(|a| a.sums.variant.as_str())
        .collect();
    let test = if unweighted.is_empty() {
        srm(&counts, &shares)
    } else {
        srm(&[], &[])
    };
    let mut run = ExperimentRun {
        rollout: rollout.to_owned(),
        start_ms,
        end_ms,
        computed_ms,
        judged: judged_before,
        unit: spec.unit,
        variants: arms
            .iter()
            .zip(&shares)
            .map(|(a, s)| arm_result(a, *s, &spec.metrics))
            .collect(),
        srm: SrmCheck {
            counted: match spec.unit {
                Unit::Request => "requests",
                Unit::User => "users",
            }
            .to_owned(),
            statistic: test.statistic,
            p_value: test.p_value,
            alpha: spec.srm_alpha,
            mismatch: test.p_value < spec.srm_alpha,
        },
        comparisons: Vec::new(),
        verdict: Verdict::NotJudged,
        winner: None,
        reason: String::new(),
    };
    if !unweighted.is_empty() {
        run.reason = format!(
            "{} without a weight: an experiment compares variants that all get traffic; set the weights back",
            unweighted.join(", ")
        );
        return run;
    }
    if run.srm.mismatch {
        let observed: Vec<String> = arms
            .iter()
            .map(|a| format!("{}={}", a.sums.variant, a.srm_count))
            .collect();
        let expected: Vec<String> = arms
            .iter()
            .zip(&shares)
            .map(|(a, s)| format!("{} {:.2}%", a.sums.variant, s * 100.0))
            .collect();
        run.verdict = Verdict::SampleRatioMismatch;
        run.reason = format!(
            "sample ratio mismatch: {} {} where the weights expect {}; chi-square {:.2}, p {} < srm_alpha {}",
            run.srm.counted,
            observed.join(" "),
            expected.join(" "),
            test.statistic,
            p_text(test.p_value),
            spec.srm_alpha
        );
        return run;
    }
    let short: Vec<String> = arms
        .iter()
        .filter(|a| a.sums.exposures < spec.min_exposures)
        .map(|a| format!("{} {}", a.sums.variant, a.sums.exposures))
        .collect();
    if !short.is_empty() {
        run.reason = format!(
            "too few exposures to judge ({}; min_exposures {})",
            short.join(", "),
            spec.min_exposures
        );
        return run;
    }
    let mut comparisons = Vec::new();
    for metric in &spec.metrics {
        match compare(spec, metric, arms) {
            Ok(list) => comparisons.extend(list.into_iter().map(|c| (metric, c))),
            Err(why) => {
                run.reason = format!("the statistics could not run: {why}");
                return run;
            }
        }
    }
    let raw: Vec<f64> = comparisons.iter().map(|(_, c)| c.p_value).collect();
    run.comparisons = comparisons
        .into_iter()
        .zip(holm(&raw))
        .map(|((metric, c), adjusted)| {
            let good = match metric.direction {
                Direction::Increase => c.difference > 0.0,
                Direction::Decrease => c.difference < 0.0,
            };
            let scaled = |x: f64| (c.mean_control != 0.0).then(|| x / c.mean_control);
            let (lift_low, lift_high) = match (scaled(c.ci_low), scaled(c.ci_high)) {
                (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                _ => (None, None),
            };
            MetricComparison {
                metric: metric.name.clone(),
                kind: metric.kind,
                role: metric.role,
                direction: metric.direction,
                variant: c.variant,
                control: c.control,
                control_value: c.mean_control,
                variant_value: c.mean_variant,
                difference: c.difference,
                ci_low: c.ci_low,
                ci_high: c.ci_high,
                lift: c.relative_difference,
                lift_low,
                lift_high,
                p_value: c.p_value,
                p_value_adjusted: adjusted,
                test: c.test,
                effect: match (adjusted < spec.alpha, good) {
                    (false, _) => Effect::NotSignificant,
                    (true, true) => Effect::Better,
                    (true, false) => Effect::Worse,
                },
            }
        })
        .collect();
    run.judged = judged_before.saturating_add(1);
    decide(spec, &mut run);
    run
}

/// The verdict of a judged run, from its comparisons.
fn decide(spec: &ExperimentSpec, run: &mut ExperimentRun) {
    let lost: Vec<String> = run
        .comparisons
        .iter()
        .filter(|c| c.role == Role::Guardrail && c.effect == Effect::Worse)
        .map(MetricComparison::describe)
        .collect();
    if !lost.is_empty() {
        run.verdict = Verdict::GuardrailLost;
        run.reason = format!(
            "a guardrail is significantly worse (alpha {}): {}",
            spec.alpha,
            lost.join("; ")
        );
        return;
    }
    let primary = spec.primary().map(|m| m.name.as_str());
    let primaries = || {
        run.comparisons
            .iter()
            .filter(|c| Some(c.metric.as_str()) == primary)
    };
    // The treatment that gains most in the primary's good direction.
    let best = primaries()
        .filter(|c| c.effect == Effect::Better)
        .max_by(|a, b| {
            let gain = |c: &MetricComparison| match c.direction {
                Direction::Increase => c.difference,
                Direction::Decrease => -c.difference,
            };
            gain(a).total_cmp(&gain(b))
        });
    if let Some(best) = best {
        run.verdict = Verdict::Winner;
        run.winner = Some(best.variant.clone());
        run.reason = format!(
            "{} wins: {} < alpha {}, and no guardrail is significantly worse",
            best.variant,
            best.describe(),
            spec.alpha
        );
        return;
    }
    let standing: Vec<String> = primaries().map(MetricComparison::describe).collect();
    if run.judged >= spec.max_intervals {
        run.verdict = Verdict::NoWinner;
        run.reason = format!(
            "no winner after {} judged intervals (max_intervals {}): {}",
            run.judged,
            spec.max_intervals,
            standing.join("; ")
        );
    } else {
        run.verdict = Verdict::Continue;
        run.reason = format!(
            "no winner yet after {} of at most {} judged intervals: {}",
            run.judged,
            spec.max_intervals,
            standing.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use outrider_stats::ab::sequential::confidence_sequence;
    use outrider_stats::ab::welch::{ArmMoments, welch};
    use outrider_stats::ab::ztest::two_proportion;
    use serde_json::json;

    use super::*;

    fn spec(extra: serde_json::Value) -> ExperimentSpec {
        let mut json = json!({"interval_seconds": 10, "max_intervals": 5, "min_exposures": 100,
            "metrics": [
                {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"},
                {"name": "revenue", "kind": "revenue", "direction": "increase", "role": "guardrail"}]});
        for (k, v) in extra.as_object().unwrap() {
            json[k] = v.clone();
        }
        serde_json::from_value(json).unwrap()
    }

    /// An arm with `n` exposures, `conversions`, and values of the given sum and sum
    /// of squares, at weight 50.
    fn arm(name: &str, n: u64, conversions: u64, sum: f64, sum_sq: f64) -> Arm {
        Arm {
            sums: ExposureSums {
                variant: name.into(),
                exposures: n,
                conversions,
                value_sum: sum,
                value_sum_sq: sum_sq,
            },
            weight: 50.0,
            srm_count: n,
        }
    }

    fn run(spec: &ExperimentSpec, arms: &[Arm], judged_before: u32) -> ExperimentRun {
        judge("shop", spec, (0, 10_000), arms, judged_before, 20_000)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    /// statsmodels and scipy figures (the engine's reference cases): a conversion of
    /// 120 vs 130 in 1000 each, and a revenue of mean 10 (var 9, n 50) vs 10.5
    /// (var 4, n 40); fixed horizon, so the raw p-values are the references'.
    #[test]
    fn fixed_horizon_figures_are_the_references_and_holm_adjusts_them_together() {
        let s = spec(json!({"sequential": false, "min_exposures": 40}));
        let arms = [arm("a", 1000, 120, 0.0, 0.0), arm("b", 1000, 130, 0.0, 0.0)];
        let r = run(&s, &arms, 0);
        assert_eq!(r.verdict, Verdict::Continue, "{}", r.reason);
        let c = &r.comparisons[0];
        assert_eq!(
            (c.metric.as_str(), c.test),
            ("converted", TestKind::TwoProportionZ)
        );
        assert!(
            close(c.p_value, 0.498_962_298_603_760_6, 1e-12),
            "{}",
            c.p_value
        );
        assert!(close(c.ci_low, -0.018_984_945_128_217_943, 1e-12));
        assert!(close(c.ci_high, 0.038_984_945_128_217_96, 1e-12));
        assert!(close(c.lift.unwrap(), 0.01 / 0.12, 1e-12));

        // Σx = n·mean and Σx² = (n−1)·var + n·mean², with a few conversions.
        let mut both = [
            arm("a", 50, 6, 500.0, 9.0 * 49.0 + 50.0 * 100.0),
            arm("b", 40, 4, 420.0, 4.0 * 39.0 + 40.0 * 110.25),
        ];
        for b in &mut both {
            b.srm_count = 45;
        }
        let r = run(&s, &both, 0);
        let v = &r.comparisons[1];
        assert_eq!((v.metric.as_str(), v.test), ("revenue", TestKind::WelchT));
        // scipy.stats.ttest_ind_from_stats(10.5, 2, 40, 10, 3, 50, equal_var=False)
        assert!(
            close(v.p_value, 0.347_368_844_863_297_83, 1e-9),
            "{}",
            v.p_value
        );
        let conv = two_proportion(6.0, 50.0, 4.0, 40.0, 0.05).p_value;
        assert_eq!(r.comparisons[0].p_value, conv);
        // Holm over both: the smaller p doubled, the larger kept at least that.
        let (lo, hi) = (conv.min(v.p_value), conv.max(v.p_value));
        let adjusted_lo = (2.0 * lo).min(1.0);
        let adjusted_hi = hi.max(adjusted_lo);
        let by_p = |p: f64| if p == lo { adjusted_lo } else { adjusted_hi };
        for c in &r.comparisons {
            assert_eq!(c.p_value_adjusted, by_p(c.p_value), "{c:?}");
        }
        assert_eq!(r.judged, 1);
        assert_eq!(r.variants[1].metrics["revenue"], Some(10.5));
        assert_eq!(r.variants[0].metrics["converted"], Some(0.12));
    }

    /// The sequential figures are the confidence sequence around the engine's
    /// two-proportion difference; a clear gain in the primary wins.
    #[test]
    fn a_clear_primary_gain_wins_with_the_sequential_figures() {
        let s = spec(json!({}));
        // Revenue: every converted exposure spends 30, so its sums follow.
        let arms = [
            arm("a", 1000, 100, 3000.0, 90_000.0),
            arm("b", 1000, 200, 6000.0, 180_000.0),
        ];
        let r = run(&s, &arms, 2);
        assert_eq!(r.verdict, Verdict::Winner, "{}", r.reason);
        assert_eq!(r.winner.as_deref(), Some("b"));
        assert_eq!(r.judged, 3);
        let z = two_proportion(100.0, 1000.0, 200.0, 1000.0, 0.05);
        let cs = confidence_sequence(z.difference, z.std_error, 2000.0, 0.05, 5000.0);
        let c = &r.comparisons[0];
        assert_eq!(c.test, TestKind::SequentialBinomial);
        assert_eq!(
            (c.p_value, c.ci_low, c.ci_high),
            (cs.p_value, cs.ci_low, cs.ci_high)
        );
        let mut rev = welch(
            ArmMoments {
                n: 1000.0,
                mean: 3.0,
                variance: (90_000.0 - 3000.0 * 3.0) / 999.0,
            },
            ArmMoments {
                n: 1000.0,
                mean: 6.0,
                variance: (180_000.0 - 6000.0 * 6.0) / 999.0,
            },
            0.05,
        );
        rev.p_value =
            confidence_sequence(rev.difference, rev.std_error, 2000.0, 0.05, 5000.0).p_value;
        let holm = holm(&[cs.p_value, rev.p_value]);
        assert!(close(r.comparisons[1].p_value, rev.p_value, 1e-12));
        assert!(close(c.p_value_adjusted, holm[0], 1e-12));
        assert!(c.p_value_adjusted < 0.05 && c.ci_low > 0.0);
        assert_eq!(c.effect, Effect::Better);
        assert_eq!(
            (c.lift, c.lift_low, c.lift_high),
            (Some(1.0), Some(cs.ci_low / 0.1), Some(cs.ci_high / 0.1))
        );
        // The revenue guardrail went up too: better, not a loss.
        assert_eq!(r.comparisons[1].effect, Effect::Better);
        assert!(
            r.reason
                .starts_with("b wins: converted b 20.00% vs 10.00% (+100.0%"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_guardrail_significantly_worse_loses_even_with_a_winning_primary() {
        let s = spec(json!({}));
        // b converts more but every conversion spends 10 instead of 30.
        let arms = [
            arm("a", 1000, 100, 3000.0, 90_000.0),
            arm("b", 1000, 200, 2000.0, 20_000.0),
        ];
        let r = run(&s, &arms, 0);
        assert_eq!(r.verdict, Verdict::GuardrailLost, "{}", r.reason);
        assert_eq!(r.comparisons[1].effect, Effect::Worse);
        assert!(
            r.reason.contains("revenue b 2.0000 vs 3.0000"),
            "{}",
            r.reason
        );
        assert_eq!(r.winner, None);
    }

    #[test]
    fn a_decrease_metric_wins_by_going_down() {
        let s = spec(json!({"metrics": [
            {"name": "churned", "kind": "conversion", "direction": "decrease", "role": "primary"}]}));
        let down = [arm("a", 1000, 200, 0.0, 0.0), arm("b", 1000, 100, 0.0, 0.0)];
        let r = run(&s, &down, 0);
        assert_eq!(
            (r.verdict, r.winner.as_deref()),
            (Verdict::Winner, Some("b"))
        );
        let up = [arm("a", 1000, 100, 0.0, 0.0), arm("b", 1000, 200, 0.0, 0.0)];
        let r = run(&s, &up, 0);
        assert_eq!(
            r.verdict,
            Verdict::Continue,
            "significantly worse is no win"
        );
        assert_eq!(r.comparisons[0].effect, Effect::Worse);
    }

    #[test]
    fn the_best_of_several_winners_is_promoted() {
        let s = spec(json!({"metrics": [
            {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"}]}));
        let mut arms = vec![
            arm("a", 1000, 100, 0.0, 0.0),
            arm("b", 1000, 180, 0.0, 0.0),
            arm("c", 1000, 220, 0.0, 0.0),
        ];
        for a in &mut arms {
            a.weight = 100.0 / 3.0;
        }
        let r = run(&s, &arms, 0);
        assert_eq!(
            (r.verdict, r.winner.as_deref()),
            (Verdict::Winner, Some("c"))
        );
        assert_eq!(r.comparisons.len(), 2);
        assert!(r.comparisons.iter().all(|c| c.effect == Effect::Better));
    }

    #[test]
    fn a_sample_ratio_mismatch_stops_everything_else() {
        // scipy.stats.chisquare([1000, 1100], f_exp=[1050, 1050]): 4.7619, p 0.029096
        let mut arms = [arm("a", 1000, 100, 0.0, 0.0), arm("b", 1000, 200, 0.0, 0.0)];
        arms[1].srm_count = 1100;
        arms[0].srm_count = 1000;
        let strict = run(&spec(json!({"srm_alpha": 0.05})), &arms, 1);
        assert_eq!(strict.verdict, Verdict::SampleRatioMismatch);
        assert!(close(strict.srm.statistic, 4.761_904_761_904_762, 1e-12));
        assert!(close(strict.srm.p_value, 0.029_096_331_741_252_08, 1e-9));
        assert!(
            strict.comparisons.is_empty(),
            "nothing judged on broken counts"
        );
        assert_eq!(strict.judged, 1, "not a judged interval");
        assert_eq!(
            strict.reason,
            "sample ratio mismatch: requests a=1000 b=1100 where the weights expect a 50.00% b 50.00%; chi-square 4.76, p 0.0291 < srm_alpha 0.05"
        );
        let lenient = run(&spec(json!({})), &arms, 1);
        assert!(!lenient.srm.mismatch);
        assert_eq!(lenient.verdict, Verdict::Winner);
        // Unequal weights are the expectation: 1000 vs 1100 at 10/11 is no mismatch.
        arms[0].weight = 100.0 / 2.1;
        arms[1].weight = 110.0 / 2.1;
        let weighted = run(&spec(json!({"srm_alpha": 0.05})), &arms, 1);
        assert!(weighted.srm.statistic < 1e-9, "{:?}", weighted.srm);
    }

    #[test]
    fn a_variant_whose_weight_was_taken_away_stops_the_looks() {
        let mut arms = [arm("a", 1000, 100, 0.0, 0.0), arm("b", 1000, 200, 0.0, 0.0)];
        arms[1].weight = 0.0;
        let r = run(&spec(json!({})), &arms, 1);
        assert_eq!((r.verdict, r.judged), (Verdict::NotJudged, 1));
        assert!(r.reason.starts_with("b without a weight"), "{}", r.reason);
        assert_eq!((r.srm.statistic, r.srm.p_value), (0.0, 1.0));
        assert!(
            serde_json::to_string(&r)
                .unwrap()
                .contains("\"expected_share\":0.0")
        );
    }

    #[test]
    fn too_few_exposures_are_not_judged_and_not_counted() {
        let s = spec(json!({}));
        let mut arms = [arm("a", 101, 10, 0.0, 0.0), arm("b", 99, 90, 0.0, 0.0)];
        arms[1].srm_count = 101;
        let r = run(&s, &arms, 3);
        assert_eq!(r.verdict, Verdict::NotJudged);
        assert_eq!(r.judged, 3);
        assert_eq!(
            r.reason,
            "too few exposures to judge (b 99; min_exposures 100)"
        );
        assert!(r.comparisons.is_empty());
    }

    #[test]
    fn without_a_winner_the_last_interval_concludes() {
        let s = spec(json!({}));
        let even = [
            arm("a", 1000, 100, 3000.0, 90_000.0),
            arm("b", 1000, 101, 3030.0, 90_900.0),
        ];
        assert_eq!(run(&s, &even, 3).verdict, Verdict::Continue);
        let last = run(&s, &even, 4);
        assert_eq!((last.verdict, last.judged), (Verdict::NoWinner, 5));
        assert!(
            last.reason.starts_with(
                "no winner after 5 judged intervals (max_intervals 5): converted b 10.10% vs 10.00%"
            ),
            "{}",
            last.reason
        );
    }

    #[test]
    fn a_run_survives_the_store_as_json() {
        let s = spec(json!({}));
        let r = run(
            &s,
            &[
                arm("a", 1000, 100, 3000.0, 90_000.0),
                arm("b", 1000, 200, 6000.0, 180_000.0),
            ],
            0,
        );
        let back: ExperimentRun =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["verdict"], "winner");
        assert_eq!(v["comparisons"][0]["effect"], "better");
        assert_eq!(v["comparisons"][0]["test"], "sequential_binomial");
    }
}
