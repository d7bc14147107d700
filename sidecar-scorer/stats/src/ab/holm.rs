//! Holm's step-down correction for multiple comparisons.

/// `statsmodels.stats.multitest.multipletests(p, method="holm")[1]`: the
/// i-th smallest p-value is multiplied by `m − i` (0-based), running maxima
/// keep the order, and values are capped at 1.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &idx) in order.iter().enumerate() {
        let value = ((m - rank) as f64 * p_values[idx]).min(1.0);
        running = running.max(value);
        adjusted[idx] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_statsmodels_example() {
        // multipletests([0.01, 0.04, 0.03], method="holm") -> [0.03, 0.06, 0.06]
        let a = holm(&[0.01, 0.04, 0.03]);
        let expected = [0.03, 0.06, 0.06];
        for (x, e) in a.iter().zip(expected) {
            assert!((x - e).abs() < 1e-15, "{a:?}");
        }
    }
}
