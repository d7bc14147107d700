//! A/B significance over per-variant sufficient statistics (n, sum, sum of
//! squares): fixed-horizon tests as statsmodels/scipy compute them, or an
//! always-valid confidence sequence; SRM; Holm; Bayesian chance to beat
//! control.

pub mod bayes;
pub mod holm;
pub mod normal;
pub mod power;
pub mod sequential;
pub mod srm;
pub mod welch;
pub mod ztest;

use crate::error::{InputError, require_open_unit};
use serde::{Deserialize, Serialize};
pub use srm::SrmResult;
use welch::ArmMoments;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Conversions: `sum` counts the successes among `n`.
    Binomial,
    /// Any real-valued metric, summarised by `sum` and `sum_sq`.
    Continuous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    #[default]
    None,
    Holm,
}

fn default_alpha() -> f64 {
    0.05
}
fn default_tuning() -> f64 {
    5000.0
}

/// Body of `stats ab` / `POST /v1/stats/ab`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbRequest {
    pub metric: MetricKind,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Name of the control variant; the first variant when absent.
    #[serde(default)]
    pub control: Option<String>,
    #[serde(default)]
    pub correction: Correction,
    #[serde(default)]
    pub sequential: bool,
    /// Sample size (both arms) at which the confidence sequence is tightest.
    #[serde(default = "default_tuning")]
    pub tuning: f64,
    pub variants: Vec<VariantStats>,
}

/// Sufficient statistics of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantStats {
    pub name: String,
    pub n: u64,
    pub sum: f64,
    /// Sum of squares; required for continuous metrics, ignored for binomial.
    #[serde(default)]
    pub sum_sq: Option<f64>,
    /// Planned traffic share; equal shares when absent on every variant.
    #[serde(default)]
    pub expected_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbReport {
    pub srm: SrmResult,
    pub comparisons: Vec<Comparison>,
}

/// One variant against the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub variant: String,
    pub control: String,
    pub mean_control: f64,
    pub mean_variant: f64,
    /// `mean_variant − mean_control`.
    pub difference: f64,
    /// `difference / mean_control`; null when the control mean is 0.
    pub relative_difference: Option<f64>,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
    pub p_value_adjusted: f64,
    /// `p_value_adjusted < alpha`.
    pub significant: bool,
    pub test: TestKind,
    pub std_error: f64,
    /// Posterior probability that the variant's mean exceeds the control's.
    pub chance_to_beat_control: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    TwoProportionZ,
    WelchT,
    SequentialBinomial,
    SequentialContinuous,
}

/// Runs the A/B analysis of one request.
pub fn analyze(request: &AbRequest) -> Result<AbReport, InputError> {
    validate(request)?;
    let control_idx = match &request.control {
        Some(name) => request
            .variants
            .iter()
            .position(|v| &v.name == name)
            .ok_or_else(|| InputError::invalid("control", "names no variant"))?,
        None => 0,
    };
    let counts: Vec<u64> = request.variants.iter().map(|v| v.n).collect();
    let srm = srm::srm(&counts, &expected_shares(&request.variants));
    let control = &request.variants[control_idx];
    let mut comparisons: Vec<Comparison> = request
        .variants
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != control_idx)
        .map(|(_, v)| compare(request, control, v))
        .collect();
    let raw: Vec<f64> = comparisons.iter().map(|c| c.p_value).collect();
    let adjusted = match request.correction {
        Correction::None => raw,
        Correction::Holm => holm::holm(&raw),
    };
    for (c, p) in comparisons.iter_mut().zip(adjusted) {
        c.p_value_adjusted = p;
        c.significant = p < request.alpha;
    }
    Ok(AbReport { srm, comparisons })
}

fn validate(request: &AbRequest) -> Result<(), InputError> {
    require_open_unit("alpha", request.alpha)?;
    if !(request.tuning.is_finite() && request.tuning > 0.0) {
        return Err(InputError::invalid("tuning", "must be a positive number"));
    }
    if request.variants.len() < 2 {
        return Err(InputError::invalid(
            "variants",
            "needs a control and at least one other variant",
        ));
    }
    let shares_given = request
        .variants
        .iter()
        .filter(|v| v.expected_share.is_some())
        .count();
    for (i, v) in request.variants.iter().enumerate() {
        let field = |name: &str| format!("variants[{i}].{name}");
        if request.variants[..i].iter().any(|w| w.name == v.name) {
            return Err(InputError::invalid(field("name"), "duplicate variant name"));
        }
        if !v.sum.is_finite() {
            return Err(InputError::invalid(field("sum"), "must be a finite number"));
        }
        match request.metric {
            MetricKind::Binomial => {
                if v.n == 0 {
                    return Err(InputError::invalid(field("n"), "must be at least 1"));
                }
                if v.sum < 0.0 || v.sum > v.n as f64 || v.sum.fract() != 0.0 {
                    return Err(InputError::invalid(
                        field("sum"),
                        "conversions must be a whole number between 0 and n",
                    ));
                }
            }
            MetricKind::Continuous => {
                if v.n < 2 {
                    return Err(InputError::invalid(
                        field("n"),
                        "must be at least 2 for a variance",
                    ));
                }
                let sum_sq = v.sum_sq.ok_or_else(|| {
                    InputError::invalid(field("sum_sq"), "required for a continuous metric")
                })?;
                if !sum_sq.is_finite() || sum_sq < 0.0 {
                    return Err(InputError::invalid(
                        field("sum_sq"),
                        "must be a non-negative finite number",
                    ));
                }
                // Cauchy-Schwarz: sum² <= n · sum_sq, up to rounding.
                if v.sum * v.sum > v.n as f64 * sum_sq * (1.0 + 1e-9) + 1e-9 {
                    return Err(InputError::invalid(
                        field("sum_sq"),
                        "is smaller than sum²/n: no real sample has these moments",
                    ));
                }
            }
        }
        match v.expected_share {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                return Err(InputError::invalid(
                    field("expected_share"),
                    "must be a positive number",
                ));
            }
            None if shares_given > 0 => {
                return Err(InputError::invalid(
                    field("expected_share"),
                    "give expected_share on every variant or on none",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Planned shares normalised to sum 1 (equal when not given).
fn expected_shares(variants: &[VariantStats]) -> Vec<f64> {
    let raw: Vec<f64> = variants
        .iter()
        .map(|v| v.expected_share.unwrap_or(1.0))
        .collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|s| s / total).collect()
}

/// Mean and sample variance (ddof 1) from the sufficient statistics.
pub fn moments(v: &VariantStats) -> ArmMoments {
    let n = v.n as f64;
    let mean = v.sum / n;
    let ss = v.sum_sq.unwrap_or(0.0) - v.sum * v.sum / n;
    ArmMoments {
        n,
        mean,
        variance: (ss / (n - 1.0)).max(0.0),
    }
}

fn compare(request: &AbRequest, control: &VariantStats, variant: &VariantStats) -> Comparison {
    let alpha = request.alpha;
    let (n_c, n_v) = (control.n as f64, variant.n as f64);
    let (mean_control, mean_variant, difference, std_error, mut ci, mut p_value, chance) =
        match request.metric {
            MetricKind::Binomial => {
                let t = ztest::two_proportion(control.sum, n_c, variant.sum, n_v, alpha);
                let chance = bayes::binomial_chance_to_beat(
                    control.sum as u64,
                    control.n,
                    variant.sum as u64,
                    variant.n,
                );
                (
                    control.sum / n_c,
                    variant.sum / n_v,
                    t.difference,
                    t.std_error,
                    (t.ci_low, t.ci_high),
                    t.p_value,
                    chance,
                )
            }
            MetricKind::Continuous => {
                let (mc, mv) = (moments(control), moments(variant));
                let t = welch::welch(mc, mv, alpha);
                let chance = bayes::continuous_chance_to_beat(t.difference, t.std_error);
                (
                    mc.mean,
                    mv.mean,
                    t.difference,
                    t.std_error,
                    (t.ci_low, t.ci_high),
                    t.p_value,
                    chance,
                )
            }
        };
    let test = if request.sequential {
        let s = sequential::confidence_sequence(
            difference,
            std_error,
            n_c + n_v,
            alpha,
            request.tuning,
        );
        ci = (s.ci_low, s.ci_high);
        p_value = s.p_value;
        match request.metric {
            MetricKind::Binomial => TestKind::SequentialBinomial,
            MetricKind::Continuous => TestKind::SequentialContinuous,
        }
    } else {
        match request.metric {
            MetricKind::Binomial => TestKind::TwoProportionZ,
            MetricKind::Continuous => TestKind::WelchT,
        }
    };
    Comparison {
        variant: variant.name.clone(),
        control: control.name.clone(),
        mean_control,
        mean_variant,
        difference,
        relative_difference: (mean_control != 0.0).then(|| difference / mean_control),
        ci_low: ci.0,
        ci_high: ci.1,
        p_value,
        p_value_adjusted: p_value,
        significant: false,
        test,
        std_error,
        chance_to_beat_control: chance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(metric: MetricKind, variants: Vec<VariantStats>) -> AbRequest {
        AbRequest {
            metric,
            alpha: 0.05,
            control: Some("a".into()),
            correction: Correction::None,
            sequential: false,
            tuning: 5000.0,
            variants,
        }
    }

    fn variant(name: &str, n: u64, sum: f64, sum_sq: Option<f64>) -> VariantStats {
        VariantStats {
            name: name.into(),
            n,
            sum,
            sum_sq,
            expected_share: None,
        }
    }

    #[test]
    fn binomial_report_has_every_field() {
        let r = analyze(&request(
            MetricKind::Binomial,
            vec![
                variant("a", 1000, 120.0, None),
                variant("b", 1000, 160.0, None),
            ],
        ))
        .unwrap();
        let c = &r.comparisons[0];
        assert_eq!((c.variant.as_str(), c.control.as_str()), ("b", "a"));
        assert!((c.difference - 0.04).abs() < 1e-15);
        assert!(c.significant && c.ci_low > 0.0);
        assert!(!r.srm.mismatch);
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let mut req = request(
            MetricKind::Binomial,
            vec![variant("a", 10, 12.0, None), variant("b", 10, 1.0, None)],
        );
        assert_eq!(analyze(&req).unwrap_err().field, "variants[0].sum");
        req.variants[0].sum = 1.0;
        req.variants[1].n = 0;
        assert_eq!(analyze(&req).unwrap_err().field, "variants[1].n");
        req.variants[1].n = 10;
        req.control = Some("zzz".into());
        assert_eq!(analyze(&req).unwrap_err().field, "control");
        req.control = None;
        req.metric = MetricKind::Continuous;
        assert_eq!(analyze(&req).unwrap_err().field, "variants[0].sum_sq");
        req.alpha = f64::NAN;
        assert_eq!(analyze(&req).unwrap_err().field, "alpha");
    }

    #[test]
    fn holm_adjusts_and_keeps_order() {
        let mut req = request(
            MetricKind::Binomial,
            vec![
                variant("a", 5000, 500.0, None),
                variant("b", 5000, 560.0, None),
                variant("c", 5000, 505.0, None),
            ],
        );
        req.correction = Correction::Holm;
        let r = analyze(&req).unwrap();
        let (b, c) = (&r.comparisons[0], &r.comparisons[1]);
        assert!((b.p_value_adjusted - 2.0 * b.p_value).abs() < 1e-15);
        assert!(c.p_value_adjusted >= b.p_value_adjusted);
    }

    #[test]
    fn sequential_interval_is_wider() {
        let mut req = request(
            MetricKind::Continuous,
            vec![
                variant("a", 2000, 2000.0, Some(4000.0)),
                variant("b", 2000, 2100.0, Some(4300.0)),
            ],
        );
        let fixed = analyze(&req).unwrap().comparisons[0].clone();
        req.sequential = true;
        let seq = analyze(&req).unwrap().comparisons[0].clone();
        assert_eq!(seq.test, TestKind::SequentialContinuous);
        assert!(seq.ci_high - seq.ci_low > fixed.ci_high - fixed.ci_low);
        assert!(seq.p_value > fixed.p_value);
    }
}
