//! Standard normal tails (statrs), in the forms the tests need.

use statrs::distribution::{ContinuousCDF, Normal};

fn standard() -> Normal {
    Normal::standard()
}

/// `P(Z > z)`, accurate in the far tail (no `1 − cdf` cancellation).
pub fn sf(z: f64) -> f64 {
    standard().sf(z)
}

/// `Φ(z)`.
pub fn cdf(z: f64) -> f64 {
    standard().cdf(z)
}

/// The `z` with `P(Z > z) = p`.
pub fn isf(p: f64) -> f64 {
    -standard().inverse_cdf(p)
}
