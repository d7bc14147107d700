//! Jensen-Shannon distance.

/// `scipy.spatial.distance.jensenshannon(p, q, base=2)`: both vectors are
/// normalised to sum 1, then `sqrt((KL(p‖m) + KL(q‖m)) / 2)` with
/// `m = (p + q) / 2`, logarithms in base 2 so the distance lies in [0, 1].
/// Returns `None` when either vector sums to zero (no distribution).
pub fn distance(p: &[f64], q: &[f64]) -> Option<f64> {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    if !(sp > 0.0 && sq > 0.0) {
        return None;
    }
    let mut left = 0.0;
    let mut right = 0.0;
    for (&pi, &qi) in p.iter().zip(q) {
        let pi = pi / sp;
        let qi = qi / sq;
        let m = (pi + qi) / 2.0;
        left += rel_entr(pi, m);
        right += rel_entr(qi, m);
    }
    let js = (left + right) / std::f64::consts::LN_2;
    // Rounding can leave a tiny negative divergence for near-identical inputs.
    Some((js / 2.0).max(0.0).sqrt())
}

/// `scipy.special.rel_entr` for the non-negative inputs used here.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_distributions_are_at_distance_one() {
        let d = distance(&[1.0, 0.0], &[0.0, 1.0]).unwrap();
        assert!((d - 1.0).abs() < 1e-15);
        assert_eq!(distance(&[0.3, 0.7], &[3.0, 7.0]), Some(0.0));
        assert_eq!(distance(&[0.0, 0.0], &[1.0, 0.0]), None);
    }
}
