//! The model monitor's judgment on its own (no server): a fraud model trained by the
//! model crate, its reference profile, and windows of freshly generated transactions
//! scored by the model. Undrifted traffic over 240 windows raises no finding (the
//! false-alarm rate per window and per 200 windows is measured and printed); injected
//! covariate drift raises feature and dataset drift within the hysteresis; concept
//! drift moves no drift statistic.

mod common;

use std::collections::BTreeMap;

use outrider_model::data::schema::FEATURES;
use outrider_model::data::{Drift, GeneratorConfig, Transaction, generate};
use outrider_model::onnx::OnnxModel;
use outrider_model::train;
use outrider_scorer::monitor::findings::{FindingKind, flags, hysteresis};
use outrider_scorer::monitor::judge::{MonitoredSample, Span, WindowReport, judge};
use outrider_scorer::monitor::settings::{MonitorSettings, WindowBy};

use common::monitored::v1;

/// Samples per window: 60 s at 200 req/s sampled at 10% is 1,200; 500 is a harder test.
const WINDOW: usize = 500;

/// `windows` windows of live traffic from `seed` with `drift`, as the filter samples
/// them (features by name, the score from the model). Rows come in time order, a day
/// per window. The generator makes a customer per 40 rows, so the first windows of a
/// run of at least 40 are taken: customers' own features (account age, device age,
/// usual spend) then spread as in the reference.
fn windows(seed: u64, windows: usize, drift: Drift) -> Vec<Vec<MonitoredSample>> {
    let run = windows.max(40);
    let rows: Vec<Transaction> = generate(&GeneratorConfig {
        rows: run * WINDOW,
        seed,
        days: run as u32,
        drift,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let model = OnnxModel::from_bytes(&v1().onnx).unwrap();
    let refs: Vec<&Transaction> = rows.iter().collect();
    let scores = train::score(&model, &refs).unwrap();
    let samples: Vec<MonitoredSample> = rows
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (t, score))| MonitoredSample {
            id: i as u64 + 1,
            at_ms: i as u64,
            features: FEATURES
                .iter()
                .zip(t.features())
                .map(|(name, v)| ((*name).to_owned(), f64::from(v)))
                .collect::<BTreeMap<_, _>>(),
            score: Some(score),
        })
        .collect();
    samples
        .chunks(WINDOW)
        .take(windows)
        .map(<[_]>::to_vec)
        .collect()
}

/// Judges the windows in turn, each with the findings after it.
fn judged(windows: &[Vec<MonitoredSample>], settings: &MonitorSettings) -> Vec<WindowReport> {
    let profile = &v1().profile;
    let mut out: Vec<WindowReport> = Vec::new();
    for (k, samples) in windows.iter().enumerate() {
        let span = Span {
            by: WindowBy::Count,
            start: (k * WINDOW) as u64,
            end: ((k + 1) * WINDOW) as u64,
        };
        let mut report = judge(profile, 1, span, samples, settings, k as u64);
        let previous = out.last().map(|w| w.findings.clone()).unwrap_or_default();
        let mut history: Vec<&WindowReport> = out.iter().collect();
        history.push(&report);
        report.findings = hysteresis(&history, &settings.hysteresis, &previous, k as u64).0;
        out.push(report);
    }
    out
}

/// The defaults, with the hour of the day excluded as docs/monitoring.md advises for
/// seasonal features: the generator draws each row's day at random, so a window of
/// consecutive rows holds the hours of parts of two days, unlike the reference's
/// whole month.
fn settings() -> MonitorSettings {
    MonitorSettings {
        min_samples: 200,
        exclude: vec!["hour".into()],
        ..MonitorSettings::default()
    }
}

#[test]
fn undrifted_traffic_raises_no_finding_over_240_windows() {
    let reports = judged(&windows(2, 240, Drift::default()), &settings());
    let flagged = reports.iter().filter(|w| !flags(w).is_empty()).count();
    let feature_flags: usize = reports.iter().map(|w| flags(w).len()).sum();
    let findings = reports.iter().filter(|w| !w.findings.is_empty()).count();
    let worst_psi = reports
        .iter()
        .flat_map(|w| w.features.iter().chain([&w.prediction]))
        .filter(|f| f.name != "hour")
        .filter_map(|f| {
            f.statistics
                .as_ref()
                .map(|s| (s.psi, s.js_distance, f.name.clone()))
        })
        .fold(
            (0.0, 0.0, String::new()),
            |a, b| if b.0 > a.0 { b } else { a },
        );
    let worst_js = reports
        .iter()
        .flat_map(|w| w.features.iter().chain([&w.prediction]))
        .filter(|f| f.name != "hour")
        .filter_map(|f| f.statistics.as_ref().map(|s| s.js_distance))
        .fold(0.0, f64::max);
    eprintln!(
        "undrifted, {} windows of {WINDOW} samples: {flagged} windows with a flag ({:.4} per window, {feature_flags} flags of 11 series), \
         {findings} windows with a finding ({:.4} per window, {:.2} per 200 windows); largest PSI {:.4} ({}), largest JS distance {worst_js:.4}",
        reports.len(),
        flagged as f64 / reports.len() as f64,
        findings as f64 / reports.len() as f64,
        200.0 * findings as f64 / reports.len() as f64,
        worst_psi.0,
        worst_psi.2,
    );
    for (k, w) in reports.iter().enumerate() {
        for (key, why) in flags(w) {
            eprintln!("  window {k}: {key:?}: {why}");
        }
    }
    assert!(reports.iter().all(|w| w.judged));
    assert_eq!(findings, 0, "undrifted traffic raised findings");
    // Far from the thresholds, not just under them.
    assert!(worst_psi.0 < 0.1, "{worst_psi:?}");
    assert!(worst_js < 0.15, "{worst_js}");
}

#[test]
fn covariate_drift_is_found_within_the_hysteresis_and_concept_drift_is_not() {
    // Two of the nine judged features drift: a dataset verdict at 20%.
    let s = MonitorSettings {
        dataset_share: 0.2,
        ..settings()
    };
    let mut traffic = windows(3, 4, Drift::default());
    traffic.extend(windows(
        4,
        6,
        Drift {
            amount_scale: 2.0,
            new_category_share: 0.1,
            ..Drift::default()
        },
    ));
    let reports = judged(&traffic, &s);
    assert!(
        reports[..4].iter().all(|w| w.findings.is_empty()),
        "{:#?}",
        reports[3].findings
    );
    let first = reports
        .iter()
        .position(|w| {
            w.findings
                .iter()
                .any(|f| f.key.kind == FindingKind::DatasetDrift)
        })
        .expect("dataset drift found");
    let windows_to_finding = first + 1 - 4;
    eprintln!(
        "covariate drift found {windows_to_finding} windows after its onset: {:#?}",
        reports[first].findings
    );
    assert_eq!(
        windows_to_finding, s.hysteresis.drifted,
        "as soon as the hysteresis allows"
    );
    let kinds: Vec<(FindingKind, &str)> = reports[first]
        .findings
        .iter()
        .map(|f| (f.key.kind, f.key.subject.as_str()))
        .collect();
    assert!(
        kinds.contains(&(FindingKind::FeatureDrift, "amount")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(FindingKind::FeatureDrift, "merchant_category")),
        "{kinds:?}"
    );
    let category = &reports[first].features[1];
    assert!(
        category.unseen > 0,
        "crypto_exchange has a code the profile does not have"
    );

    // Concept drift: fraud follows a new pattern, inputs as before.
    let concept = judged(
        &windows(
            5,
            20,
            Drift {
                fraud_shift: 1.0,
                ..Drift::default()
            },
        ),
        &s,
    );
    let flags_seen: usize = concept.iter().map(|w| flags(w).len()).sum();
    eprintln!("concept drift over 20 windows: {flags_seen} flags");
    assert!(
        concept.iter().all(|w| w.findings.is_empty()),
        "concept drift moved no input"
    );
}

#[test]
fn a_pipeline_sending_nulls_is_a_missing_finding() {
    let mut traffic = windows(6, 5, Drift::default());
    // From window 2 on, half the samples lack the distance (the filter leaves nulls out).
    for window in &mut traffic[2..] {
        for (i, s) in window.iter_mut().enumerate() {
            if i % 2 == 0 {
                s.features.remove("distance_from_home_km");
            }
        }
    }
    let reports = judged(&traffic, &settings());
    let last = reports.last().unwrap();
    let distance = &last.features[3];
    assert_eq!(distance.name, "distance_from_home_km");
    assert_eq!(distance.missing, WINDOW as u64 / 2);
    assert!(
        last.findings
            .iter()
            .any(|f| f.key.kind == FindingKind::FeatureMissing
                && f.key.subject == "distance_from_home_km")
    );
    // The values that did arrive are still judged, and undrifted.
    assert!(
        last.findings
            .iter()
            .all(|f| f.key.kind == FindingKind::FeatureMissing),
        "{:?}",
        last.findings
    );
}
