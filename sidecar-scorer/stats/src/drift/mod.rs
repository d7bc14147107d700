//! Drift of a current sample against a reference sample.
//!
//! Numeric features: PSI and Jensen-Shannon distance on the reference's
//! quantile bins, the two-sample KS test and the Wasserstein distance.
//! Categorical features: chi-square test of homogeneity, PSI and
//! Jensen-Shannon distance over the categories.

pub mod bins;
pub mod chi2;
pub mod jensen_shannon;
pub mod ks;
pub mod psi;
pub mod thresholds;
pub mod wasserstein;

use crate::error::{InputError, require_finite};
use crate::sample::{sorted, std_population};
use bins::{ReferenceBins, shares};
use ks::KsMethod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use thresholds::{DriftLevel, DriftLevels, DriftThresholds, Threshold};

/// Largest accepted number of bins.
pub const MAX_BINS: usize = 10_000;

fn default_bins() -> usize {
    10
}

/// Body of `stats drift` / `POST /v1/stats/drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriftRequest {
    Numeric(NumericDriftRequest),
    Categorical(CategoricalDriftRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericDriftRequest {
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
    #[serde(default = "default_bins")]
    pub bins: usize,
    #[serde(default)]
    pub thresholds: DriftThresholds,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalDriftRequest {
    pub reference: Vec<String>,
    pub current: Vec<String>,
    #[serde(default)]
    pub thresholds: DriftThresholds,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DriftReport {
    Numeric(NumericDriftReport),
    Categorical(CategoricalDriftReport),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericDriftReport {
    pub kind: String,
    pub psi: f64,
    pub ks_statistic: f64,
    pub ks_p_value: f64,
    pub ks_method: KsMethod,
    pub wasserstein: f64,
    /// `wasserstein / std(reference)`; null when the reference is constant.
    pub wasserstein_normed: Option<f64>,
    pub js_distance: f64,
    pub edges: Vec<f64>,
    pub reference_counts: Vec<u64>,
    pub current_counts: Vec<u64>,
    pub n_reference: usize,
    pub n_current: usize,
    pub drift: DriftLevels,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalDriftReport {
    pub kind: String,
    pub chi2: f64,
    pub chi2_p_value: f64,
    pub chi2_dof: u64,
    pub psi: f64,
    pub js_distance: f64,
    pub categories: Vec<String>,
    pub reference_counts: Vec<u64>,
    pub current_counts: Vec<u64>,
    pub drift: DriftLevels,
}

/// Runs the drift analysis of one request.
pub fn analyze(request: &DriftRequest) -> Result<DriftReport, InputError> {
    match request {
        DriftRequest::Numeric(r) => numeric(r).map(DriftReport::Numeric),
        DriftRequest::Categorical(r) => categorical(r).map(DriftReport::Categorical),
    }
}

/// Numeric drift; see the module docs.
pub fn numeric(request: &NumericDriftRequest) -> Result<NumericDriftReport, InputError> {
    if request.reference.is_empty() {
        return Err(InputError::invalid("reference", "must not be empty"));
    }
    if request.current.is_empty() {
        return Err(InputError::invalid("current", "must not be empty"));
    }
    require_finite("reference", &request.reference)?;
    require_finite("current", &request.current)?;
    if request.bins == 0 || request.bins > MAX_BINS {
        return Err(InputError::invalid(
            "bins",
            format!("must be between 1 and {MAX_BINS}"),
        ));
    }
    request.thresholds.validate("thresholds")?;
    let reference = sorted(&request.reference);
    let current = sorted(&request.current);
    let bins = ReferenceBins::from_sorted(&reference, request.bins);
    let reference_counts = bins.counts_sorted(&reference);
    let current_counts = bins.counts_sorted(&current);
    let (r, c) = (shares(&reference_counts), shares(&current_counts));
    let psi = psi::psi(&r, &c);
    let js = jensen_shannon::distance(&r, &c).unwrap_or(0.0);
    let ks = ks::ks_2samp_sorted(&reference, &current);
    let wasserstein = wasserstein::distance_sorted(&reference, &current);
    let sd = std_population(&request.reference);
    let wasserstein_normed = (sd > 0.0).then(|| wasserstein / sd);
    let drift = request
        .thresholds
        .numeric_levels(psi, Some(js), wasserstein_normed, ks.statistic);
    Ok(NumericDriftReport {
        kind: "numeric".into(),
        psi,
        ks_statistic: ks.statistic,
        ks_p_value: ks.p_value,
        ks_method: ks.method,
        wasserstein,
        wasserstein_normed,
        js_distance: js,
        edges: bins.edges,
        reference_counts,
        current_counts,
        n_reference: reference.len(),
        n_current: current.len(),
        drift,
    })
}

/// Categorical drift; see the module docs.
pub fn categorical(
    request: &CategoricalDriftRequest,
) -> Result<CategoricalDriftReport, InputError> {
    if request.reference.is_empty() {
        return Err(InputError::invalid("reference", "must not be empty"));
    }
    if request.current.is_empty() {
        return Err(InputError::invalid("current", "must not be empty"));
    }
    request.thresholds.validate("thresholds")?;
    let mut table: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for v in &request.reference {
        table.entry(v.as_str()).or_default().0 += 1;
    }
    for v in &request.current {
        table.entry(v.as_str()).or_default().1 += 1;
    }
    let categories: Vec<String> = table.keys().map(|k| k.to_string()).collect();
    let reference_counts: Vec<u64> = table.values().map(|c| c.0).collect();
    let current_counts: Vec<u64> = table.values().map(|c| c.1).collect();
    Ok(categorical_from_counts(
        categories,
        reference_counts,
        current_counts,
        &request.thresholds,
    ))
}

/// Categorical drift from count tables (both rows non-empty, every category
/// seen in at least one of them).
pub fn categorical_from_counts(
    categories: Vec<String>,
    reference_counts: Vec<u64>,
    current_counts: Vec<u64>,
    thresholds: &DriftThresholds,
) -> CategoricalDriftReport {
    let chi2 = chi2::contingency_2xk(&reference_counts, &current_counts);
    let (r, c) = (shares(&reference_counts), shares(&current_counts));
    let psi = psi::psi(&r, &c);
    let js = jensen_shannon::distance(&r, &c).unwrap_or(0.0);
    CategoricalDriftReport {
        kind: "categorical".into(),
        chi2: chi2.statistic,
        chi2_p_value: chi2.p_value,
        chi2_dof: chi2.dof,
        psi,
        js_distance: js,
        categories,
        reference_counts,
        current_counts,
        drift: thresholds.categorical_levels(psi, Some(js)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_non_finite_samples_are_rejected() {
        let mut r = NumericDriftRequest {
            reference: vec![],
            current: vec![1.0],
            bins: 10,
            thresholds: DriftThresholds::default(),
        };
        assert_eq!(numeric(&r).unwrap_err().field, "reference");
        r.reference = vec![1.0, f64::NAN];
        assert_eq!(numeric(&r).unwrap_err().field, "reference[1]");
        r.reference = vec![1.0, 2.0];
        r.bins = 0;
        assert_eq!(numeric(&r).unwrap_err().field, "bins");
    }

    #[test]
    fn constant_reference_has_no_normed_wasserstein() {
        let r = NumericDriftRequest {
            reference: vec![1.0; 5],
            current: vec![1.0, 2.0],
            bins: 4,
            thresholds: DriftThresholds::default(),
        };
        let report = numeric(&r).unwrap();
        assert_eq!(report.wasserstein_normed, None);
        assert!((report.wasserstein - 0.5).abs() < 1e-15);
    }

    #[test]
    fn shifted_sample_alerts() {
        let reference: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let current: Vec<f64> = reference.iter().map(|x| x + 0.5).collect();
        let report = numeric(&NumericDriftRequest {
            reference,
            current,
            bins: 10,
            thresholds: DriftThresholds::default(),
        })
        .unwrap();
        assert_eq!(report.drift.level, DriftLevel::Alert);
        assert!(report.ks_p_value < 1e-10);
    }
}
