//! Isotonic calibration: the non-decreasing step function of the score that fits the
//! labels best in squared error (pool adjacent violators), linearly interpolated
//! between its points and clipped at the ends, as scikit-learn's
//! `IsotonicRegression(increasing=True, out_of_bounds="clip")` predicts.

use serde::{Deserialize, Serialize};

use crate::InputError;

/// A fitted calibration: increasing `x` (distinct scores) and non-decreasing `y`
/// (probabilities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicCalibration {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl IsotonicCalibration {
    /// Fits on scores and their labels (same length, at least one row, finite).
    pub fn fit(scores: &[f64], labels: &[bool]) -> Result<Self, InputError> {
        if scores.is_empty() || scores.len() != labels.len() {
            return Err(InputError::invalid(
                "scores",
                "need at least one score and one label per score",
            ));
        }
        crate::error::require_finite("scores", scores)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        // Equal scores become one point: the mean of their labels, weighted by count.
        let mut x: Vec<f64> = Vec::new();
        let mut sum: Vec<f64> = Vec::new();
        let mut weight: Vec<f64> = Vec::new();
        for i in order {
            let label = f64::from(u8::from(labels[i]));
            if x.last() == Some(&scores[i]) {
                *sum.last_mut().expect("a point") += label;
                *weight.last_mut().expect("a point") += 1.0;
            } else {
                x.push(scores[i]);
                sum.push(label);
                weight.push(1.0);
            }
        }
        // Pool adjacent violators over blocks of (sum, weight, first point).
        let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(x.len());
        for i in 0..x.len() {
            blocks.push((sum[i], weight[i], i));
            while blocks.len() > 1 {
                let (s1, w1, _) = blocks[blocks.len() - 1];
                let (s0, w0, start) = blocks[blocks.len() - 2];
                if s0 / w0 <= s1 / w1 {
                    break;
                }
                blocks.pop();
                *blocks.last_mut().expect("two blocks") = (s0 + s1, w0 + w1, start);
            }
        }
        let mut y = vec![0.0; x.len()];
        for (b, &(s, w, start)) in blocks.iter().enumerate() {
            let end = blocks.get(b + 1).map_or(x.len(), |next| next.2);
            y[start..end].fill(s / w);
        }
        Ok(Self { x, y })
    }

    /// The calibrated probability of a score (`numpy.interp` over the points,
    /// clipped to the fitted range).
    pub fn predict(&self, score: f64) -> f64 {
        let (x, y) = (&self.x, &self.y);
        if x.is_empty() {
            return score;
        }
        if score <= x[0] {
            return y[0];
        }
        if score >= x[x.len() - 1] {
            return y[y.len() - 1];
        }
        // First point strictly above the score; the segment starts one before.
        let hi = x.partition_point(|&v| v <= score);
        let lo = hi - 1;
        let slope = (y[hi] - y[lo]) / (x[hi] - x[lo]);
        slope * (score - x[lo]) + y[lo]
    }
}

/// NannyML's test of whether scores benefit from calibration: calibrate in 10
/// cross-validation folds (stratified by label; here deterministic, each row tested
/// once, where NannyML draws shuffled splits), and compare the expected calibration
/// error of the held-out rows before and after, over 10 equal-count bins of the
/// sorted scores. A near-perfect ranking (ROC AUC above 0.999) or one class only
/// needs none.
pub fn needs_calibration(scores: &[f64], labels: &[bool]) -> bool {
    const FOLDS: usize = 10;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 || positives == labels.len() || labels.len() < 2 * FOLDS {
        return false;
    }
    if super::realised::roc_auc(scores, labels).is_some_and(|auc| auc > 0.999) {
        return false;
    }
    // Fold of each row: its rank within its class, modulo the folds.
    let mut seen = [0usize; 2];
    let fold: Vec<usize> = labels
        .iter()
        .map(|&l| {
            let k = &mut seen[usize::from(l)];
            *k += 1;
            (*k - 1) % FOLDS
        })
        .collect();
    let (mut truth, mut before, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..FOLDS {
        let (train_s, train_l): (Vec<f64>, Vec<bool>) = (0..scores.len())
            .filter(|&i| fold[i] != f)
            .map(|i| (scores[i], labels[i]))
            .unzip();
        let Ok(calibration) = IsotonicCalibration::fit(&train_s, &train_l) else {
            return false;
        };
        for i in (0..scores.len()).filter(|&i| fold[i] == f) {
            truth.push(labels[i]);
            before.push(scores[i]);
            after.push(calibration.predict(scores[i]));
        }
    }
    expected_calibration_error(&truth, &after, 10) < expected_calibration_error(&truth, &before, 10)
}

/// Σ over equal-count bins of the sorted probabilities of (bin share) × |mean
/// probability − share of positives| (NannyML's bins: n / bins rows each, the last
/// taking the rest; fewer bins for fewer than 2 × bins rows).
pub fn expected_calibration_error(labels: &[bool], probabilities: &[f64], bins: usize) -> f64 {
    let n = probabilities.len();
    let bins = if n <= 2 * bins { n / 2 } else { bins }.max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let width = n / bins;
    let mut ece = 0.0;
    for b in 0..bins {
        let (lo, hi) = (b * width, if b + 1 == bins { n } else { (b + 1) * width });
        let rows = &order[lo..hi];
        if rows.is_empty() {
            continue;
        }
        let m = rows.len() as f64;
        let p: f64 = rows.iter().map(|&i| probabilities[i]).sum::<f64>() / m;
        let t = rows.iter().filter(|&&i| labels[i]).count() as f64 / m;
        ece += m / n as f64 * (p - t).abs();
    }
    ece
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn() {
        // IsotonicRegression(out_of_bounds="clip").fit(x, y):
        // x = [0.1, 0.2, 0.2, 0.3, 0.4, 0.5], y = [0, 1, 0, 0, 1, 1]
        // predict([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.45, 0.9])
        // -> [0, 0, 1/6, 1/3, 1/3, 1/3, 1, 1]
        let x = [0.1, 0.2, 0.2, 0.3, 0.4, 0.5];
        let y = [false, true, false, false, true, true];
        let c = IsotonicCalibration::fit(&x, &y).unwrap();
        let expected = [
            0.0,
            0.0,
            1.0 / 6.0,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0,
            1.0,
        ];
        for (s, e) in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.45, 0.9]
            .iter()
            .zip(expected)
        {
            assert!((c.predict(*s) - e).abs() < 1e-12, "{s}: {}", c.predict(*s));
        }
        assert!(c.y.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn calibration_error_of_a_perfect_and_a_wrong_forecast() {
        let labels = [false, false, true, true];
        assert_eq!(
            expected_calibration_error(&labels, &[0.0, 0.0, 1.0, 1.0], 2),
            0.0
        );
        assert_eq!(
            expected_calibration_error(&labels, &[1.0, 1.0, 0.0, 0.0], 2),
            1.0
        );
    }

    #[test]
    fn overconfident_scores_need_calibration() {
        // Scores of 0.9 where a tenth of the rows are positive.
        let n = 400;
        let scores: Vec<f64> = (0..n).map(|i| 0.5 + 0.4 * (i as f64 / n as f64)).collect();
        let labels: Vec<bool> = (0..n).map(|i| i % 10 == 0 || i > 380).collect();
        assert!(needs_calibration(&scores, &labels));
        let one_class = vec![false; n];
        assert!(!needs_calibration(&scores, &one_class));
    }
}
