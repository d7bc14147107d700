//! First Wasserstein (earth mover's) distance between two samples.

/// `scipy.stats.wasserstein_distance(u, v)` on sorted, non-empty samples:
/// the integral of |F_u − F_v| over the pooled support.
pub fn distance_sorted(u: &[f64], v: &[f64]) -> f64 {
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    // Walk the pooled sorted values; between consecutive pooled values x_k and
    // x_{k+1} both empirical CDFs are constant (counts of values <= x_k).
    let mut current = u[0].min(v[0]);
    loop {
        while i < u.len() && u[i] <= current {
            i += 1;
        }
        while j < v.len() && v[j] <= current {
            j += 1;
        }
        let next = match (u.get(i), v.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        total += (i as f64 / nu - j as f64 / nv).abs() * (next - current);
        current = next;
    }
    total
}

/// [`distance_sorted`] on unsorted finite samples.
pub fn wasserstein_distance(u: &[f64], v: &[f64]) -> f64 {
    distance_sorted(&crate::sample::sorted(u), &crate::sample::sorted(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_docstring_examples() {
        // scipy docs: wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0
        assert!((wasserstein_distance(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]) - 5.0).abs() < 1e-12);
        // wasserstein_distance([3.4, 3.9, 7.5, 7.8], [4.5, 1.4]) == 2.7
        let d = wasserstein_distance(&[3.4, 3.9, 7.5, 7.8], &[4.5, 1.4]);
        assert!((d - 2.7).abs() < 1e-12, "{d}");
        assert_eq!(wasserstein_distance(&[1.0, 2.0], &[2.0, 1.0]), 0.0);
    }
}
