//! The shadow report: how a shadow variant's answers compare with the primary's, from
//! the counts the filters sent, and whether it passes the rollout's shadow gate.

use std::collections::BTreeMap;

use outrider_protocol::{FieldError, ShadowCounts, ShadowSkip};
use serde::{Deserialize, Serialize};

use crate::histogram::{latency_quantile, score_diff_quantile};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// What a shadow must show before the rollout moves on from its shadow stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowGate {
    /// Share of compared requests whose labels agree.
    #[serde(default = "default_min_agreement")]
    pub min_agreement: f64,
    /// Comparisons needed before the gate decides.
    #[serde(default = "default_min_comparisons")]
    pub min_comparisons: u64,
    /// Share of mirrored requests the shadow may fail (errors and timeouts).
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
}

fn default_min_agreement() -> f64 {
    0.99
}

fn default_min_comparisons() -> u64 {
    1_000
}

fn default_max_error_rate() -> f64 {
    0.01
}

impl Default for ShadowGate {
    fn default() -> Self {
        Self {
            min_agreement: default_min_agreement(),
            min_comparisons: default_min_comparisons(),
            max_error_rate: default_max_error_rate(),
        }
    }
}

impl ShadowGate {
    /// Checks the gate's own values; `field` prefixes the error's field path.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        let bad = |name: &str, problem: &str| FieldError::new(format!("{field}{name}"), problem);
        if !(0.0..=1.0).contains(&self.min_agreement) {
            return Err(bad("min_agreement", "must be between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(bad("max_error_rate", "must be between 0 and 1"));
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
    pub mirrored: u64,
    pub completed: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// (errors + timeouts) / mirrored.
    pub error_rate: Proportion,
    pub skipped: BTreeMap<ShadowSkip, u64>,
    pub compared: u64,
    pub no_prediction_primary: u64,
    pub no_prediction_shadow: u64,
    /// Share of compared requests with the same label.
    pub agreement: Proportion,
    /// Label pairs: `confusion["primary_1"]["shadow_0"]` counts requests the primary
    /// labelled 1 and the shadow 0.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    /// Quantiles of |primary score − shadow score|.
    pub score_diff: BTreeMap<String, Option<f64>>,
    pub latency_ms: BTreeMap<String, Option<f64>>,
    pub verdict: &'static str,
    pub reasons: Vec<String>,
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

pub fn report(counts: &ShadowCounts, gate: &ShadowGate) -> ShadowReport {
    let agree = counts.confusion[0][0] + counts.confusion[1][1];
    let agreement = wilson(agree, counts.compared);
    let failed = counts.errors + counts.timeouts;
    let error_rate = wilson(failed, counts.mirrored);
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

    let mut reasons = Vec::new();
    let verdict = if counts.compared < gate.min_comparisons {
        reasons.push(format!(
            "{} of the {} comparisons the gate needs",
            counts.compared, gate.min_comparisons
        ));
        "insufficient_data"
    } else {
        if let Some(rate) = agreement.rate
            && rate < gate.min_agreement
        {
            reasons.push(format!(
                "agreement {:.4} is below {}",
                rate, gate.min_agreement
            ));
        }
        if let Some(rate) = error_rate.rate
            && rate > gate.max_error_rate
        {
            reasons.push(format!(
                "error rate {:.4} is above {}",
                rate, gate.max_error_rate
            ));
        }
        if reasons.is_empty() { "pass" } else { "fail" }
    };
    ShadowReport {
        variant: counts.variant.clone(),
        mirrored: counts.mirrored,
        completed: counts.completed,
        errors: counts.errors,
        timeouts: counts.timeouts,
        error_rate,
        skipped: counts.skipped.clone(),
        compared: counts.compared,
        no_prediction_primary: counts.no_prediction_primary,
        no_prediction_shadow: counts.no_prediction_shadow,
        agreement,
        confusion,
        score_diff,
        latency_ms,
        verdict,
        reasons,
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

    #[test]
    fn verdicts() {
        let gate = ShadowGate {
            min_agreement: 0.99,
            min_comparisons: 100,
            max_error_rate: 0.05,
        };
        assert_eq!(
            report(&counts(50, 0, 0), &gate).verdict,
            "insufficient_data"
        );
        assert_eq!(report(&counts(995, 5, 0), &gate).verdict, "pass");
        let r = report(&counts(930, 70, 0), &gate);
        assert_eq!(r.verdict, "fail");
        assert!(r.reasons[0].contains("agreement 0.9300"), "{:?}", r.reasons);
        assert_eq!(r.confusion["primary_0"]["shadow_1"], 70);
        let r = report(&counts(1000, 0, 100), &gate);
        assert_eq!(
            (r.verdict, r.error_rate.rate.map(|e| (e * 1100.0).round())),
            ("fail", Some(100.0))
        );
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
