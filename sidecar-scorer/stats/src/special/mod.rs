//! Distributions that statrs does not provide: the exact finite-n
//! Kolmogorov distribution and the one-sided Smirnov distribution, as used by
//! `scipy.stats.kstwo` / `scipy.special.smirnov`.

pub mod kolmogorov;
pub mod smirnov;

/// `x * 2^exp` without overflowing the intermediate power of two.
pub(crate) fn ldexp(mut x: f64, mut exp: i64) -> f64 {
    while exp > 1000 {
        x *= 2f64.powi(1000);
        exp -= 1000;
    }
    while exp < -1000 {
        x *= 2f64.powi(-1000);
        exp += 1000;
    }
    x * 2f64.powi(exp as i32)
}
