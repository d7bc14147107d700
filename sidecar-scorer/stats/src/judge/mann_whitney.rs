//! Mann-Whitney U test: the p-value as scipy computes it, and the
//! Hodges-Lehmann shift estimate with its confidence interval as Kayenta
//! computes it (the normal approximation of R's `wilcox.test(conf.int=TRUE)`).

use crate::ab::normal;
use crate::sample::rank_sum_and_ties;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MwuResult {
    /// U statistic of the first sample.
    pub u: f64,
    pub p_value: f64,
}

/// `scipy.stats.mannwhitneyu(x, y, alternative="two-sided",
/// method="asymptotic", use_continuity=True)` on non-empty finite samples.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> MwuResult {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let (r1, tie_term) = rank_sum_and_ties(x, y);
    let u1 = r1 - n1 * (n1 + 1.0) / 2.0;
    let u = u1.max(n1 * n2 - u1);
    let n = n1 + n2;
    let s = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    let numerator = u - n1 * n2 / 2.0 - 0.5;
    // Every value tied: s = 0 and numerator < 0, so z = −∞ and p = 1.
    let p = if s > 0.0 {
        2.0 * normal::sf(numerator / s)
    } else {
        1.0
    };
    MwuResult {
        u: u1,
        p_value: p.clamp(0.0, 1.0),
    }
}

/// Location shift `x − y` with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftEstimate {
    pub lower: f64,
    pub upper: f64,
    pub estimate: f64,
}

/// Standardised Wilcoxon statistic of `x − mu` against `y`, with continuity
/// and tie corrections, minus `zq`; non-increasing in `mu`. `None` when every
/// value is tied.
fn wilcoxon_z(x: &[f64], y: &[f64], mu: f64, zq: f64) -> Option<f64> {
    let shifted: Vec<f64> = x.iter().map(|v| v - mu).collect();
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let (rank_sum, tie_term) = rank_sum_and_ties(&shifted, y);
    let dz = rank_sum - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
    let correction = 0.5 * dz.signum() * f64::from(dz != 0.0);
    let sigma =
        (nx * ny / 12.0 * ((nx + ny + 1.0) - tie_term / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
    (sigma > 0.0).then(|| (dz - correction) / sigma - zq)
}

/// The `mu` in `[lo, hi]` where the non-increasing step function
/// `wilcoxon_z(mu)` crosses zero, by bisection to double precision: the
/// crossing is a jump at one of the pairwise differences, which bisection
/// pins exactly.
fn crossing(x: &[f64], y: &[f64], zq: f64, mut lo: f64, mut hi: f64) -> Option<f64> {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if wilcoxon_z(x, y, mid, zq)? > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

/// Confidence interval and Hodges-Lehmann estimate of the shift `x − y` at
/// `confidence` (Kayenta uses 0.98). When each sample is a single repeated
/// value the shift is known exactly and the interval collapses onto it
/// (Kayenta jitters such data with tiny Gaussian noise to the same effect).
/// `None` when every value of both samples is the same.
pub fn shift_interval(x: &[f64], y: &[f64], confidence: f64) -> Option<ShiftEstimate> {
    let (x_min, x_max) = min_max(x);
    let (y_min, y_max) = min_max(y);
    if x_min == x_max && y_min == y_max {
        if x_min == y_min {
            return None;
        }
        let d = x_min - y_min;
        return Some(ShiftEstimate {
            lower: d,
            upper: d,
            estimate: d,
        });
    }
    let (mu_min, mu_max) = (x_min - y_max, x_max - y_min);
    let zq = normal::isf((1.0 - confidence) / 2.0);
    let bound = |zq: f64| -> Option<f64> {
        if wilcoxon_z(x, y, mu_min, zq)? <= 0.0 {
            Some(mu_min)
        } else if wilcoxon_z(x, y, mu_max, zq)? >= 0.0 {
            Some(mu_max)
        } else {
            crossing(x, y, zq, mu_min, mu_max)
        }
    };
    Some(ShiftEstimate {
        lower: bound(zq)?,
        upper: bound(-zq)?,
        estimate: crossing(x, y, 0.0, mu_min, mu_max)?,
    })
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_matches_scipy_example() {
        // mannwhitneyu([1,2,3,4,5], [3,4,5,6,7,8,9], method="asymptotic")
        let r = mann_whitney_u(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        );
        assert_eq!(r.u, 4.5);
        assert!(
            (r.p_value - 0.041_278_051_383_745_684).abs() < 1e-9,
            "{}",
            r.p_value
        );
        assert_eq!(mann_whitney_u(&[1.0, 1.0], &[1.0]).p_value, 1.0);
    }

    #[test]
    fn shift_of_a_translated_sample_is_recovered() {
        let y: Vec<f64> = (0..50).map(|i| (i * 37 % 50) as f64).collect();
        let x: Vec<f64> = y.iter().map(|v| v + 10.0).collect();
        let s = shift_interval(&x, &y, 0.98).unwrap();
        assert!((s.estimate - 10.0).abs() < 1e-9, "{s:?}");
        assert!(s.lower < 10.0 && s.upper > 10.0 && s.lower > 0.0);
    }

    #[test]
    fn r_wilcox_test_example() {
        // R: wilcox.test(c(1.83,0.50,1.62,2.48,1.68,1.88,1.55,3.06,1.30),
        //                c(0.878,0.647,0.598,2.05,1.06,1.29,1.06,3.14,1.29),
        //                conf.int=TRUE, exact=FALSE, conf.level=0.95)
        // The shift estimate lies inside its interval, near the median of the
        // pairwise differences.
        let x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30];
        let y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.15, 1.29];
        let s = shift_interval(&x, &y, 0.95).unwrap();
        assert!(s.lower < s.estimate && s.estimate < s.upper);
        assert!(s.estimate > 0.2 && s.estimate < 0.7, "{s:?}");
    }
}
