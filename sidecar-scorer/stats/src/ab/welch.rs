//! Welch's unequal-variance t-test from summary statistics.

use super::normal;
use statrs::distribution::{Continuous, ContinuousCDF, StudentsT};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTest {
    /// `mean_variant − mean_control`.
    pub difference: f64,
    pub std_error: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    pub t: f64,
    pub p_value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Mean and sample variance (ddof 1) of one arm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmMoments {
    pub n: f64,
    pub mean: f64,
    pub variance: f64,
}

/// `scipy.stats.ttest_ind_from_stats(variant..., control..., equal_var=False)`,
/// with the interval `difference ± t_{1−α/2, df} · se`. When both variances
/// are zero there is no noise: the p-value is 1 for equal means and 0
/// otherwise, and the interval collapses onto the difference.
pub fn welch(control: ArmMoments, variant: ArmMoments, alpha: f64) -> WelchTest {
    let vn_c = control.variance / control.n;
    let vn_v = variant.variance / variant.n;
    let se2 = vn_c + vn_v;
    let std_error = se2.sqrt();
    let difference = variant.mean - control.mean;
    if se2.is_nan() || se2 <= 0.0 {
        return WelchTest {
            difference,
            std_error: 0.0,
            df: f64::NAN,
            t: 0.0,
            p_value: if difference == 0.0 { 1.0 } else { 0.0 },
            ci_low: difference,
            ci_high: difference,
        };
    }
    let df = se2 * se2 / (vn_c * vn_c / (control.n - 1.0) + vn_v * vn_v / (variant.n - 1.0));
    let t = difference / std_error;
    let p_value = (2.0 * t_sf(t.abs(), df)).min(1.0);
    let half = t_isf(alpha / 2.0, df) * std_error;
    WelchTest {
        difference,
        std_error,
        df,
        t,
        p_value,
        ci_low: difference - half,
        ci_high: difference + half,
    }
}

/// Upper tail of Student's t.
pub(crate) fn t_sf(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) if df.is_finite() => dist.sf(t),
        _ => normal::sf(t),
    }
}

/// The `t` with upper tail `p`. statrs' inverse is good to about 1e-9;
/// Newton steps on the survival function bring it to double precision.
pub(crate) fn t_isf(p: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) if df.is_finite() => {
            let mut x = -dist.inverse_cdf(p);
            for _ in 0..3 {
                let density = dist.pdf(x);
                if density.is_nan() || density <= 0.0 {
                    break;
                }
                x += (dist.sf(x) - p) / density;
            }
            x
        }
        _ => normal::isf(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_example() {
        // ttest_ind_from_stats(10.5, 2.0, 40, 10.0, 3.0, 50, equal_var=False)
        let c = ArmMoments {
            n: 50.0,
            mean: 10.0,
            variance: 9.0,
        };
        let v = ArmMoments {
            n: 40.0,
            mean: 10.5,
            variance: 4.0,
        };
        let r = welch(c, v, 0.05);
        assert!((r.t - 0.944_911_182_523_067_9).abs() < 1e-12, "{}", r.t);
        assert!(
            (r.p_value - 0.347_368_844_863_297_83).abs() < 1e-9,
            "{}",
            r.p_value
        );
    }
}
