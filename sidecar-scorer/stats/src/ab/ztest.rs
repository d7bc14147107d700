//! Two-proportion z-test (pooled variance) and Wald interval (unpooled).

use super::normal;

/// The comparison of a variant's conversion rate with the control's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProportionTest {
    /// `p_variant − p_control`.
    pub difference: f64,
    /// Unpooled standard error of the difference (the Wald interval's).
    pub std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub z: f64,
    pub p_value: f64,
}

/// `statsmodels.stats.proportion.proportions_ztest([x_v, x_c], [n_v, n_c])`
/// for the two-sided p-value, and
/// `confint_proportions_2indep(x_v, n_v, x_c, n_c, method="wald", compare="diff")`
/// for the interval. Both rates equal to 0 or 1 leave no variance: the
/// difference is then exactly 0 and the p-value is reported as 1.
pub fn two_proportion(x_c: f64, n_c: f64, x_v: f64, n_v: f64, alpha: f64) -> ProportionTest {
    let (p_c, p_v) = (x_c / n_c, x_v / n_v);
    let difference = p_v - p_c;
    let pooled = (x_c + x_v) / (n_c + n_v);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_v)).sqrt();
    let (z, p_value) = if se_pooled > 0.0 {
        let z = difference / se_pooled;
        (z, 2.0 * normal::sf(z.abs()))
    } else {
        (0.0, 1.0)
    };
    let std_error = (p_v * (1.0 - p_v) / n_v + p_c * (1.0 - p_c) / n_c).sqrt();
    let half = normal::isf(alpha / 2.0) * std_error;
    ProportionTest {
        difference,
        std_error,
        ci_low: difference - half,
        ci_high: difference + half,
        z,
        p_value: p_value.min(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_statsmodels_example() {
        // proportions_ztest([130, 120], [1000, 1000]) -> z 0.67612..., p 0.49896...
        // confint_proportions_2indep(130, 1000, 120, 1000, method="wald")
        //   -> (-0.01898..., 0.03898...)
        let t = two_proportion(120.0, 1000.0, 130.0, 1000.0, 0.05);
        assert!((t.z - 0.676_123_403_782_813_9).abs() < 1e-12, "{}", t.z);
        assert!(
            (t.p_value - 0.498_962_298_603_760_6).abs() < 1e-12,
            "{}",
            t.p_value
        );
        assert!((t.ci_low - (-0.018_984_945_128_217_943)).abs() < 1e-12);
        assert!((t.ci_high - 0.038_984_945_128_217_96).abs() < 1e-12);
    }

    #[test]
    fn no_variance_means_no_evidence() {
        let t = two_proportion(0.0, 100.0, 0.0, 50.0, 0.05);
        assert_eq!((t.difference, t.p_value), (0.0, 1.0));
    }
}
