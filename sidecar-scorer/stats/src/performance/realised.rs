//! Realised performance on labelled rows: precision and recall at the operating
//! threshold with Wilson score intervals, and average precision (scikit-learn's
//! `average_precision_score`, the PR AUC) with a bootstrap percentile interval.

use serde::{Deserialize, Serialize};

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Bootstrap resamples of the PR AUC interval; fewer for large windows (at most
/// [`BOOTSTRAP_BUDGET`] rows drawn in all, and never fewer than 200 resamples).
pub const BOOTSTRAP_RESAMPLES: usize = 1_000;
const BOOTSTRAP_BUDGET: usize = 20_000_000;
/// Seed of the bootstrap: the same rows give the same interval.
pub const BOOTSTRAP_SEED: u64 = 0x6f75_7472_6964_6572;

/// Counts of a confusion matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

impl Confusion {
    pub fn of(predictions: &[bool], labels: &[bool]) -> Self {
        let mut c = Self::default();
        for (&p, &l) in predictions.iter().zip(labels) {
            match (p, l) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A proportion with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The Wilson score interval (95%) of `successes` in `trials`; `None` without trials.
pub fn wilson(successes: u64, trials: u64) -> Option<Interval> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 or n successes the bound is exactly 0 or 1 (rounding would leave 1e-18).
    Some(Interval {
        value: p,
        low: if successes == 0 {
            0.0
        } else {
            (centre - half).max(0.0)
        },
        high: if successes == trials {
            1.0
        } else {
            (centre + half).min(1.0)
        },
    })
}

/// Realised figures of a labelled window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Realised {
    pub rows: u64,
    pub positives: u64,
    pub confusion: Confusion,
    /// Null without flagged rows.
    pub precision: Option<Interval>,
    /// Null without positive rows.
    pub recall: Option<Interval>,
    /// Null without both classes.
    pub pr_auc: Option<Interval>,
}

/// Realised performance of scores against labels at `threshold`.
pub fn realised(scores: &[f64], labels: &[bool], threshold: f64) -> Realised {
    let predictions: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
    let c = Confusion::of(&predictions, labels);
    let pr_auc = average_precision(scores, labels).map(|value| {
        let (low, high) = bootstrap_average_precision(scores, labels);
        Interval { value, low, high }
    });
    Realised {
        rows: scores.len() as u64,
        positives: c.tp + c.fn_,
        confusion: c,
        precision: wilson(c.tp, c.tp + c.fp),
        recall: wilson(c.tp, c.tp + c.fn_),
        pr_auc,
    }
}

/// Rows sorted by descending score, for weighted average precision.
fn by_score_descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Σ (R_k − R_{k−1}) · P_k over the distinct scores, descending, each row counted
/// `weight[row]` times; `None` without a positive or without any row.
fn weighted_average_precision(
    order: &[usize],
    scores: &[f64],
    labels: &[bool],
    weight: &[u32],
) -> Option<f64> {
    let positives: u64 = order
        .iter()
        .filter(|&&i| labels[i])
        .map(|&i| u64::from(weight[i]))
        .sum();
    if positives == 0 {
        return None;
    }
    let (mut tp, mut fp, mut ap) = (0u64, 0u64, 0.0);
    let mut k = 0;
    while k < order.len() {
        let score = scores[order[k]];
        let tp0 = tp;
        while k < order.len() && scores[order[k]] == score {
            let w = u64::from(weight[order[k]]);
            if labels[order[k]] {
                tp += w;
            } else {
                fp += w;
            }
            k += 1;
        }
        if tp > tp0 {
            ap += (tp - tp0) as f64 / positives as f64 * (tp as f64 / (tp + fp) as f64);
        }
    }
    Some(ap)
}

/// scikit-learn's `average_precision_score`; `None` without a positive.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let order = by_score_descending(scores);
    weighted_average_precision(&order, scores, labels, &vec![1; scores.len()])
}

/// 2.5% and 97.5% percentiles of the average precision over bootstrap resamples
/// (rows drawn with replacement, a fixed seed); resamples without a positive are
/// left out.
pub fn bootstrap_average_precision(scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let n = scores.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let order = by_score_descending(scores);
    let resamples = (BOOTSTRAP_BUDGET / n).clamp(200, BOOTSTRAP_RESAMPLES);
    let mut rng = BOOTSTRAP_SEED;
    let mut weight = vec![0u32; n];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        weight.fill(0);
        for _ in 0..n {
            let r = splitmix64(&mut rng);
            weight[((u128::from(r) * n as u128) >> 64) as usize] += 1;
        }
        if let Some(ap) = weighted_average_precision(&order, scores, labels, &weight) {
            values.push(ap);
        }
    }
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    (percentile(&values, 0.025), percentile(&values, 0.975))
}

/// Linear-interpolated percentile of sorted values (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// ROC AUC (ties count half); `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let order = by_score_descending(scores);
    let p = labels.iter().filter(|&&l| l).count() as f64;
    let n = labels.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut area) = (0.0, 0.0, 0.0);
    let mut k = 0;
    while k < order.len() {
        let score = scores[order[k]];
        let (tp0, fp0) = (tp, fp);
        while k < order.len() && scores[order[k]] == score {
            if labels[order[k]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            k += 1;
        }
        area += (fp - fp0) * (tp + tp0) / 2.0;
    }
    Some(area / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels proportion_confint(8, 10, method="wilson")
        // -> (0.49016247153664183, 0.9433178485456247)
        let i = wilson(8, 10).unwrap();
        assert!((i.low - 0.490_162_471_536_641_83).abs() < 1e-14, "{i:?}");
        assert!((i.high - 0.943_317_848_545_624_7).abs() < 1e-14, "{i:?}");
        assert_eq!(wilson(0, 0), None);
        assert_eq!(wilson(0, 5).unwrap().low, 0.0);
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        // average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(average_precision(&[0.3], &[false]), None);
    }

    #[test]
    fn the_bootstrap_interval_holds_the_value_and_repeats() {
        let scores: Vec<f64> = (0..500).map(|i| (i as f64 * 0.37).sin().abs()).collect();
        let labels: Vec<bool> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| *s > 0.8 || i % 17 == 0)
            .collect();
        let r = realised(&scores, &labels, 0.5);
        let pr = r.pr_auc.unwrap();
        assert!(pr.low <= pr.value && pr.value <= pr.high, "{pr:?}");
        assert!(pr.high - pr.low > 0.0);
        assert_eq!(realised(&scores, &labels, 0.5), r);
        let c = r.confusion;
        assert_eq!(c.tp + c.fp + c.fn_ + c.tn, 500);
        assert_eq!(
            r.precision.unwrap().value,
            c.tp as f64 / (c.tp + c.fp) as f64
        );
    }
}
