//! Sample size for a minimum detectable effect (two-sided z-test).

use super::normal;
use crate::error::{InputError, require_open_unit};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerMetric {
    Binomial,
    Continuous,
}

fn default_alpha() -> f64 {
    0.05
}
fn default_power() -> f64 {
    0.8
}
fn default_ratio() -> f64 {
    1.0
}

/// Body of `stats power` / `POST /v1/stats/power`.
///
/// Binomial: `baseline` is the control's conversion rate. Continuous:
/// `baseline` is the control mean (used for a relative MDE only) and `sd` the
/// metric's standard deviation. `mde` is absolute unless `relative` is set,
/// then it is a fraction of `baseline`. `ratio` = n_variant / n_control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    pub metric: PowerMetric,
    #[serde(default)]
    pub baseline: Option<f64>,
    #[serde(default)]
    pub sd: Option<f64>,
    pub mde: f64,
    #[serde(default)]
    pub relative: bool,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default = "default_power")]
    pub power: f64,
    #[serde(default = "default_ratio")]
    pub ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerReport {
    /// Cohen's h (binomial) or d (continuous).
    pub effect_size: f64,
    pub n_control: u64,
    pub n_variant: u64,
    pub n_total: u64,
    /// The unrounded solution for the control arm.
    pub n_control_exact: f64,
    pub alpha: f64,
    pub power: f64,
}

/// n per arm such that a two-sided z-test at `alpha` detects the effect with
/// the requested power, as `statsmodels.stats.power.NormalIndPower
/// .solve_power(effect_size, alpha=alpha, power=power, ratio=ratio)` with
/// `effect_size` = `proportion_effectsize` (Cohen's h, arcsine scale) for
/// binomial metrics and `mde / sd` for continuous ones.
pub fn sample_size(request: &PowerRequest) -> Result<PowerReport, InputError> {
    require_open_unit("alpha", request.alpha)?;
    require_open_unit("power", request.power)?;
    if !(request.ratio.is_finite() && request.ratio > 0.0) {
        return Err(InputError::invalid("ratio", "must be a positive number"));
    }
    if !(request.mde.is_finite() && request.mde != 0.0) {
        return Err(InputError::invalid("mde", "must be a non-zero number"));
    }
    let baseline = |what: &str| {
        request
            .baseline
            .filter(|b| b.is_finite())
            .ok_or_else(|| InputError::invalid("baseline", format!("required {what}")))
    };
    let effect_size = match request.metric {
        PowerMetric::Binomial => {
            let p1 = baseline("for a binomial metric")?;
            require_open_unit("baseline", p1)?;
            let delta = if request.relative {
                p1 * request.mde
            } else {
                request.mde
            };
            let p2 = p1 + delta;
            if !(p2 > 0.0 && p2 < 1.0) {
                return Err(InputError::invalid(
                    "mde",
                    "baseline + mde must stay strictly between 0 and 1",
                ));
            }
            (2.0 * p2.sqrt().asin() - 2.0 * p1.sqrt().asin()).abs()
        }
        PowerMetric::Continuous => {
            let sd = request
                .sd
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    InputError::invalid("sd", "required for a continuous metric, positive")
                })?;
            let delta = if request.relative {
                baseline("for a relative mde")? * request.mde
            } else {
                request.mde
            };
            if delta == 0.0 {
                return Err(InputError::invalid("mde", "gives a zero effect"));
            }
            (delta / sd).abs()
        }
    };
    let n = solve_n(effect_size, request.alpha, request.power, request.ratio);
    let n_control = n.ceil() as u64;
    let n_variant = (n * request.ratio).ceil() as u64;
    Ok(PowerReport {
        effect_size,
        n_control,
        n_variant,
        n_total: n_control + n_variant,
        n_control_exact: n,
        alpha: request.alpha,
        power: request.power,
    })
}

/// Power of the two-sided z-test with `n1` in the control arm (both tails).
pub fn power_at(effect_size: f64, n1: f64, alpha: f64, ratio: f64) -> f64 {
    let n_eff = 1.0 / (1.0 / n1 + 1.0 / (n1 * ratio));
    let crit = normal::isf(alpha / 2.0);
    let shift = effect_size * n_eff.sqrt();
    normal::sf(crit - shift) + normal::cdf(-crit - shift)
}

fn solve_n(effect_size: f64, alpha: f64, power: f64, ratio: f64) -> f64 {
    // Closed form without the far tail, then bisection on the full power
    // function (monotone in n) to double precision.
    let z = normal::isf(alpha / 2.0) + normal::isf(1.0 - power);
    let guess = (z / effect_size).powi(2) * (1.0 + 1.0 / ratio);
    let (mut lo, mut hi) = (guess * 0.5, guess * 1.5 + 1.0);
    while power_at(effect_size, hi, alpha, ratio) < power {
        hi *= 2.0;
    }
    while power_at(effect_size, lo, alpha, ratio) > power && lo > 1e-12 {
        lo /= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if power_at(effect_size, mid, alpha, ratio) < power {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= hi * 1e-15 {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_example() {
        // NormalIndPower().solve_power(0.5, alpha=0.05, power=0.8) = 62.79088...
        let n = solve_n(0.5, 0.05, 0.8, 1.0);
        assert!((n - 62.790_884_165_711_35).abs() < 1e-6, "{n}");
    }

    #[test]
    fn rejects_impossible_rates() {
        let r = PowerRequest {
            metric: PowerMetric::Binomial,
            baseline: Some(0.95),
            sd: None,
            mde: 0.1,
            relative: false,
            alpha: 0.05,
            power: 0.8,
            ratio: 1.0,
        };
        assert_eq!(sample_size(&r).unwrap_err().field, "mde");
    }
}
