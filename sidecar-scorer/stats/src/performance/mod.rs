//! A binary classifier's performance at its operating threshold, with and without
//! labels.
//!
//! - [`isotonic`]: isotonic calibration of scores (scikit-learn's
//!   `IsotonicRegression(out_of_bounds="clip")`, which NannyML's CBPE uses);
//! - [`cbpe`]: confidence-based performance estimation before labels arrive:
//!   expected precision and recall from calibrated probabilities, with NannyML's
//!   sampling error;
//! - [`realised`]: precision and recall with Wilson intervals and average precision
//!   (PR AUC) with a bootstrap percentile interval, once labels are in;
//! - [`Reference`]: what a model's profile keeps of its held-out data to do both.

pub mod cbpe;
pub mod isotonic;
pub mod realised;

use serde::{Deserialize, Serialize};

use crate::InputError;
use cbpe::CbpeReference;
use isotonic::IsotonicCalibration;

/// What the estimates of one model need from its reference (held-out, labelled)
/// data: the operating threshold, the calibration of its scores (none when
/// calibrating would not improve them), the sampling-error components, and the
/// realised figures on the reference itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// A score at or above it flags the row (predicts positive).
    pub threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<IsotonicCalibration>,
    pub cbpe: CbpeReference,
    pub rows: u64,
    pub positives: u64,
    pub precision: f64,
    pub recall: f64,
    pub pr_auc: f64,
}

impl Reference {
    /// Fits on labelled reference rows (both classes present). The scores are
    /// calibrated when 10-fold cross-validated isotonic calibration lowers the
    /// expected calibration error ([`isotonic::needs_calibration`]), NannyML's rule.
    pub fn fit(scores: &[f64], labels: &[bool], threshold: f64) -> Result<Self, InputError> {
        if scores.len() != labels.len() {
            return Err(InputError::invalid(
                "labels",
                "must have one label per score",
            ));
        }
        crate::error::require_finite("scores", scores)?;
        if !threshold.is_finite() {
            return Err(InputError::invalid("threshold", "must be a finite number"));
        }
        let positives = labels.iter().filter(|&&l| l).count();
        if positives == 0 || positives == labels.len() {
            return Err(InputError::invalid(
                "labels",
                "the reference needs both positive and negative rows",
            ));
        }
        let predictions: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
        let calibration = isotonic::needs_calibration(scores, labels)
            .then(|| IsotonicCalibration::fit(scores, labels))
            .transpose()?;
        let counts = realised::Confusion::of(&predictions, labels);
        Ok(Self {
            threshold,
            calibration,
            cbpe: CbpeReference::fit(&predictions, labels),
            rows: scores.len() as u64,
            positives: positives as u64,
            precision: counts.precision().unwrap_or(0.0),
            recall: counts.recall().unwrap_or(0.0),
            pr_auc: realised::average_precision(scores, labels).unwrap_or(0.0),
        })
    }

    /// A score as a probability: calibrated if the reference needed it.
    pub fn probability(&self, score: f64) -> f64 {
        match &self.calibration {
            Some(c) => c.predict(score),
            None => score,
        }
    }

    /// CBPE's estimate for the scores of one window.
    pub fn estimate(&self, scores: &[f64]) -> Option<cbpe::Estimate> {
        let probabilities: Vec<f64> = scores.iter().map(|&s| self.probability(s)).collect();
        let predictions: Vec<bool> = scores.iter().map(|&s| s >= self.threshold).collect();
        cbpe::estimate(&self.cbpe, &probabilities, &predictions)
    }
}
