//! Kayenta's canary rules (the Netflix ACA judge): per-metric classification
//! from a Mann-Whitney confidence interval with an effect-size gate, then a
//! weighted group score.

use super::mann_whitney::{mann_whitney_u, shift_interval};
use crate::sample::mean;
use serde::{Deserialize, Serialize};

/// Confidence of the shift interval.
pub const CONFIDENCE: f64 = 0.98;
/// A shift counts only if its interval clears this fraction of the estimate.
pub const TOLERANCE: f64 = 0.25;
/// At or above this share of no-data metrics the canary scores 0.
pub const NODATA_FAIL_SHARE: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    #[default]
    Either,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanStrategy {
    /// Drop missing values (nulls) before testing.
    #[default]
    Remove,
    /// Count missing values as 0.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Pass,
    High,
    Low,
    Nodata,
}

/// Everything the classifier needs to know about one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRules {
    pub direction: Direction,
    pub critical: bool,
    pub allowed_increase: f64,
    pub allowed_decrease: f64,
    pub critical_increase: f64,
    pub critical_decrease: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricOutcome {
    pub classification: Classification,
    /// This outcome fails the whole canary.
    pub critical_failure: bool,
    pub p_value: Option<f64>,
    /// mean(canary) / mean(baseline); NaN when either mean is 0.
    pub ratio: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub estimate: Option<f64>,
    pub reason: Option<String>,
}

/// Missing values handled as `strategy` says.
pub fn clean(values: &[Option<f64>], strategy: NanStrategy) -> Vec<f64> {
    match strategy {
        NanStrategy::Remove => values.iter().flatten().copied().collect(),
        NanStrategy::Replace => values.iter().map(|v| v.unwrap_or(0.0)).collect(),
    }
}

/// Classifies one metric (both samples already cleaned of missing values).
pub fn classify(baseline: &[f64], canary: &[f64], rules: &MetricRules) -> MetricOutcome {
    if baseline.is_empty() || canary.is_empty() {
        return MetricOutcome {
            classification: Classification::Nodata,
            critical_failure: rules.critical,
            p_value: None,
            ratio: f64::NAN,
            ci_low: None,
            ci_high: None,
            estimate: None,
            reason: Some("no data for the baseline or the canary".into()),
        };
    }
    let p_value = Some(mann_whitney_u(canary, baseline).p_value);
    let ratio = mean_ratio(baseline, canary);
    let pass = |reason: &str, ratio: f64| MetricOutcome {
        classification: Classification::Pass,
        critical_failure: false,
        p_value,
        ratio,
        ci_low: None,
        ci_high: None,
        estimate: None,
        reason: Some(reason.into()),
    };
    let mut a = baseline.to_vec();
    let mut b = canary.to_vec();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    if a == b {
        return pass("baseline and canary data are identical", 1.0);
    }
    let Some(shift) = shift_interval(canary, baseline, CONFIDENCE) else {
        return pass("every value is the same", 1.0);
    };
    let critical_value = TOLERANCE * shift.estimate.abs();
    let effect_unknown = ratio.is_nan();
    let high = matches!(rules.direction, Direction::Increase | Direction::Either)
        && shift.lower > critical_value
        && (effect_unknown || ratio >= rules.allowed_increase);
    let low = matches!(rules.direction, Direction::Decrease | Direction::Either)
        && shift.upper < -critical_value
        && (effect_unknown || ratio <= rules.allowed_decrease);
    let classification = if high {
        Classification::High
    } else if low {
        Classification::Low
    } else {
        Classification::Pass
    };
    let critical_failure = rules.critical
        && match classification {
            Classification::High => effect_unknown || ratio >= rules.critical_increase,
            Classification::Low => effect_unknown || ratio <= rules.critical_decrease,
            _ => false,
        };
    let reason = match classification {
        Classification::High => Some("canary is higher than the baseline".to_string()),
        Classification::Low => Some("canary is lower than the baseline".to_string()),
        _ => None,
    };
    MetricOutcome {
        classification,
        critical_failure,
        p_value,
        ratio,
        ci_low: Some(shift.lower),
        ci_high: Some(shift.upper),
        estimate: Some(shift.estimate),
        reason,
    }
}

fn mean_ratio(baseline: &[f64], canary: &[f64]) -> f64 {
    let (b, c) = (mean(baseline), mean(canary));
    if b == 0.0 || c == 0.0 {
        f64::NAN
    } else {
        c / b
    }
}

/// Score of one group: the share of its metrics with data that passed, in
/// percent; `None` when no metric of the group had data.
pub fn group_score(classifications: &[Classification]) -> Option<f64> {
    let with_data = classifications
        .iter()
        .filter(|c| **c != Classification::Nodata)
        .count();
    let passed = classifications
        .iter()
        .filter(|c| **c == Classification::Pass)
        .count();
    (with_data > 0).then(|| 100.0 * passed as f64 / with_data as f64)
}

/// Rounds a score to two decimals, as Kayenta reports it.
pub fn round_score(score: f64) -> f64 {
    (score * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(direction: Direction) -> MetricRules {
        MetricRules {
            direction,
            critical: false,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            critical_increase: 1.0,
            critical_decrease: 1.0,
        }
    }

    fn sample(offset: f64) -> Vec<f64> {
        (0..60)
            .map(|i| offset + ((i * 17) % 60) as f64 / 10.0)
            .collect()
    }

    #[test]
    fn clear_increase_is_high_unless_only_decreases_matter() {
        let (base, canary) = (sample(100.0), sample(120.0));
        let o = classify(&base, &canary, &rules(Direction::Either));
        assert_eq!(o.classification, Classification::High);
        let o = classify(&base, &canary, &rules(Direction::Decrease));
        assert_eq!(o.classification, Classification::Pass);
        let o = classify(&canary, &base, &rules(Direction::Decrease));
        assert_eq!(o.classification, Classification::Low);
    }

    #[test]
    fn effect_size_gate_lets_small_ratios_pass() {
        let (base, canary) = (sample(100.0), sample(120.0));
        let mut r = rules(Direction::Increase);
        r.allowed_increase = 1.5;
        assert_eq!(
            classify(&base, &canary, &r).classification,
            Classification::Pass
        );
    }

    #[test]
    fn no_data_and_identical_data() {
        let o = classify(&[], &[1.0], &rules(Direction::Either));
        assert_eq!(o.classification, Classification::Nodata);
        assert!(!o.critical_failure);
        let o = classify(&[3.0, 1.0], &[1.0, 3.0], &rules(Direction::Either));
        assert_eq!(o.classification, Classification::Pass);
        let mut r = rules(Direction::Either);
        r.critical = true;
        assert!(classify(&[], &[], &r).critical_failure);
    }

    #[test]
    fn constant_samples_compare_exactly() {
        let o = classify(&[5.0; 10], &[9.0; 10], &rules(Direction::Either));
        assert_eq!(o.classification, Classification::High);
        assert_eq!(o.estimate, Some(4.0));
    }
}
