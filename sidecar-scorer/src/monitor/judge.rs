//! One window of a model version's samples against the version's reference profile:
//! per-feature statistics and verdicts, prediction drift on the score, the dataset
//! verdict, missing values, and the CBPE estimate of precision and recall. Pure: the
//! runner reads the samples and stores the report.

use std::collections::BTreeMap;

use outrider_model::profile::{FeatureProfile, ModelProfile};
use outrider_stats::drift::{DriftThresholds, categorical_from_counts};
use outrider_stats::performance::cbpe::Estimate;
use outrider_stats::streaming::drift::ReferenceProfile;
use serde::{Deserialize, Serialize};

use super::findings::Finding;
use super::settings::{DriftLimits, MonitorSettings, WindowBy};
use super::watched::Source;

/// A sample as the monitor reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoredSample {
    /// The store's id: its order of arrival.
    pub id: u64,
    pub at_ms: u64,
    pub features: BTreeMap<String, f64>,
    pub score: Option<f64>,
}

outrider_protocol::closed_set! {
    /// A window's verdict on one feature, the score or the dataset.
    pub enum Verdict {
        Ok => "ok",
        Drifted => "drifted",
        /// Fewer values than `min_samples`: not judged.
        InsufficientData => "insufficient_data",
        /// Listed in `exclude`: its statistics are shown, never judged.
        Excluded => "excluded",
    }
}

outrider_protocol::closed_set! {
    /// How a profile entry is compared.
    pub enum FeatureKind {
        /// Counts in the reference's quantile bins, and a quantile sketch.
        Numeric => "numeric",
        /// Counts per category; a value is the category's code.
        Categorical => "categorical",
        /// The model's score: prediction drift.
        Score => "score",
    }
}

/// The statistics of one feature in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    pub psi: f64,
    pub js_distance: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks_statistic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein_normed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chi2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chi2_p_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReport {
    pub name: String,
    pub kind: FeatureKind,
    /// Samples that carried a value.
    pub values: u64,
    /// Samples without it (absent, null or not a number).
    pub missing: u64,
    pub missing_share: f64,
    /// Categorical values whose code names no category of the reference.
    #[serde(default)]
    pub unseen: u64,
    /// Null while not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    pub verdict: Verdict,
    /// More than `missing_share` of the window's samples lack it.
    pub missing_alarm: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVerdict {
    /// Input features judged in the window.
    pub judged: usize,
    pub drifted: Vec<String>,
    /// drifted / judged (0 with none judged).
    pub share: f64,
    pub verdict: Verdict,
}

/// CBPE's estimate in the window beside the reference's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatedPerformance {
    pub threshold: f64,
    pub estimate: Estimate,
    pub reference_precision: f64,
    pub reference_recall: f64,
    /// Metrics (`precision`, `recall`) that dropped (see `PerformanceLimits`).
    pub dropped: Vec<String>,
}

/// One judged window of one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub model: String,
    pub version: u64,
    pub by: WindowBy,
    /// The window is [start, end) in ms of sample time (`by` time), or (start, end]
    /// in sample ids (`by` count).
    pub start: u64,
    pub end: u64,
    /// Sample times of the first and last sample in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    pub samples: u64,
    /// At least `min_samples`: the window counts towards the hysteresis.
    pub judged: bool,
    pub features: Vec<FeatureReport>,
    pub prediction: FeatureReport,
    pub dataset: DatasetVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<EstimatedPerformance>,
    /// What holds after this window (the hysteresis over the windows up to it).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// When the leader judged it (its clock).
    pub judged_ms: u64,
    /// The variants whose samples it holds, as they were then: the labels of its
    /// samples are looked up there later, after a variant has moved to another version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
}

/// Where a window lies; its samples are given separately.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub by: WindowBy,
    pub start: u64,
    pub end: u64,
}

/// Judges a window; the findings are left to [`super::findings`].
pub fn judge(
    profile: &ModelProfile,
    version: u64,
    span: Span,
    samples: &[MonitoredSample],
    settings: &MonitorSettings,
    now_ms: u64,
) -> WindowReport {
    let n = samples.len() as u64;
    let judged = n >= settings.min_samples;
    let features: Vec<FeatureReport> = profile
        .features
        .iter()
        .map(|f| {
            let mut report = feature(f, samples, settings, judged);
            if settings.exclude.iter().any(|e| e == f.name()) && report.statistics.is_some() {
                report.verdict = Verdict::Excluded;
            }
            report
        })
        .collect();
    let scores: Vec<f64> = samples.iter().filter_map(|s| s.score).collect();
    let prediction = numeric(
        "score",
        FeatureKind::Score,
        &profile.score,
        &scores,
        n,
        settings,
        judged,
    );
    let drifted: Vec<String> = features
        .iter()
        .filter(|f| f.verdict == Verdict::Drifted)
        .map(|f| f.name.clone())
        .collect();
    let judged_features = features
        .iter()
        .filter(|f| matches!(f.verdict, Verdict::Ok | Verdict::Drifted))
        .count();
    let share = if judged_features == 0 {
        0.0
    } else {
        drifted.len() as f64 / judged_features as f64
    };
    let dataset = DatasetVerdict {
        judged: judged_features,
        share,
        verdict: if judged_features == 0 {
            Verdict::InsufficientData
        } else if share >= settings.dataset_share && !drifted.is_empty() {
            Verdict::Drifted
        } else {
            Verdict::Ok
        },
        drifted,
    };
    let performance = profile
        .performance
        .as_ref()
        .filter(|_| judged)
        .and_then(|reference| {
            let estimate = reference.estimate(&scores)?;
            let limit = settings.performance.max_drop;
            let mut dropped = Vec::new();
            for (metric, e, r) in [
                ("precision", estimate.precision, reference.precision),
                ("recall", estimate.recall, reference.recall),
            ] {
                if e.high < r && e.value < r - limit {
                    dropped.push(metric.to_owned());
                }
            }
            Some(EstimatedPerformance {
                threshold: reference.threshold,
                estimate,
                reference_precision: reference.precision,
                reference_recall: reference.recall,
                dropped,
            })
        });
    WindowReport {
        model: profile.model.clone(),
        version,
        by: span.by,
        start: span.start,
        end: span.end,
        first_ms: samples.iter().map(|s| s.at_ms).min(),
        last_ms: samples.iter().map(|s| s.at_ms).max(),
        samples: n,
        judged,
        features,
        prediction,
        dataset,
        performance,
        findings: Vec::new(),
        judged_ms: now_ms,
        sources: Vec::new(),
    }
}

fn feature(
    profile: &FeatureProfile,
    samples: &[MonitoredSample],
    settings: &MonitorSettings,
    judged: bool,
) -> FeatureReport {
    let name = profile.name();
    let values: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.features.get(name).copied())
        .collect();
    let n = samples.len() as u64;
    match profile {
        FeatureProfile::Numeric { reference, .. } => numeric(
            name,
            FeatureKind::Numeric,
            reference,
            &values,
            n,
            settings,
            judged,
        ),
        FeatureProfile::Categorical {
            categories, counts, ..
        } => categorical(name, categories, counts, &values, n, settings, judged),
    }
}

/// The missing figures, and whether the feature has values enough to be judged.
fn base(
    name: &str,
    kind: FeatureKind,
    values: usize,
    samples: u64,
    settings: &MonitorSettings,
    judged: bool,
) -> (FeatureReport, bool) {
    let missing = samples - values as u64;
    let missing_share = if samples == 0 {
        0.0
    } else {
        missing as f64 / samples as f64
    };
    let report = FeatureReport {
        name: name.to_owned(),
        kind,
        values: values as u64,
        missing,
        missing_share,
        unseen: 0,
        statistics: None,
        verdict: Verdict::InsufficientData,
        missing_alarm: judged && missing_share > settings.missing_share,
    };
    (report, judged && values as u64 >= settings.min_samples)
}

fn verdict(limits: &DriftLimits, s: &Statistics) -> Verdict {
    let over = |limit: Option<f64>, value: f64| limit.is_some_and(|l| value >= l);
    if over(limits.psi, s.psi) || over(limits.js_distance, s.js_distance) {
        Verdict::Drifted
    } else {
        Verdict::Ok
    }
}

fn numeric(
    name: &str,
    kind: FeatureKind,
    reference: &ReferenceProfile,
    values: &[f64],
    samples: u64,
    settings: &MonitorSettings,
    judged: bool,
) -> FeatureReport {
    let (mut report, enough) = base(name, kind, values.len(), samples, settings, judged);
    if !enough {
        return report;
    }
    let mut window = reference.new_window();
    for &x in values {
        window.observe(&reference.bins, x);
    }
    let Some(r) = window.report(reference, &DriftThresholds::default()) else {
        return report;
    };
    let statistics = Statistics {
        psi: r.psi,
        js_distance: r.js_distance,
        ks_statistic: Some(r.ks_statistic),
        wasserstein_normed: r.wasserstein_normed,
        chi2: None,
        chi2_p_value: None,
    };
    report.verdict = verdict(&settings.drift, &statistics);
    report.statistics = Some(statistics);
    report
}

/// The category of a code: its index in the reference's categories when it is a
/// whole number in range; any other value is a category the reference never saw.
fn category_of(code: f64, categories: usize) -> Option<usize> {
    (code.fract() == 0.0 && code >= 0.0 && code < categories as f64).then_some(code as usize)
}

fn categorical(
    name: &str,
    categories: &[String],
    reference_counts: &[u64],
    values: &[f64],
    samples: u64,
    settings: &MonitorSettings,
    judged: bool,
) -> FeatureReport {
    let (mut report, enough) = base(
        name,
        FeatureKind::Categorical,
        values.len(),
        samples,
        settings,
        judged,
    );
    let mut current = vec![0u64; categories.len() + 1];
    for &v in values {
        current[category_of(v, categories.len()).unwrap_or(categories.len())] += 1;
    }
    report.unseen = current[categories.len()];
    if !enough {
        return report;
    }
    // Categories neither side has are left out: they carry no information, and the
    // chi-square test needs every column to have a count.
    let (mut names, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &cur) in current.iter().enumerate() {
        let refc = reference_counts.get(i).copied().unwrap_or(0);
        if refc + cur > 0 {
            names.push(
                categories
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| "(unseen)".into()),
            );
            r.push(refc);
            c.push(cur);
        }
    }
    let table = categorical_from_counts(names, r, c, &DriftThresholds::default());
    let statistics = Statistics {
        psi: table.psi,
        js_distance: table.js_distance,
        ks_statistic: None,
        wasserstein_normed: None,
        chi2: Some(table.chi2),
        chi2_p_value: Some(table.chi2_p_value),
    };
    report.verdict = verdict(&settings.drift, &statistics);
    report.statistics = Some(statistics);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrider_model::profile;

    fn profile() -> ModelProfile {
        let xs: Vec<f64> = (0..1000).map(|i| f64::from(i % 100)).collect();
        ModelProfile {
            model: "fraud".into(),
            rows: 1000,
            features: vec![
                profile::numeric("amount", &xs).unwrap(),
                profile::categorical(
                    "kind",
                    &["a", "b"],
                    (0..1000).map(|i| if i % 4 == 0 { "b" } else { "a" }),
                ),
            ],
            score: profile::reference("score", &xs.iter().map(|x| x / 100.0).collect::<Vec<_>>())
                .unwrap(),
            performance: None,
        }
    }

    fn sample(id: u64, amount: Option<f64>, kind: f64) -> MonitoredSample {
        let mut features = BTreeMap::from([("kind".to_owned(), kind)]);
        if let Some(a) = amount {
            features.insert("amount".into(), a);
        }
        MonitoredSample {
            id,
            at_ms: id,
            features,
            score: Some((id % 100) as f64 / 100.0),
        }
    }

    fn settings() -> MonitorSettings {
        MonitorSettings {
            min_samples: 100,
            ..MonitorSettings::default()
        }
    }

    const SPAN: Span = Span {
        by: WindowBy::Count,
        start: 0,
        end: 400,
    };

    #[test]
    fn a_window_like_the_reference_is_ok() {
        let samples: Vec<_> = (0..400)
            .map(|i| {
                sample(
                    i,
                    Some((i % 100) as f64),
                    if i % 4 == 0 { 1.0 } else { 0.0 },
                )
            })
            .collect();
        let r = judge(&profile(), 1, SPAN, &samples, &settings(), 7);
        assert!(r.judged);
        assert_eq!(r.features[0].verdict, Verdict::Ok, "{r:#?}");
        assert_eq!(r.features[1].verdict, Verdict::Ok);
        // The same shares as the reference: no drift at all.
        assert!(r.features[1].statistics.as_ref().unwrap().psi.abs() < 1e-12);
        assert_eq!(r.dataset.verdict, Verdict::Ok);
        assert_eq!(r.prediction.verdict, Verdict::Ok);
    }

    #[test]
    fn shifted_values_unseen_codes_and_missing_values() {
        // Amounts tripled; a third of the kinds are code 7 (no such category); half
        // the samples without an amount.
        let samples: Vec<_> = (0..400)
            .map(|i| {
                let amount = (i % 2 == 0).then_some(3.0 * (i % 100) as f64);
                sample(i, amount, if i % 3 == 0 { 7.0 } else { 0.0 })
            })
            .collect();
        let r = judge(&profile(), 1, SPAN, &samples, &settings(), 7);
        let amount = &r.features[0];
        assert_eq!((amount.values, amount.missing), (200, 200));
        assert_eq!(amount.missing_share, 0.5);
        assert!(amount.missing_alarm);
        assert_eq!(amount.verdict, Verdict::Drifted);
        let kind = &r.features[1];
        assert_eq!(kind.unseen, 134);
        assert_eq!(kind.verdict, Verdict::Drifted);
        // Reference [a 750, b 250, unseen 0] against [266, 0, 134]: PSI by hand.
        let (ra, rb): (f64, f64) = (0.75, 0.25);
        let (ca, cb, cu) = (266.0 / 400.0, 0.0001, 134.0 / 400.0);
        let psi = (ca - ra) * (ca / ra).ln()
            + (cb - rb) * (cb / rb).ln()
            + (cu - 0.0001) * (cu / 0.0001f64).ln();
        assert!((kind.statistics.as_ref().unwrap().psi - psi).abs() < 1e-12);
        assert_eq!(r.dataset.drifted, ["amount", "kind"]);
        assert_eq!(
            (r.dataset.share, r.dataset.verdict),
            (1.0, Verdict::Drifted)
        );
        // Too few samples: nothing judged, nothing alarms.
        let r = judge(&profile(), 1, SPAN, &samples[..50], &settings(), 7);
        assert!(!r.judged);
        assert_eq!(r.features[0].verdict, Verdict::InsufficientData);
        assert!(!r.features[0].missing_alarm);
        assert_eq!(r.dataset.verdict, Verdict::InsufficientData);
    }

    #[test]
    fn an_excluded_feature_is_shown_but_not_judged() {
        let samples: Vec<_> = (0..400)
            .map(|i| {
                sample(
                    i,
                    Some(3.0 * (i % 100) as f64),
                    if i % 4 == 0 { 1.0 } else { 0.0 },
                )
            })
            .collect();
        let mut s = settings();
        s.exclude = vec!["amount".into()];
        let r = judge(&profile(), 1, SPAN, &samples, &s, 7);
        assert_eq!(r.features[0].verdict, Verdict::Excluded);
        assert!(r.features[0].statistics.as_ref().unwrap().psi > 0.2);
        assert_eq!((r.dataset.judged, r.dataset.verdict), (1, Verdict::Ok));
    }

    #[test]
    fn codes_map_to_categories_in_order() {
        assert_eq!(category_of(0.0, 2), Some(0));
        assert_eq!(category_of(1.0, 2), Some(1));
        for other in [2.0, -1.0, 0.5, f64::NAN] {
            assert_eq!(category_of(other, 2), None);
        }
    }
}
