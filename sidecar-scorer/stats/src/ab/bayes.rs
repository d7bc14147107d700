//! Bayesian chance to beat control.

use super::normal;
use statrs::function::beta::ln_beta;

/// Above this many terms the exact binomial sum gives way to the normal
/// approximation of the two posteriors (by then both are very nearly normal).
pub const MAX_EXACT_TERMS: u64 = 2_000_000;

/// `P(p_variant > p_control)` under independent uniform priors, i.e. with
/// posteriors `Beta(1 + x, 1 + n − x)`.
///
/// Exact by the closed form `P(B > A) = Σ_{i<α_B} B(α_A+i, β_A+β_B) /
/// ((β_B+i) B(1+i, β_B) B(α_A, β_A))`; the four symmetric forms of it
/// (swapping the arms, or successes with failures) are used to sum over the
/// smallest count.
pub fn binomial_chance_to_beat(x_c: u64, n_c: u64, x_v: u64, n_v: u64) -> f64 {
    let (a_c, b_c) = ((x_c + 1) as f64, (n_c - x_c + 1) as f64);
    let (a_v, b_v) = ((x_v + 1) as f64, (n_v - x_v + 1) as f64);
    let smallest = a_c.min(b_c).min(a_v).min(b_v);
    if smallest > MAX_EXACT_TERMS as f64 {
        return normal_chance(a_c, b_c, a_v, b_v);
    }
    let p = if smallest == a_v {
        beats(a_c, b_c, a_v, b_v)
    } else if smallest == a_c {
        1.0 - beats(a_v, b_v, a_c, b_c)
    } else if smallest == b_c {
        // p_v > p_c  <=>  (1 − p_c) > (1 − p_v), with Beta(b, a) posteriors.
        beats(b_v, a_v, b_c, a_c)
    } else {
        1.0 - beats(b_c, a_c, b_v, a_v)
    };
    p.clamp(0.0, 1.0)
}

/// `P(X_B > X_A)` for `X_A ~ Beta(a_a, b_a)`, `X_B ~ Beta(a_b, b_b)` with
/// integer `a_b`, summing `a_b` terms.
fn beats(a_a: f64, b_a: f64, a_b: f64, b_b: f64) -> f64 {
    let terms = a_b as u64;
    let base = ln_beta(a_a, b_a);
    let mut total = 0.0;
    for i in 0..terms {
        let i = i as f64;
        total +=
            (ln_beta(a_a + i, b_a + b_b) - (b_b + i).ln() - ln_beta(1.0 + i, b_b) - base).exp();
    }
    total
}

fn normal_chance(a_c: f64, b_c: f64, a_v: f64, b_v: f64) -> f64 {
    let moments = |a: f64, b: f64| {
        let n = a + b;
        (a / n, a * b / (n * n * (n + 1.0)))
    };
    let (m_c, v_c) = moments(a_c, b_c);
    let (m_v, v_v) = moments(a_v, b_v);
    normal::cdf((m_v - m_c) / (v_c + v_v).sqrt())
}

/// `P(μ_variant > μ_control)` for a continuous metric under flat priors: the
/// posterior of the difference is normal with the Welch standard error.
pub fn continuous_chance_to_beat(difference: f64, std_error: f64) -> f64 {
    if std_error > 0.0 {
        normal::cdf(difference / std_error)
    } else if difference > 0.0 {
        1.0
    } else if difference < 0.0 {
        0.0
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_sensible() {
        let p = binomial_chance_to_beat(100, 1000, 100, 1000);
        assert!((p - 0.5).abs() < 1e-12, "{p}");
        let better = binomial_chance_to_beat(100, 1000, 130, 1000);
        let worse = binomial_chance_to_beat(130, 1000, 100, 1000);
        assert!(better > 0.95);
        assert!((better + worse - 1.0).abs() < 1e-12);
        // Every symmetric form gives the same answer.
        let a = binomial_chance_to_beat(3, 10, 900, 1000);
        let b = 1.0 - binomial_chance_to_beat(900, 1000, 3, 10);
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn uniform_posteriors() {
        // Beta(1,1) against Beta(2,1): P = 2/3.
        assert!((binomial_chance_to_beat(0, 0, 1, 1) - 2.0 / 3.0).abs() < 1e-14);
    }
}
