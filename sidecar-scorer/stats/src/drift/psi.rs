//! Population Stability Index.

/// Share substituted for an empty bin so that the logarithm stays finite.
pub const EMPTY_BIN_SHARE: f64 = 0.0001;

/// PSI = Σ (c − r) · ln(c / r) over the bin shares of the reference `r` and the
/// current sample `c`, a zero share replaced by [`EMPTY_BIN_SHARE`].
pub fn psi(reference_shares: &[f64], current_shares: &[f64]) -> f64 {
    reference_shares
        .iter()
        .zip(current_shares)
        .map(|(&r, &c)| {
            let r = if r == 0.0 { EMPTY_BIN_SHARE } else { r };
            let c = if c == 0.0 { EMPTY_BIN_SHARE } else { c };
            (c - r) * (c / r).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_shares_have_zero_psi() {
        assert_eq!(psi(&[0.2, 0.3, 0.5], &[0.2, 0.3, 0.5]), 0.0);
    }

    #[test]
    fn empty_bins_are_floored() {
        let expected = (0.0001 - 0.5) * (0.0001f64 / 0.5).ln() + (1.0 - 0.5) * 2f64.ln();
        assert!((psi(&[0.5, 0.5], &[0.0, 1.0]) - expected).abs() < 1e-15);
    }
}
