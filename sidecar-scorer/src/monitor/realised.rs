//! Realised performance of a version on its labelled window: the samples of the last
//! `labelled_window_seconds` that have an outcome label, at the profile's operating
//! threshold, beside the CBPE estimate for the same samples, so the estimate can be
//! checked once labels are in.

use outrider_stats::performance::Reference;
use outrider_stats::performance::cbpe::Estimate;
use outrider_stats::performance::realised::{Realised, realised};
use serde::{Deserialize, Serialize};

use super::findings::{Finding, FindingKey, FindingKind};
use super::settings::PerformanceLimits;

/// A sample with its score and outcome label (1: positive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Labelled {
    pub at_ms: u64,
    pub score: f64,
    pub label: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealisedPerformance {
    pub model: String,
    pub version: u64,
    /// The labelled window: samples' times in [from_ms, to_ms).
    pub from_ms: u64,
    pub to_ms: u64,
    pub threshold: f64,
    pub realised: Realised,
    /// CBPE's estimate for the same samples, from their scores alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated: Option<Estimate>,
    pub reference_precision: f64,
    pub reference_recall: f64,
    pub reference_pr_auc: f64,
    /// Findings on the labelled window (only `realised_performance_drop`).
    pub findings: Vec<Finding>,
    pub evaluated_ms: u64,
}

/// Realised figures of one window's labelled samples, and the drops they show once
/// the window has `min_positives` positives: a metric whose Wilson interval lies
/// below the reference's figure and whose value is more than `max_drop` below it.
pub fn evaluate(
    (model, version): (&str, u64),
    reference: &Reference,
    rows: &[Labelled],
    (from_ms, to_ms): (u64, u64),
    limits: &PerformanceLimits,
    now_ms: u64,
) -> RealisedPerformance {
    let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
    let labels: Vec<bool> = rows.iter().map(|r| r.label).collect();
    let figures = realised(&scores, &labels, reference.threshold);
    let mut findings = Vec::new();
    if figures.positives >= limits.min_positives {
        for (metric, value, r) in [
            ("precision", figures.precision, reference.precision),
            ("recall", figures.recall, reference.recall),
        ] {
            let Some(v) = value else { continue };
            if v.high < r && v.value < r - limits.max_drop {
                findings.push(Finding {
                    key: FindingKey {
                        kind: FindingKind::RealisedPerformanceDrop,
                        subject: metric.to_owned(),
                    },
                    windows: 1,
                    of: 1,
                    detail: format!(
                        "realised {metric} {:.3} (95% {:.3}-{:.3}) on {} labelled samples ({} positive) against {r:.3} on the reference",
                        v.value, v.low, v.high, figures.rows, figures.positives
                    ),
                    since_ms: now_ms,
                });
            }
        }
    }
    RealisedPerformance {
        model: model.to_owned(),
        version,
        from_ms,
        to_ms,
        threshold: reference.threshold,
        estimated: reference.estimate(&scores),
        realised: figures,
        reference_precision: reference.precision,
        reference_recall: reference.recall,
        reference_pr_auc: reference.pr_auc,
        findings,
        evaluated_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recall_drop_beyond_its_interval_is_a_finding() {
        // Reference: threshold 0.5, recall 0.8 on 1,000 rows.
        let scores: Vec<f64> = (0..1000)
            .map(|i| {
                if i < 100 {
                    if i < 80 { 0.9 } else { 0.1 }
                } else if i < 120 {
                    0.9
                } else {
                    0.1
                }
            })
            .collect();
        let labels: Vec<bool> = (0..1000).map(|i| i < 100).collect();
        let reference = Reference::fit(&scores, &labels, 0.5).unwrap();
        assert!((reference.recall - 0.8).abs() < 1e-12);
        let limits = PerformanceLimits::default();
        // Live: 40 positives, only 10 of them flagged (recall 0.25), and as many
        // false alarms (precision 0.5 against 0.8).
        let rows: Vec<Labelled> = (0..400)
            .map(|i| Labelled {
                at_ms: i,
                score: if i < 10 || (40..50).contains(&i) {
                    0.9
                } else {
                    0.1
                },
                label: i < 40,
            })
            .collect();
        let r = evaluate(("fraud", 1), &reference, &rows, (0, 400), &limits, 9);
        assert_eq!(r.realised.positives, 40);
        assert_eq!(r.realised.recall.unwrap().value, 0.25);
        let dropped: Vec<&str> = r.findings.iter().map(|f| f.key.subject.as_str()).collect();
        assert_eq!(dropped, ["precision", "recall"], "{r:#?}");
        assert_eq!(r.realised.precision.unwrap().value, 0.5);
        // Too few positives: no finding.
        let few = evaluate(("fraud", 1), &reference, &rows[..15], (0, 15), &limits, 9);
        assert!(few.findings.is_empty());
    }
}
