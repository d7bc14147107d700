//! Agreement with NannyML's CBPE on the fraud model's scores (`fixtures/cbpe.json`,
//! written by `make monitoring-fixtures`): a labelled reference of 20,000 scored
//! transactions and five analysis chunks of 5,000 (clean, covariate drift, concept
//! drift). The isotonic calibration, the estimated precision and recall, their
//! sampling errors and bands, and the realised precision, recall and average
//! precision agree to 1e-9 (absolute; the figures lie in [0, 1]).

use outrider_stats::performance::Reference;
use outrider_stats::performance::cbpe::{self, CbpeReference};
use outrider_stats::performance::isotonic::{IsotonicCalibration, needs_calibration};
use outrider_stats::performance::realised::{Confusion, average_precision};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let path = format!("{}/fixtures/cbpe.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn labels(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() == 1)
        .collect()
}

#[track_caller]
fn close(what: &str, got: f64, want: f64) -> f64 {
    let d = (got - want).abs();
    assert!(
        d <= TOLERANCE,
        "{what}: got {got}, NannyML {want} (difference {d:e})"
    );
    d
}

#[test]
fn cbpe_agrees_with_nannyml() {
    let f = fixture();
    let threshold = f["threshold"].as_f64().unwrap();
    let ref_scores = nums(&f["reference"]["scores"]);
    let ref_labels = labels(&f["reference"]["labels"]);
    let calibration = IsotonicCalibration::fit(&ref_scores, &ref_labels).unwrap();
    let mut worst: f64 = 0.0;
    for (s, want) in nums(&f["calibration_grid"]["scores"])
        .iter()
        .zip(nums(&f["calibration_grid"]["calibrated"]))
    {
        worst = worst.max(close(
            &format!("calibrated {s}"),
            calibration.predict(*s),
            want,
        ));
    }
    let calibrated = f["needs_calibration"].as_bool().unwrap();
    // NannyML decides on shuffled splits, this crate on fixed folds: same rule.
    assert_eq!(needs_calibration(&ref_scores, &ref_labels), calibrated);
    let predictions: Vec<bool> = ref_scores.iter().map(|&s| s >= threshold).collect();
    let reference = CbpeReference::fit(&predictions, &ref_labels);
    let chunks = f["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 5);
    for (k, chunk) in chunks.iter().enumerate() {
        let scores = nums(&chunk["scores"]);
        let truth = labels(&chunk["labels"]);
        let probabilities: Vec<f64> = scores
            .iter()
            .map(|&s| {
                if calibrated {
                    calibration.predict(s)
                } else {
                    s
                }
            })
            .collect();
        let flagged: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
        let e = cbpe::estimate(&reference, &probabilities, &flagged).unwrap();
        let n = &chunk["nannyml"];
        let part = chunk["part"].as_str().unwrap();
        for (metric, got) in [("precision", e.precision), ("recall", e.recall)] {
            let want = &n[metric];
            let name = |what: &str| format!("chunk {k} ({part}) {metric} {what}");
            worst = worst.max(close(
                &name("estimate"),
                got.value,
                want["value"].as_f64().unwrap(),
            ));
            worst = worst.max(close(
                &name("sampling error"),
                got.sampling_error.unwrap(),
                want["sampling_error"].as_f64().unwrap(),
            ));
            worst = worst.max(close(
                &name("upper bound"),
                got.high,
                want["upper_confidence_boundary"].as_f64().unwrap(),
            ));
            worst = worst.max(close(
                &name("lower bound"),
                got.low,
                want["lower_confidence_boundary"].as_f64().unwrap(),
            ));
        }
        let c = Confusion::of(&flagged, &truth);
        worst = worst.max(close(
            &format!("chunk {k} realised precision"),
            c.precision().unwrap(),
            n["precision"]["realized"].as_f64().unwrap(),
        ));
        worst = worst.max(close(
            &format!("chunk {k} realised recall"),
            c.recall().unwrap(),
            n["recall"]["realized"].as_f64().unwrap(),
        ));
        worst = worst.max(close(
            &format!("chunk {k} realised average precision"),
            average_precision(&scores, &truth).unwrap(),
            n["average_precision"]["realized"].as_f64().unwrap(),
        ));
        eprintln!(
            "chunk {k} ({part}): estimated precision {:.4} / recall {:.4}, realised {:.4} / {:.4}",
            e.precision.value,
            e.recall.value,
            c.precision().unwrap(),
            c.recall().unwrap()
        );
    }
    eprintln!(
        "largest difference from NannyML {}: {worst:e}",
        f["nannyml"]
    );
}

/// A profile's `Reference` takes the same decisions on the same data.
#[test]
fn the_profile_reference_estimates_as_nannyml() {
    let f = fixture();
    let threshold = f["threshold"].as_f64().unwrap();
    let reference = Reference::fit(
        &nums(&f["reference"]["scores"]),
        &labels(&f["reference"]["labels"]),
        threshold,
    )
    .unwrap();
    assert_eq!(
        reference.calibration.is_some(),
        f["needs_calibration"].as_bool().unwrap()
    );
    for chunk in f["chunks"].as_array().unwrap() {
        let e = reference.estimate(&nums(&chunk["scores"])).unwrap();
        close(
            "precision",
            e.precision.value,
            chunk["nannyml"]["precision"]["value"].as_f64().unwrap(),
        );
        close(
            "recall",
            e.recall.value,
            chunk["nannyml"]["recall"]["value"].as_f64().unwrap(),
        );
    }
}
