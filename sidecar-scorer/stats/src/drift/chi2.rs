//! Chi-square test of homogeneity on a 2×k contingency table.

use statrs::distribution::{ChiSquared, ContinuousCDF};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chi2Result {
    pub statistic: f64,
    pub p_value: f64,
    pub dof: u64,
}

/// `scipy.stats.chi2_contingency([row_a, row_b], correction=False)` for two
/// rows of counts over the same k categories. Every column must have a
/// positive total and both rows a positive sum (checked by the caller). With
/// one category there is no degree of freedom: statistic 0, p-value 1, as scipy.
pub fn contingency_2xk(row_a: &[u64], row_b: &[u64]) -> Chi2Result {
    let k = row_a.len();
    if k <= 1 {
        return Chi2Result {
            statistic: 0.0,
            p_value: 1.0,
            dof: 0,
        };
    }
    let sum_a: f64 = row_a.iter().map(|&c| c as f64).sum();
    let sum_b: f64 = row_b.iter().map(|&c| c as f64).sum();
    let total = sum_a + sum_b;
    let mut statistic = 0.0;
    for (&a, &b) in row_a.iter().zip(row_b) {
        let column = (a + b) as f64;
        for (observed, row_sum) in [(a as f64, sum_a), (b as f64, sum_b)] {
            let expected = row_sum * column / total;
            let diff = observed - expected;
            statistic += diff * diff / expected;
        }
    }
    let dof = (k - 1) as u64;
    Chi2Result {
        statistic,
        p_value: chi2_sf(statistic, dof as f64),
        dof,
    }
}

/// Upper tail of the chi-square distribution.
pub(crate) fn chi2_sf(x: f64, dof: f64) -> f64 {
    match ChiSquared::new(dof) {
        Ok(dist) => dist.sf(x).clamp(0.0, 1.0),
        Err(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_example() {
        // chi2_contingency([[10, 20, 30], [20, 20, 20]], correction=False)
        // -> statistic 5.333333333333334, p 0.06948345122280154
        let r = contingency_2xk(&[10, 20, 30], &[20, 20, 20]);
        assert!((r.statistic - 5.333333333333334).abs() < 1e-12);
        assert!((r.p_value - 0.06948345122280154).abs() < 1e-12);
        assert_eq!(r.dof, 2);
    }
}
