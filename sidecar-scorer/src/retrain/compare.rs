//! The challenger against the champion on the labelled window: both versions score
//! the same labelled samples, and the challenger passes if its PR AUC is at least the
//! champion's plus the policy's `min_pr_auc_gain`. Without a champion (a model's
//! first version) there is nothing to beat.

use outrider_model::train::metrics::{Metrics, evaluate};
use serde::{Deserialize, Serialize};

use super::ChallengerGate;

/// One version's figures on the labelled window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub version: u64,
    pub pr_auc: f64,
    pub roc_auc: f64,
    pub recall_at_1pct_fpr: f64,
}

impl Figures {
    fn of(version: u64, m: &Metrics) -> Self {
        Figures {
            version,
            pr_auc: m.pr_auc,
            roc_auc: m.roc_auc,
            recall_at_1pct_fpr: m.recall_at_1pct_fpr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Labelled samples both versions scored, and the frauds among them.
    pub labelled: u64,
    pub positives: u64,
    pub challenger: Option<Figures>,
    pub champion: Option<Figures>,
    /// Challenger PR AUC minus the champion's.
    pub gain: Option<f64>,
    pub passed: bool,
    pub reason: String,
}

/// Judges `challenger` against `champion` (each a version and its scores of the same
/// samples, in the order of `labels`).
pub fn judge(
    gate: &ChallengerGate,
    labels: &[bool],
    challenger: (u64, &[f64]),
    champion: Option<(u64, &[f64])>,
) -> Comparison {
    let labelled = labels.len() as u64;
    let positives = labels.iter().filter(|l| **l).count() as u64;
    let mut out = Comparison {
        labelled,
        positives,
        challenger: None,
        champion: None,
        gain: None,
        passed: false,
        reason: String::new(),
    };
    if labelled < gate.min_labelled {
        out.reason = format!(
            "{labelled} labelled samples, fewer than the {} the gate needs",
            gate.min_labelled
        );
        return out;
    }
    let Some(ours) = evaluate(challenger.1, labels) else {
        out.reason =
            format!("the labelled window needs both classes: {positives} frauds in {labelled}");
        return out;
    };
    out.challenger = Some(Figures::of(challenger.0, &ours));
    let Some((version, scores)) = champion else {
        out.passed = true;
        out.reason = format!(
            "no champion to beat; v{} PR AUC {:.4} on {labelled} labelled samples",
            challenger.0, ours.pr_auc
        );
        return out;
    };
    let Some(theirs) = evaluate(scores, labels) else {
        out.reason = "the champion could not be judged".to_owned();
        return out;
    };
    out.champion = Some(Figures::of(version, &theirs));
    let gain = ours.pr_auc - theirs.pr_auc;
    out.gain = Some(gain);
    out.passed = gain >= gate.min_pr_auc_gain;
    out.reason = format!(
        "v{} PR AUC {:.4} against champion v{version} {:.4} ({gain:+.4}; the gate needs {:+.4}) on {labelled} labelled samples, {positives} frauds",
        challenger.0, ours.pr_auc, theirs.pr_auc, gate.min_pr_auc_gain
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenger_must_rank_frauds_at_least_as_well_as_the_champion() {
        let labels = [true, false, true, false, false, false];
        let good = [0.9, 0.1, 0.8, 0.2, 0.3, 0.1];
        let poor = [0.4, 0.6, 0.8, 0.2, 0.3, 0.1];
        let gate = ChallengerGate {
            min_pr_auc_gain: 0.0,
            min_labelled: 6,
        };
        let c = judge(&gate, &labels, (2, &good), Some((1, &poor)));
        assert!(c.passed, "{c:?}");
        assert_eq!(c.challenger.as_ref().unwrap().pr_auc, 1.0);
        // The poor ranking: frauds at ranks 1 and 3 → AP = (1/1 + 2/3) / 2.
        assert!((c.champion.as_ref().unwrap().pr_auc - 5.0 / 6.0).abs() < 1e-12);
        let c = judge(&gate, &labels, (2, &poor), Some((1, &good)));
        assert!(!c.passed);
        assert!(c.reason.contains("-0.1667"), "{}", c.reason);
        let first = judge(&gate, &labels, (1, &good), None);
        assert!(first.passed && first.champion.is_none());
        let few = judge(
            &ChallengerGate {
                min_labelled: 7,
                ..gate.clone()
            },
            &labels,
            (2, &good),
            None,
        );
        assert!(!few.passed);
        assert_eq!(
            few.reason,
            "6 labelled samples, fewer than the 7 the gate needs"
        );
    }
}
