//! Findings: what a window's verdicts flag, and the hysteresis that turns flags into
//! findings only when they held in N of the last M judged windows, so one noisy
//! window raises nothing. A finding that appears or clears between two windows is a
//! [`ModelEvent`], the feed a retraining policy follows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::judge::{Verdict, WindowReport};
use super::settings::Hysteresis;

outrider_protocol::closed_set! {
    /// What a finding is about; each has its alert.
    pub enum FindingKind {
        /// An input feature's distribution moved away from the reference.
        FeatureDrift => "feature_drift",
        /// At least `dataset_share` of the input features drifted together.
        DatasetDrift => "dataset_drift",
        /// The score's distribution moved.
        PredictionDrift => "prediction_drift",
        /// More than `missing_share` of the samples lack a feature (or the score).
        FeatureMissing => "feature_missing",
        /// CBPE's estimate of precision or recall fell below the reference.
        EstimatedPerformanceDrop => "estimated_performance_drop",
        /// Precision or recall on the labelled samples fell below the reference.
        RealisedPerformanceDrop => "realised_performance_drop",
    }
}

/// What a finding is about: its kind and, for per-feature or per-metric kinds, the
/// feature or metric (empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FindingKey {
    pub kind: FindingKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
}

/// A finding that holds, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(flatten)]
    pub key: FindingKey,
    /// Windows that flagged it among the last `of` judged ones (for the realised
    /// performance, 1 of 1: it is judged on the labelled window as a whole).
    pub windows: usize,
    pub of: usize,
    /// Why, in a sentence with the figures of the latest window that flagged it.
    pub detail: String,
    /// When it was first raised (the leader's clock), held while it lasts.
    #[serde(default)]
    pub since_ms: u64,
}

/// A tally of one key over the last judged windows, shown whether it alerts or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(flatten)]
    pub key: FindingKey,
    pub windows: usize,
    pub of: usize,
    pub alerting: bool,
}

/// What one window flags, each with a sentence of evidence.
pub fn flags(report: &WindowReport) -> BTreeMap<FindingKey, String> {
    let mut out = BTreeMap::new();
    if !report.judged {
        return out;
    }
    let key = |kind, subject: &str| FindingKey {
        kind,
        subject: subject.to_owned(),
    };
    let features = report
        .features
        .iter()
        .map(|f| (f, FindingKind::FeatureDrift, f.name.as_str()));
    let prediction = (&report.prediction, FindingKind::PredictionDrift, "");
    for (f, drift, subject) in features.chain([prediction]) {
        if f.missing_alarm {
            out.insert(
                key(FindingKind::FeatureMissing, &f.name),
                format!(
                    "{} missing in {} of {} samples ({:.1}%)",
                    f.name,
                    f.missing,
                    f.values + f.missing,
                    100.0 * f.missing_share
                ),
            );
        }
        if f.verdict == Verdict::Drifted {
            let figures = f.statistics.as_ref().map_or_else(String::new, |s| {
                format!("PSI {:.3}, JS distance {:.3}", s.psi, s.js_distance)
            });
            out.insert(
                key(drift, subject),
                format!("{} drifted: {figures}", f.name),
            );
        }
    }
    if report.dataset.verdict == Verdict::Drifted {
        out.insert(
            key(FindingKind::DatasetDrift, ""),
            format!(
                "{} of {} features drifted ({})",
                report.dataset.drifted.len(),
                report.dataset.judged,
                report.dataset.drifted.join(", ")
            ),
        );
    }
    if let Some(p) = &report.performance {
        for metric in &p.dropped {
            let (e, r) = if metric == "precision" {
                (p.estimate.precision, p.reference_precision)
            } else {
                (p.estimate.recall, p.reference_recall)
            };
            out.insert(
                key(FindingKind::EstimatedPerformanceDrop, metric),
                format!(
                    "estimated {metric} {:.3} (band {:.3}-{:.3}) against {r:.3} on the reference",
                    e.value, e.low, e.high
                ),
            );
        }
    }
    out
}

/// The findings and tallies after the newest of `history` (oldest first): each key
/// flagged in at least `drifted` of the last `windows` judged windows. A finding
/// among `previous` keeps its `since_ms`; a new one starts at `now_ms`.
pub fn hysteresis(
    history: &[&WindowReport],
    rule: &Hysteresis,
    previous: &[Finding],
    now_ms: u64,
) -> (Vec<Finding>, Vec<Tally>) {
    let judged: Vec<&WindowReport> = history.iter().copied().filter(|w| w.judged).collect();
    let last = &judged[judged.len().saturating_sub(rule.windows)..];
    let mut counts: BTreeMap<FindingKey, (usize, String)> = BTreeMap::new();
    for w in last {
        for (key, detail) in flags(w) {
            let entry = counts.entry(key).or_insert((0, String::new()));
            entry.0 += 1;
            entry.1 = detail;
        }
    }
    let of = last.len();
    let mut findings = Vec::new();
    let mut tallies = Vec::new();
    for (key, (windows, detail)) in counts {
        let alerting = windows >= rule.drifted;
        if alerting {
            let since_ms = previous
                .iter()
                .find(|f| f.key == key)
                .map_or(now_ms, |f| f.since_ms);
            findings.push(Finding {
                key: key.clone(),
                windows,
                of,
                detail,
                since_ms,
            });
        }
        tallies.push(Tally {
            key,
            windows,
            of,
            alerting,
        });
    }
    (findings, tallies)
}

outrider_protocol::closed_set! {
    /// How a finding changed.
    pub enum EventKind {
        Raised => "raised",
        Cleared => "cleared",
    }
}

/// A finding raised or cleared by a judged window: stored with the window (once),
/// and the feed a retraining policy reads in order (`Store::model_events`, or
/// `Monitor::subscribe` in the same process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvent {
    /// The store's id, increasing; 0 before it is stored.
    #[serde(default)]
    pub id: u64,
    pub model: String,
    pub version: u64,
    pub kind: EventKind,
    pub finding: Finding,
    /// The end of the window that raised or cleared it.
    pub window_end: u64,
    pub at_ms: u64,
}

/// Events between the findings before and after a window.
pub fn changes(before: &[Finding], after: &WindowReport) -> Vec<ModelEvent> {
    let old: BTreeSet<&FindingKey> = before.iter().map(|f| &f.key).collect();
    let new: BTreeSet<&FindingKey> = after.findings.iter().map(|f| &f.key).collect();
    let event = |kind, finding: &Finding| ModelEvent {
        id: 0,
        model: after.model.clone(),
        version: after.version,
        kind,
        finding: finding.clone(),
        window_end: after.end,
        at_ms: after.judged_ms,
    };
    let mut out: Vec<ModelEvent> = after
        .findings
        .iter()
        .filter(|f| !old.contains(&f.key))
        .map(|f| event(EventKind::Raised, f))
        .collect();
    out.extend(
        before
            .iter()
            .filter(|f| !new.contains(&f.key))
            .map(|f| event(EventKind::Cleared, f)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::judge::{DatasetVerdict, FeatureKind, FeatureReport, Statistics};
    use crate::monitor::settings::WindowBy;

    fn feature(name: &str, drifted: bool, missing_alarm: bool) -> FeatureReport {
        FeatureReport {
            name: name.into(),
            kind: FeatureKind::Numeric,
            values: 90,
            missing: 10,
            missing_share: 0.1,
            unseen: 0,
            statistics: Some(Statistics {
                psi: if drifted { 0.5 } else { 0.01 },
                js_distance: 0.05,
                ks_statistic: None,
                wasserstein_normed: None,
                chi2: None,
                chi2_p_value: None,
            }),
            verdict: if drifted {
                Verdict::Drifted
            } else {
                Verdict::Ok
            },
            missing_alarm,
        }
    }

    fn window(end: u64, amount_drifted: bool, judged: bool) -> WindowReport {
        WindowReport {
            model: "fraud".into(),
            version: 1,
            by: WindowBy::Time,
            start: end - 10,
            end,
            first_ms: None,
            last_ms: None,
            samples: if judged { 100 } else { 3 },
            judged,
            features: vec![
                feature("amount", amount_drifted, false),
                feature("hour", false, end == 30),
            ],
            prediction: feature("score", false, false),
            dataset: DatasetVerdict {
                judged: 2,
                drifted: if amount_drifted {
                    vec!["amount".into()]
                } else {
                    vec![]
                },
                share: if amount_drifted { 0.5 } else { 0.0 },
                verdict: if amount_drifted {
                    Verdict::Drifted
                } else {
                    Verdict::Ok
                },
            },
            performance: None,
            findings: Vec::new(),
            judged_ms: end,
            sources: Vec::new(),
        }
    }

    #[test]
    fn a_finding_needs_n_of_m_judged_windows() {
        let rule = Hysteresis {
            drifted: 2,
            windows: 3,
        };
        // ok, drifted, (drifted, not judged), drifted, ok, ok
        let history = [
            window(10, false, true),
            window(20, true, true),
            window(25, true, false),
            window(30, true, true),
            window(40, false, true),
            window(50, false, true),
        ];
        let refs: Vec<&WindowReport> = history.iter().collect();
        let after = |n: usize, previous: &[Finding]| {
            hysteresis(&refs[..n], &rule, previous, history[n - 1].judged_ms)
        };
        // One noisy window raises nothing; the missing hour at 30 neither.
        assert!(after(1, &[]).0.is_empty());
        assert!(
            after(3, &[]).0.is_empty(),
            "the window without enough samples does not count"
        );
        let (found, tallies) = after(4, &[]);
        let keys: Vec<(FindingKind, &str)> = found
            .iter()
            .map(|f| (f.key.kind, f.key.subject.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                (FindingKind::FeatureDrift, "amount"),
                (FindingKind::DatasetDrift, "")
            ]
        );
        assert_eq!(
            (found[0].windows, found[0].of, found[0].since_ms),
            (2, 3, 30)
        );
        assert!(
            tallies
                .iter()
                .any(|t| t.key.kind == FindingKind::FeatureMissing
                    && t.windows == 1
                    && !t.alerting)
        );
        // Held at 40 (2 of the last 3), keeping its start; cleared at 50.
        let (held, _) = after(5, &found);
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].since_ms, 30);
        let (cleared, _) = after(6, &held);
        assert!(cleared.is_empty());
        let mut last = history[5].clone();
        last.findings = cleared;
        let events = changes(&held, &last);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.kind == EventKind::Cleared && e.window_end == 50)
        );
    }
}
