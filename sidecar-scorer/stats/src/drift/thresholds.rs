//! Warn / alert levels for drift scores.
//!
//! Alerts key on effect sizes (PSI, Jensen-Shannon, normalised Wasserstein),
//! not on p-values: with the sample sizes of production traffic every test
//! rejects for differences far too small to matter, so a p-value threshold
//! would alert all the time. KS is reported with its p-value but carries no
//! default threshold; one can be set on its statistic.

use serde::{Deserialize, Serialize};

/// How far a score has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftLevel {
    Ok,
    Warn,
    Alert,
}

/// A pair of optional levels: a score at or above `alert` alerts, at or above
/// `warn` warns.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default)]
    pub warn: Option<f64>,
    #[serde(default)]
    pub alert: Option<f64>,
}

impl Threshold {
    pub const fn new(warn: Option<f64>, alert: Option<f64>) -> Self {
        Self { warn, alert }
    }

    pub fn level(&self, score: Option<f64>) -> DriftLevel {
        let Some(score) = score else {
            return DriftLevel::Ok;
        };
        if self.alert.is_some_and(|a| score >= a) {
            DriftLevel::Alert
        } else if self.warn.is_some_and(|w| score >= w) {
            DriftLevel::Warn
        } else {
            DriftLevel::Ok
        }
    }
}

/// Thresholds per method. Defaults: PSI warn 0.1 / alert 0.2 (the customary
/// "moderate" and "significant" shift), Jensen-Shannon distance alert 0.1,
/// normalised Wasserstein alert 0.1, KS statistic none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftThresholds {
    pub psi: Threshold,
    pub js_distance: Threshold,
    pub wasserstein_normed: Threshold,
    pub ks_statistic: Threshold,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            psi: Threshold::new(Some(0.1), Some(0.2)),
            js_distance: Threshold::new(None, Some(0.1)),
            wasserstein_normed: Threshold::new(None, Some(0.1)),
            ks_statistic: Threshold::new(None, None),
        }
    }
}

/// The level of each method and the worst of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftLevels {
    pub level: DriftLevel,
    pub psi: DriftLevel,
    pub js_distance: DriftLevel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein_normed: Option<DriftLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_statistic: Option<DriftLevel>,
}

impl DriftThresholds {
    pub(crate) fn validate(&self, field: &str) -> Result<(), crate::InputError> {
        let all = [
            ("psi", self.psi),
            ("js_distance", self.js_distance),
            ("wasserstein_normed", self.wasserstein_normed),
            ("ks_statistic", self.ks_statistic),
        ];
        for (name, t) in all {
            for (which, v) in [("warn", t.warn), ("alert", t.alert)] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(crate::InputError::invalid(
                        format!("{field}.{name}.{which}"),
                        "must be a non-negative number",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Levels for numeric drift scores.
    pub fn numeric_levels(
        &self,
        psi: f64,
        js: Option<f64>,
        wasserstein_normed: Option<f64>,
        ks_statistic: f64,
    ) -> DriftLevels {
        let psi = self.psi.level(Some(psi));
        let js_distance = self.js_distance.level(js);
        let w = self.wasserstein_normed.level(wasserstein_normed);
        let ks = self.ks_statistic.level(Some(ks_statistic));
        DriftLevels {
            level: psi.max(js_distance).max(w).max(ks),
            psi,
            js_distance,
            wasserstein_normed: Some(w),
            ks_statistic: Some(ks),
        }
    }

    /// Levels for categorical drift scores.
    pub fn categorical_levels(&self, psi: f64, js: Option<f64>) -> DriftLevels {
        let psi = self.psi.level(Some(psi));
        let js_distance = self.js_distance.level(js);
        DriftLevels {
            level: psi.max(js_distance),
            psi,
            js_distance,
            wasserstein_normed: None,
            ks_statistic: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_psi_levels() {
        let t = DriftThresholds::default();
        assert_eq!(t.psi.level(Some(0.05)), DriftLevel::Ok);
        assert_eq!(t.psi.level(Some(0.1)), DriftLevel::Warn);
        assert_eq!(t.psi.level(Some(0.25)), DriftLevel::Alert);
        assert_eq!(t.js_distance.level(Some(0.09)), DriftLevel::Ok);
        assert_eq!(t.js_distance.level(Some(0.1)), DriftLevel::Alert);
        assert_eq!(t.ks_statistic.level(Some(1.0)), DriftLevel::Ok);
    }
}
