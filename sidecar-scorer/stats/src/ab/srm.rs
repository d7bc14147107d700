//! Sample ratio mismatch: are the arms' sizes what the split promised?

use crate::drift::chi2::chi2_sf;
use serde::{Deserialize, Serialize};

/// SRM is flagged below this p-value; a strict level because the check runs
/// continuously and a false alarm stops an experiment.
pub const SRM_P_VALUE: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SrmResult {
    pub statistic: f64,
    pub p_value: f64,
    pub mismatch: bool,
}

/// `scipy.stats.chisquare(counts, f_exp=shares · Σcounts)`; `shares` must be
/// positive and sum to 1. With no observations at all there is nothing to
/// test: statistic 0, p-value 1.
pub fn srm(counts: &[u64], shares: &[f64]) -> SrmResult {
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    if total == 0.0 || counts.len() < 2 {
        return SrmResult {
            statistic: 0.0,
            p_value: 1.0,
            mismatch: false,
        };
    }
    let statistic: f64 = counts
        .iter()
        .zip(shares)
        .map(|(&c, &s)| {
            let expected = s * total;
            let d = c as f64 - expected;
            d * d / expected
        })
        .sum();
    let p_value = chi2_sf(statistic, (counts.len() - 1) as f64);
    SrmResult {
        statistic,
        p_value,
        mismatch: p_value < SRM_P_VALUE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_chisquare() {
        // chisquare([1000, 1100], f_exp=[1050, 1050]) -> 4.761904761904762, p 0.02909...
        let r = srm(&[1000, 1100], &[0.5, 0.5]);
        assert!((r.statistic - 4.761904761904762).abs() < 1e-12);
        assert!(
            (r.p_value - 0.029_096_331_741_252_08).abs() < 1e-9,
            "{}",
            r.p_value
        );
        assert!(!r.mismatch);
        assert!(srm(&[1000, 1300], &[0.5, 0.5]).mismatch);
    }
}
