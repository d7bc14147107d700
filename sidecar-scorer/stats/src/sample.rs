//! Small numeric helpers shared by the tests: sorting, ranks, quantiles.

/// A sorted copy of a sample whose values are known to be finite.
pub(crate) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut out = values.to_vec();
    out.sort_unstable_by(f64::total_cmp);
    out
}

/// Number of elements `<= x` in a sorted slice (`numpy.searchsorted(side="right")`).
#[inline]
pub(crate) fn count_le(sorted: &[f64], x: f64) -> usize {
    sorted.partition_point(|&v| v <= x)
}

/// `numpy.quantile(values, q)` with the default "linear" method, on a sorted
/// non-empty sample. The interpolation follows numpy's `_lerp` exactly so that
/// bin edges agree to the last bit (a value equal to an edge must land in the
/// same bin in both implementations).
pub(crate) fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virtual_index = (n as f64 - 1.0) * q;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let i = previous as usize;
    lerp(sorted[i], sorted[i + 1], gamma)
}

#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Mean of a non-empty sample.
pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Population standard deviation (ddof 0), as `numpy.std`.
pub(crate) fn std_population(values: &[f64]) -> f64 {
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / values.len() as f64).sqrt()
}

/// Ranks of `x` within the pooled sample `x ∪ y` (average ranks for ties),
/// summed over `x`, and the tie term Σ(t³ − t) over groups of equal values.
pub(crate) fn rank_sum_and_ties(x: &[f64], y: &[f64]) -> (f64, f64) {
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i + 1;
        while j < pooled.len() && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        // Positions i..j (0-based) share the average rank of i+1..=j.
        let average_rank = (i + 1 + j) as f64 / 2.0;
        let in_x = pooled[i..j].iter().filter(|p| p.1).count();
        rank_sum_x += average_rank * in_x as f64;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    (rank_sum_x, tie_term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_examples() {
        let s = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0.25, 0.5, 0.9]) = [1.75, 2.5, 3.7]
        assert_eq!(quantile_linear(&s, 0.25), 1.75);
        assert_eq!(quantile_linear(&s, 0.5), 2.5);
        assert!((quantile_linear(&s, 0.9) - 3.7).abs() < 1e-15);
        assert_eq!(quantile_linear(&s, 1.0), 4.0);
        assert_eq!(quantile_linear(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn ranks_average_ties() {
        // pooled 1,2,2,3 -> ranks 1, 2.5, 2.5, 4; x = {2, 3}
        let (r, t) = rank_sum_and_ties(&[2.0, 3.0], &[1.0, 2.0]);
        assert_eq!(r, 6.5);
        assert_eq!(t, 6.0);
    }

    #[test]
    fn count_le_is_searchsorted_right() {
        let s = [1.0, 2.0, 2.0, 3.0];
        assert_eq!(count_le(&s, 2.0), 3);
        assert_eq!(count_le(&s, 0.5), 0);
        assert_eq!(count_le(&s, 9.0), 4);
    }
}
