//! The shadow report: how a shadow variant's answers compare with the primary's, from
//! the counts the filters sent, and whether it passes the rollout's shadow gate.

use std::collections::BTreeMap;

use outrider_protocol::{
    FieldError, SCORE_DIFF_BUCKETS, SCORE_DIFF_SLOTS, ShadowCounts, ShadowSkip,
};
use serde::{Deserialize, Serialize};

use crate::histogram::{latency_quantile, score_diff_quantile};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// What a shadow must show before the rollout moves on from its shadow stage. Three
/// rules: the shadow's error and timeout rates, judged on the copies that ended once
/// there are `min_copies`, and its agreement with the primary, judged on the
/// comparisons once there are `min_comparisons`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowGate {
    /// Share of compared requests whose labels agree.
    #[serde(default = "default_min_agreement")]
    pub min_agreement: f64,
    /// Comparisons needed before agreement is judged.
    #[serde(default = "default_min_comparisons")]
    pub min_comparisons: u64,
    /// Share of ended copies the shadow may answer with an error (a non-2xx status,
    /// or a call that failed).
    #[serde(default = "default_max_rate")]
    pub max_error_rate: f64,
    /// Share of ended copies the shadow may leave unanswered past the shadow's
    /// `timeout_ms`.
    #[serde(default = "default_max_rate")]
    pub max_timeout_rate: f64,
    /// Ended copies needed before the error and timeout rates are judged.
    #[serde(default = "default_min_copies")]
    pub min_copies: u64,
}

fn default_min_agreement() -> f64 {
    0.99
}

fn default_min_comparisons() -> u64 {
    1_000
}

fn default_max_rate() -> f64 {
    0.01
}

fn default_min_copies() -> u64 {
    1_000
}

impl Default for ShadowGate {
    fn default() -> Self {
        Self {
            min_agreement: default_min_agreement(),
            min_comparisons: default_min_comparisons(),
            max_error_rate: default_max_rate(),
            max_timeout_rate: default_max_rate(),
            min_copies: default_min_copies(),
        }
    }
}

impl ShadowGate {
    /// Checks the gate's own values; `field` prefixes the error's field path.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        let bad = |name: &str, problem: &str| FieldError::new(format!("{field}{name}"), problem);
        for (name, rate) in [
            ("min_agreement", self.min_agreement),
            ("max_error_rate", self.max_error_rate),
            ("max_timeout_rate", self.max_timeout_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(bad(name, "must be between 0 and 1"));
            }
        }
        Ok(())
    }
}

/// A proportion with its Wilson score interval (95%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub rate: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// The Wilson score interval of `x` successes in `n` trials.
pub fn wilson(x: u64, n: u64) -> Proportion {
    if n == 0 {
        return Proportion {
            rate: None,
            ci_low: None,
            ci_high: None,
        };
    }
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Proportion {
        rate: Some(p),
        ci_low: Some((center - half).max(0.0)),
        ci_high: Some((center + half).min(1.0)),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    pub variant: String,
    /// Copies sent to the shadow.
    pub mirrored: u64,
    /// Copies the shadow answered with a 2xx status.
    pub completed: u64,
    /// Copies the shadow answered with another status, or whose call failed.
    pub errors: u64,
    /// Copies not answered within the shadow's `timeout_ms`.
    pub timeouts: u64,
    /// Copies that ended: completed + errors + timeouts (those still in flight are not
    /// counted). The denominator of `error_rate` and `timeout_rate`.
    pub ended: u64,
    /// errors / ended.
    pub error_rate: Proportion,
    /// timeouts / ended.
    pub timeout_rate: Proportion,
    pub skipped: BTreeMap<ShadowSkip, u64>,
    pub compared: u64,
    pub no_prediction_primary: u64,
    pub no_prediction_shadow: u64,
    /// Share of compared requests with the same label.
    pub agreement: Proportion,
    /// Label pairs: `confusion["primary_1"]["shadow_0"]` counts requests the primary
    /// labelled 1 and the shadow 0.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Quantiles of |primary score − shadow score|, each the upper bound of the bucket
    /// of `score_diff_histogram` that holds it.
    pub score_diff: BTreeMap<String, Option<f64>>,
    /// Compared pairs per bucket of |primary score − shadow score|.
    pub score_diff_histogram: Vec<Bucket>,
    pub latency_ms: BTreeMap<String, Option<f64>>,
    /// Which copies `latency_ms` covers.
    pub latency_covers: LatencyCovers,
    pub verdict: &'static str,
    /// Why, one line per rule behind the verdict.
    pub reasons: Vec<String>,
    /// The gate fields behind the verdict, in the order of `reasons`: the thresholds
    /// crossed for `fail`, the minimums not reached for `insufficient_data`.
    pub rules: Vec<&'static str>,
}

/// One bucket of a histogram: the values above the previous bucket's `le` and at
/// most this one's (`None`: above the last bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    pub le: Option<f64>,
    pub count: u64,
}

/// The copies behind the latency figures. Timed-out copies have no latency (it is at
/// least the shadow's timeout), so they are left out of the shadow's quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyCovers {
    /// Copies in `shadow_p50` and `shadow_p99`: every copy with an answer (completed
    /// and errors).
    pub shadow_answered: u64,
    /// Pairs in `primary_p50`, `primary_p99` and `mean_shadow_minus_primary`.
    pub compared: u64,
    /// Copies left out: they timed out.
    pub timed_out: u64,
    /// timeouts / ended, as in `timeout_rate`.
    pub timed_out_share: Option<f64>,
}

/// One report per shadow variant from per-window counts (as the store gives them, in
/// any order), each judged against `gate`.
pub fn reports(windows: &[(u64, ShadowCounts)], gate: &ShadowGate) -> Vec<ShadowReport> {
    let mut by_shadow: BTreeMap<&str, Vec<&ShadowCounts>> = BTreeMap::new();
    for (_, counts) in windows {
        by_shadow
            .entry(counts.variant.as_str())
            .or_default()
            .push(counts);
    }
    by_shadow
        .values()
        .filter_map(|w| total(w))
        .map(|t| report(&t, gate))
        .collect()
}

/// Sums per-window counts of one shadow.
pub fn total(windows: &[&ShadowCounts]) -> Option<ShadowCounts> {
    let first = windows.first()?;
    let mut sum = ShadowCounts {
        variant: first.variant.clone(),
        ..ShadowCounts::default()
    };
    let add = |into: &mut Vec<u64>, from: &[u64]| {
        into.resize(into.len().max(from.len()), 0);
        for (a, b) in into.iter_mut().zip(from) {
            *a += b;
        }
    };
    for w in windows {
        sum.mirrored += w.mirrored;
        sum.completed += w.completed;
        sum.errors += w.errors;
        sum.timeouts += w.timeouts;
        sum.compared += w.compared;
        sum.no_prediction_primary += w.no_prediction_primary;
        sum.no_prediction_shadow += w.no_prediction_shadow;
        for (p, row) in w.confusion.iter().enumerate() {
            for (s, n) in row.iter().enumerate() {
                sum.confusion[p][s] += n;
            }
        }
        sum.latency_delta_sum_ms += w.latency_delta_sum_ms;
        for (reason, n) in &w.skipped {
            *sum.skipped.entry(*reason).or_default() += n;
        }
        add(&mut sum.score_diff, &w.score_diff);
        add(&mut sum.shadow_latency_ms, &w.shadow_latency_ms);
        add(&mut sum.primary_latency_ms, &w.primary_latency_ms);
    }
    Some(sum)
}

/// The verdict of `gate` on a shadow's counts: the rules that failed, else the
/// minimums not reached, else a pass. A rule fails on its own data, so a shadow that
/// errors or times out fails even when it gives nothing to compare.
fn judge(
    counts: &ShadowCounts,
    ended: u64,
    agreement: &Proportion,
    gate: &ShadowGate,
) -> (&'static str, Vec<(&'static str, String)>) {
    let mut failed = Vec::new();
    let mut short = Vec::new();
    if ended >= gate.min_copies.max(1) {
        for (rule, what, n, limit) in [
            (
                "max_error_rate",
                "error",
                counts.errors,
                gate.max_error_rate,
            ),
            (
                "max_timeout_rate",
                "timeout",
                counts.timeouts,
                gate.max_timeout_rate,
            ),
        ] {
            let rate = n as f64 / ended as f64;
            if rate > limit {
                failed.push((
                    rule,
                    format!("{what} rate {rate:.4} ({n} of {ended} copies) is above {limit}"),
                ));
            }
        }
    } else {
        short.push((
            "min_copies",
            format!(
                "{ended} of the {} ended copies the gate needs to judge errors and timeouts",
                gate.min_copies.max(1)
            ),
        ));
    }
    if counts.compared >= gate.min_comparisons.max(1) {
        if let Some(rate) = agreement.rate
            && rate < gate.min_agreement
        {
            failed.push((
                "min_agreement",
                format!("agreement {rate:.4} is below {}", gate.min_agreement),
            ));
        }
    } else {
        let mut reason = format!(
            "{} of the {} comparisons the gate needs",
            counts.compared,
            gate.min_comparisons.max(1)
        );
        let unreadable = counts.no_prediction_primary + counts.no_prediction_shadow;
        if unreadable > 0 {
            reason.push_str(&format!(
                " ({} answers of the shadow and {} of the primary had no readable prediction)",
                counts.no_prediction_shadow, counts.no_prediction_primary
            ));
        }
        short.push(("min_comparisons", reason));
    }
    if !failed.is_empty() {
        ("fail", failed)
    } else if !short.is_empty() {
        ("insufficient_data", short)
    } else {
        ("pass", Vec::new())
    }
}

pub fn report(counts: &ShadowCounts, gate: &ShadowGate) -> ShadowReport {
    let agree = counts.confusion[0][0] + counts.confusion[1][1];
    let agreement = wilson(agree, counts.compared);
    let ended = counts.completed + counts.errors + counts.timeouts;
    let error_rate = wilson(counts.errors, ended);
    let timeout_rate = wilson(counts.timeouts, ended);
    let mut confusion = BTreeMap::new();
    for (p, row) in counts.confusion.iter().enumerate() {
        let cells = row
            .iter()
            .enumerate()
            .map(|(s, n)| (format!("shadow_{s}"), *n))
            .collect();
        confusion.insert(format!("primary_{p}"), cells);
    }
    let score_diff = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)]
        .into_iter()
        .map(|(name, q)| (name.to_owned(), score_diff_quantile(&counts.score_diff, q)))
        .collect();
    let score_diff_histogram = (0..SCORE_DIFF_SLOTS)
        .map(|i| Bucket {
            le: SCORE_DIFF_BUCKETS.get(i).copied(),
            count: counts.score_diff.get(i).copied().unwrap_or(0),
        })
        .collect();
    let mean_delta =
        (counts.compared > 0).then(|| counts.latency_delta_sum_ms as f64 / counts.compared as f64);
    let latency_ms = [
        (
            "shadow_p50",
            latency_quantile(&counts.shadow_latency_ms, 0.5),
        ),
        (
            "shadow_p99",
            latency_quantile(&counts.shadow_latency_ms, 0.99),
        ),
        (
            "primary_p50",
            latency_quantile(&counts.primary_latency_ms, 0.5),
        ),
        (
            "primary_p99",
            latency_quantile(&counts.primary_latency_ms, 0.99),
        ),
        ("mean_shadow_minus_primary", mean_delta),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let latency_covers = LatencyCovers {
        shadow_answered: counts.completed + counts.errors,
        compared: counts.compared,
        timed_out: counts.timeouts,
        timed_out_share: timeout_rate.rate,
    };
    let (verdict, judged) = judge(counts, ended, &agreement, gate);
    let (rules, reasons) = judged.into_iter().unzip();
    ShadowReport {
        variant: counts.variant.clone(),
        mirrored: counts.mirrored,
        completed: counts.completed,
        errors: counts.errors,
        timeouts: counts.timeouts,
        ended,
        error_rate,
        timeout_rate,
        skipped: counts.skipped.clone(),
        compared: counts.compared,
        no_prediction_primary: counts.no_prediction_primary,
        no_prediction_shadow: counts.no_prediction_shadow,
        agreement,
        confusion,
        score_diff,
        score_diff_histogram,
        latency_ms,
        latency_covers,
        verdict,
        reasons,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use outrider_protocol::{LATENCY_SLOTS, SCORE_DIFF_SLOTS};

    use super::*;

    /// Reference values from the Wilson interval's definition (also what
    /// statsmodels' `proportion_confint(x, n, method="wilson")` gives).
    #[test]
    fn wilson_intervals() {
        let p = wilson(930, 1000);
        assert!((p.ci_low.unwrap() - 0.912_485_4).abs() < 1e-6, "{p:?}");
        assert!((p.ci_high.unwrap() - 0.944_223_6).abs() < 1e-6, "{p:?}");
        let all = wilson(50, 50);
        assert_eq!(all.ci_high, Some(1.0));
        assert!((all.ci_low.unwrap() - 0.928_652_2).abs() < 1e-6, "{all:?}");
        assert_eq!(wilson(0, 0).rate, None);
    }

    fn counts(agree: u64, disagree: u64, errors: u64) -> ShadowCounts {
        ShadowCounts {
            variant: "v3".into(),
            mirrored: agree + disagree + errors,
            completed: agree + disagree,
            errors,
            compared: agree + disagree,
            confusion: [[agree / 2, disagree], [0, agree - agree / 2]],
            score_diff: vec![0; SCORE_DIFF_SLOTS],
            shadow_latency_ms: vec![0; LATENCY_SLOTS],
            primary_latency_ms: vec![0; LATENCY_SLOTS],
            ..ShadowCounts::default()
        }
    }

    const GATE: ShadowGate = ShadowGate {
        min_agreement: 0.99,
        min_comparisons: 100,
        max_error_rate: 0.05,
        max_timeout_rate: 0.02,
        min_copies: 100,
    };

    #[test]
    fn verdicts() {
        let r = report(&counts(50, 0, 0), &GATE);
        assert_eq!(r.verdict, "insufficient_data");
        assert_eq!(r.rules, ["min_copies", "min_comparisons"]);
        assert_eq!(
            r.reasons,
            [
                "50 of the 100 ended copies the gate needs to judge errors and timeouts",
                "50 of the 100 comparisons the gate needs"
            ]
        );
        let r = report(&counts(995, 5, 0), &GATE);
        assert_eq!((r.verdict, r.rules.len()), ("pass", 0));
        let r = report(&counts(930, 70, 0), &GATE);
        assert_eq!(r.verdict, "fail");
        assert_eq!(r.rules, ["min_agreement"]);
        assert_eq!(r.reasons, ["agreement 0.9300 is below 0.99"]);
        assert_eq!(r.confusion["primary_0"]["shadow_1"], 70);
        let r = report(&counts(1000, 0, 100), &GATE);
        assert_eq!(r.verdict, "fail");
        assert_eq!(r.rules, ["max_error_rate"]);
        assert_eq!(
            r.reasons,
            ["error rate 0.0909 (100 of 1100 copies) is above 0.05"]
        );
        assert_eq!(r.error_rate.rate, Some(100.0 / 1100.0));
        assert_eq!(r.timeout_rate.rate, Some(0.0));
    }

    #[test]
    fn a_shadow_that_refuses_every_copy_fails_without_comparisons() {
        let dead = counts(0, 0, 2_000);
        let r = report(&dead, &ShadowGate::default());
        assert_eq!(r.verdict, "fail");
        assert_eq!(r.rules, ["max_error_rate"]);
        assert_eq!(
            r.reasons,
            ["error rate 1.0000 (2000 of 2000 copies) is above 0.01"]
        );
        assert_eq!((r.compared, r.agreement.rate), (0, None));
        // Below its own minimum the error rate is not judged yet.
        let r = report(&counts(0, 0, 50), &GATE);
        assert_eq!(r.verdict, "insufficient_data");
        assert_eq!(r.rules, ["min_copies", "min_comparisons"]);
    }

    #[test]
    fn timeouts_are_judged_apart_from_errors_and_left_out_of_latency() {
        let mut c = counts(600, 0, 0);
        c.mirrored = 1_100;
        c.timeouts = 500;
        c.shadow_latency_ms[6] = 600; // (7.5, 10] ms
        c.primary_latency_ms[8] = 600; // (15, 20] ms
        c.latency_delta_sum_ms = -3_000;
        let r = report(&c, &GATE);
        assert_eq!(
            (r.ended, r.timeouts, r.timeout_rate.rate),
            (1_100, 500, Some(500.0 / 1_100.0))
        );
        assert_eq!(r.error_rate.rate, Some(0.0));
        assert_eq!(r.verdict, "fail");
        assert_eq!(r.rules, ["max_timeout_rate"]);
        assert_eq!(
            r.reasons,
            ["timeout rate 0.4545 (500 of 1100 copies) is above 0.02"]
        );
        assert_eq!(
            r.latency_covers,
            LatencyCovers {
                shadow_answered: 600,
                compared: 600,
                timed_out: 500,
                timed_out_share: Some(500.0 / 1_100.0),
            }
        );
        assert_eq!(r.latency_ms["mean_shadow_minus_primary"], Some(-5.0));
        // Errors and timeouts, each over its own threshold, give two reasons.
        c.errors = 100;
        let r = report(&c, &GATE);
        assert_eq!(r.rules, ["max_error_rate", "max_timeout_rate"]);
        assert_eq!(r.ended, 1_200);
    }

    #[test]
    fn score_differences_are_reported_as_bucket_upper_bounds() {
        let mut c = counts(1_000, 0, 0);
        c.score_diff[0] = 880; // [0, 0.0001]
        c.score_diff[5] = 100; // (0.02, 0.05]
        c.score_diff[9] = 20; // (0.5, 1]
        let r = report(&c, &GATE);
        assert_eq!(r.score_diff["p50"], Some(0.0001));
        assert_eq!(r.score_diff["p90"], Some(0.05));
        assert_eq!(r.score_diff["p99"], Some(1.0));
        assert_eq!(r.score_diff["max"], Some(1.0));
        assert_eq!(r.score_diff_histogram.len(), SCORE_DIFF_SLOTS);
        assert_eq!(
            r.score_diff_histogram[5],
            Bucket {
                le: Some(0.05),
                count: 100
            }
        );
        assert_eq!(r.score_diff_histogram[10].le, None);
        let empty = report(&counts(0, 0, 0), &GATE);
        assert_eq!(empty.score_diff["p50"], None);
    }

    #[test]
    fn a_gate_refuses_rates_outside_0_to_1() {
        assert_eq!(ShadowGate::default().check("shadow_gate."), Ok(()));
        let gate = ShadowGate {
            min_agreement: 1.5,
            ..ShadowGate::default()
        };
        let err = gate.check("shadow_gate.").unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.problem.as_str()),
            ("shadow_gate.min_agreement", "must be between 0 and 1")
        );
        let gate = ShadowGate {
            max_error_rate: -0.1,
            ..ShadowGate::default()
        };
        assert_eq!(gate.check("").unwrap_err().field, "max_error_rate");
        let gate = ShadowGate {
            max_timeout_rate: f64::NAN,
            ..ShadowGate::default()
        };
        assert_eq!(gate.check("").unwrap_err().field, "max_timeout_rate");
    }

    #[test]
    fn windows_add_up() {
        let a = counts(10, 1, 1);
        let mut b = counts(20, 2, 0);
        b.skipped.insert(ShadowSkip::InFlightCap, 4);
        let sum = total(&[&a, &b]).unwrap();
        assert_eq!((sum.mirrored, sum.compared, sum.errors), (34, 33, 1));
        assert_eq!(sum.confusion[0][1], 3);
        assert_eq!(sum.skipped[&ShadowSkip::InFlightCap], 4);
        assert!(total(&[]).is_none());
    }
}
