//! Confidence-based performance estimation (CBPE, as NannyML computes it for a
//! binary classifier): with calibrated probabilities p, a flagged row is a true
//! positive with probability p and a false positive with 1 − p, an unflagged one a
//! false negative with probability p. So before any label arrives
//!
//! - expected precision = Σ_flagged p / #flagged,
//! - expected recall = Σ_flagged p / Σ_all p,
//!
//! each with NannyML's sampling error σ = sd_ref / √(n · share_ref), where sd_ref is
//! the standard deviation of the per-row outcome on the reference (TP 1 / FP 0 among
//! flagged rows for precision, TP 1 / FN 0 among positives for recall) and share_ref
//! the reference's share of flagged rows (precision) or of positives (recall). The
//! band is the estimate ± 3σ, clipped to [0, 1].

use serde::{Deserialize, Serialize};

/// Standard errors on each side of the estimate in its band (NannyML's
/// `SAMPLING_ERROR_RANGE`).
pub const BAND_SIGMAS: f64 = 3.0;

/// The sampling-error components of the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbpeReference {
    /// sd of TP (1) / FP (0) over the flagged reference rows; null without any.
    pub precision_sd: Option<f64>,
    /// Share of the reference rows flagged.
    pub flagged_share: f64,
    /// sd of TP (1) / FN (0) over the positive reference rows; null without any.
    pub recall_sd: Option<f64>,
    /// Share of the reference rows that are positive.
    pub positive_share: f64,
}

impl CbpeReference {
    pub fn fit(predictions: &[bool], labels: &[bool]) -> Self {
        let n = predictions.len().max(1) as f64;
        let outcomes = |keep: &dyn Fn(usize) -> bool| -> Option<f64> {
            let values: Vec<f64> = (0..predictions.len())
                .filter(|&i| keep(i))
                .map(|i| f64::from(u8::from(predictions[i] && labels[i])))
                .collect();
            (!values.is_empty()).then(|| sd(&values))
        };
        Self {
            precision_sd: outcomes(&|i| predictions[i]),
            flagged_share: predictions.iter().filter(|&&p| p).count() as f64 / n,
            recall_sd: outcomes(&|i| labels[i]),
            positive_share: labels.iter().filter(|&&l| l).count() as f64 / n,
        }
    }
}

/// Population standard deviation (numpy's default, ddof 0).
fn sd(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// One estimated figure with its sampling error and band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimated {
    pub value: f64,
    /// Null when the reference had no row to measure it on.
    pub sampling_error: Option<f64>,
    pub low: f64,
    pub high: f64,
}

impl Estimated {
    fn new(value: f64, sampling_error: Option<f64>) -> Self {
        let half = sampling_error.map_or(0.0, |s| BAND_SIGMAS * s);
        Self {
            value,
            sampling_error,
            low: (value - half).max(0.0),
            high: (value + half).min(1.0),
        }
    }
}

/// CBPE's estimate for one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub rows: u64,
    pub flagged: u64,
    pub precision: Estimated,
    pub recall: Estimated,
}

/// The estimate for a window's calibrated probabilities and predictions (flagged or
/// not); `None` for an empty window. Like NannyML, a window without flagged rows has
/// precision 0, one whose probabilities sum to 0 recall 0.
pub fn estimate(
    reference: &CbpeReference,
    probabilities: &[f64],
    predictions: &[bool],
) -> Option<Estimate> {
    let n = probabilities.len();
    if n == 0 {
        return None;
    }
    let (mut flagged_p, mut flagged, mut all_p) = (0.0, 0u64, 0.0);
    for (&p, &flag) in probabilities.iter().zip(predictions) {
        all_p += p;
        if flag {
            flagged_p += p;
            flagged += 1;
        }
    }
    let ratio = |a: f64, b: f64| if b != 0.0 { a / b } else { 0.0 };
    let error = |sd: Option<f64>, share: f64| {
        sd.filter(|_| share > 0.0)
            .map(|sd| sd / (n as f64 * share).sqrt())
    };
    Some(Estimate {
        rows: n as u64,
        flagged,
        precision: Estimated::new(
            ratio(flagged_p, flagged as f64),
            error(reference.precision_sd, reference.flagged_share),
        ),
        recall: Estimated::new(
            ratio(flagged_p, all_p),
            error(reference.recall_sd, reference.positive_share),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_estimate() {
        // Reference: flagged rows TP, TP, FP → sd of [1, 1, 0] = √2/3; 3 of 6 flagged.
        // Positives: TP, TP, FN → the same sd; 3 of 6 positive.
        let predictions = [true, true, true, false, false, false];
        let labels = [true, true, false, true, false, false];
        let r = CbpeReference::fit(&predictions, &labels);
        let sd = (2.0f64).sqrt() / 3.0;
        assert!((r.precision_sd.unwrap() - sd).abs() < 1e-15);
        assert!((r.recall_sd.unwrap() - sd).abs() < 1e-15);
        assert_eq!((r.flagged_share, r.positive_share), (0.5, 0.5));
        // Window: p = 0.9, 0.5 flagged; 0.2, 0.4 not.
        let e = estimate(&r, &[0.9, 0.5, 0.2, 0.4], &[true, true, false, false]).unwrap();
        assert!((e.precision.value - 0.7).abs() < 1e-15);
        assert!((e.recall.value - 1.4 / 2.0).abs() < 1e-15);
        let sigma = sd / (4.0f64 * 0.5).sqrt();
        assert!((e.precision.sampling_error.unwrap() - sigma).abs() < 1e-15);
        // 0.7 ± 3σ reaches past both ends: the band is clipped to [0, 1].
        assert_eq!((e.precision.low, e.precision.high), (0.0, 1.0));
        let many = estimate(&r, &[0.9; 400], &[true; 400]).unwrap();
        let sigma = sd / (400.0f64 * 0.5).sqrt();
        assert!((many.precision.low - (0.9 - 3.0 * sigma)).abs() < 1e-12);
        assert!(estimate(&r, &[], &[]).is_none());
        let none = estimate(&r, &[0.1], &[false]).unwrap();
        assert_eq!((none.precision.value, none.recall.value), (0.0, 0.0));
    }
}
