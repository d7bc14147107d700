//! Ranking metrics of a fraud score: ROC AUC, PR AUC (average precision) and
//! recall at a fixed false-positive rate, the operating point fraud teams
//! care about (how much fraud is caught when 1% of honest customers are
//! bothered). Definitions follow scikit-learn's `roc_auc_score`,
//! `average_precision_score` and `roc_curve`; tied scores form one
//! threshold.

use serde::{Deserialize, Serialize};

/// The false-positive rate at which recall is reported.
pub const FPR_BUDGET: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub roc_auc: f64,
    pub pr_auc: f64,
    /// Largest recall at a threshold whose false-positive rate is at most 1%.
    pub recall_at_1pct_fpr: f64,
    /// The lowest score threshold reaching that recall within the budget.
    pub threshold_at_1pct_fpr: f64,
    pub rows: u64,
    pub positives: u64,
}

/// Metrics of `scores` against `labels` (true: fraud). Both classes must be
/// present.
pub fn evaluate(scores: &[f64], labels: &[bool]) -> Option<Metrics> {
    assert_eq!(scores.len(), labels.len());
    let positives = labels.iter().filter(|&&l| l).count() as u64;
    let negatives = labels.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));

    let (p, n) = (positives as f64, negatives as f64);
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut auc = 0.0;
    let mut ap = 0.0;
    let mut best_recall = 0.0;
    let mut best_threshold = f64::INFINITY;
    let mut i = 0;
    while i < order.len() {
        // One threshold per distinct score.
        let score = scores[order[i]];
        let (tp0, fp0) = (tp, fp);
        while i < order.len() && scores[order[i]] == score {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        // Trapezoid between the previous and this ROC point.
        auc += (fp - fp0) as f64 * (tp + tp0) as f64 / 2.0;
        let recall = tp as f64 / p;
        ap += (tp - tp0) as f64 / p * (tp as f64 / (tp + fp) as f64);
        if fp as f64 / n <= FPR_BUDGET && recall > best_recall {
            best_recall = recall;
            best_threshold = score;
        }
    }
    Some(Metrics {
        roc_auc: auc / (p * n),
        pr_auc: ap,
        recall_at_1pct_fpr: best_recall,
        threshold_at_1pct_fpr: best_threshold,
        rows: scores.len() as u64,
        positives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // scikit-learn: roc_auc_score = 0.75, average_precision_score = 0.8333...
        let scores = [0.1, 0.4, 0.35, 0.8];
        let labels = [false, false, true, true];
        let m = evaluate(&scores, &labels).unwrap();
        assert!((m.roc_auc - 0.75).abs() < 1e-12);
        assert!((m.pr_auc - (0.5 * 1.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
        // At FPR 0 the best recall is 0.5 (threshold 0.8).
        assert_eq!(m.recall_at_1pct_fpr, 0.5);
        assert_eq!(m.threshold_at_1pct_fpr, 0.8);
    }

    #[test]
    fn ties_count_half() {
        let m = evaluate(&[0.5, 0.5], &[true, false]).unwrap();
        assert_eq!(m.roc_auc, 0.5);
        assert_eq!(m.pr_auc, 0.5);
        assert_eq!(m.recall_at_1pct_fpr, 0.0);
    }

    #[test]
    fn perfect_and_reversed_rankings() {
        let labels = [true, true, false, false, false];
        let perfect = evaluate(&[0.9, 0.8, 0.3, 0.2, 0.1], &labels).unwrap();
        assert_eq!((perfect.roc_auc, perfect.pr_auc), (1.0, 1.0));
        assert_eq!(perfect.recall_at_1pct_fpr, 1.0);
        let reversed = evaluate(&[0.1, 0.2, 0.3, 0.8, 0.9], &labels).unwrap();
        assert_eq!(reversed.roc_auc, 0.0);
        assert!(evaluate(&[0.1], &[true]).is_none());
    }
}
