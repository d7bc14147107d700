//! Always-valid inference: the asymptotic confidence sequence of
//! Waudby-Smith, Arnold, Wu, Howard & Ramdas, "Time-uniform central limit
//! theory and asymptotic confidence sequences" (Annals of Statistics 2024),
//! with the normal-mixture boundary and tuning parameterisation used by
//! GrowthBook's sequential engine.
//!
//! With `N` observations in the two arms, `σ̂² = N · se²` and the mixing
//! parameter `ρ² = (−2 ln α + ln(−2 ln α + 1)) / tuning`, the half-width is
//!
//! `σ̂ · sqrt( 2 (Nρ² + 1) / (N²ρ²) · ln( sqrt(Nρ² + 1) / α ) )`.
//!
//! The interval is narrowest around `N ≈ tuning`. The p-value is its dual:
//! the smallest α whose sequence excludes 0, so `p < α` exactly when the
//! interval excludes 0.

/// The mixing parameter ρ for a target sample size `tuning`.
pub fn rho(alpha: f64, tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / tuning).sqrt()
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialInterval {
    pub ci_low: f64,
    pub ci_high: f64,
    pub half_width: f64,
    pub p_value: f64,
}

/// Confidence sequence and always-valid p-value for a difference with
/// standard error `se`, after `n_total` observations over both arms.
pub fn confidence_sequence(
    difference: f64,
    se: f64,
    n_total: f64,
    alpha: f64,
    tuning: f64,
) -> SequentialInterval {
    let r = rho(alpha, tuning);
    let nr2 = n_total * r * r;
    let s2 = se * se * n_total;
    let half_width = s2.sqrt()
        * (2.0 * (nr2 + 1.0) / (nr2 * n_total) * ((nr2 + 1.0).sqrt() / alpha).ln()).sqrt();
    let p_value = if se > 0.0 {
        let z2 = difference * difference / (se * se);
        ((nr2 + 1.0).sqrt() * (-(nr2 * z2) / (2.0 * (nr2 + 1.0))).exp()).min(1.0)
    } else if difference == 0.0 {
        1.0
    } else {
        0.0
    };
    SequentialInterval {
        ci_low: difference - half_width,
        ci_high: difference + half_width,
        half_width,
        p_value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_is_dual_to_the_interval() {
        for &(d, se) in &[(0.01, 0.004), (0.02, 0.004), (-0.05, 0.01), (0.0, 0.01)] {
            let s = confidence_sequence(d, se, 20_000.0, 0.05, 5000.0);
            let excludes_zero = s.ci_low > 0.0 || s.ci_high < 0.0;
            assert_eq!(excludes_zero, s.p_value < 0.05, "d={d} se={se} {s:?}");
        }
    }

    #[test]
    fn wider_than_the_fixed_horizon_interval() {
        let s = confidence_sequence(0.0, 0.01, 10_000.0, 0.05, 5000.0);
        assert!(s.half_width > 1.96 * 0.01);
    }

    #[test]
    fn matches_growthbook_formula() {
        // halfwidth = sqrt(s2) * sqrt(2 (N ρ² + 1) ln(sqrt(N ρ² + 1)/α) / (N ρ)²)
        let (se, n, alpha, tuning) = (0.02, 3000.0f64, 0.05f64, 5000.0);
        let r = rho(alpha, tuning);
        let s2 = se * se * n;
        let expected = s2.sqrt()
            * (2.0 * (n * r * r + 1.0) * ((n * r * r + 1.0).sqrt() / alpha).ln() / (n * r).powi(2))
                .sqrt();
        let got = confidence_sequence(0.1, se, n, alpha, tuning).half_width;
        assert!((got - expected).abs() < 1e-15 * expected.max(1.0));
    }
}
