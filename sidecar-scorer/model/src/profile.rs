//! The model's reference profile: what its inputs and its score looked like
//! on the training data. The drift monitor compares live traffic against it;
//! numeric features and the score use the monitor's own
//! [`ReferenceProfile`] (quantile bins, counts, a KLL sketch), categorical
//! features their category counts. `performance` holds what the scorer needs to
//! judge the model's precision and recall at its operating threshold: the
//! calibration of its scores and the figures on the held-out rows (profiles written
//! before it existed read without it).

use outrider_stats::performance;
use outrider_stats::streaming::drift::{DEFAULT_SKETCH_K, ReferenceProfile};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Quantile bins per numeric feature (the drift monitor's default).
pub const BINS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelProfile {
    /// Name of the model the profile belongs to.
    pub model: String,
    /// Training rows the profile was built from.
    pub rows: u64,
    /// One entry per input feature, in the order of the input columns.
    pub features: Vec<FeatureProfile>,
    /// The model's score on the training rows.
    pub score: ReferenceProfile,
    /// Operating threshold, calibration and realised figures on the held-out rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<performance::Reference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureProfile {
    Numeric {
        name: String,
        reference: Box<ReferenceProfile>,
    },
    Categorical {
        name: String,
        categories: Vec<String>,
        counts: Vec<u64>,
    },
}

impl FeatureProfile {
    pub fn name(&self) -> &str {
        match self {
            Self::Numeric { name, .. } | Self::Categorical { name, .. } => name,
        }
    }
}

/// A numeric feature's profile.
pub fn numeric(name: &str, values: &[f64]) -> Result<FeatureProfile> {
    Ok(FeatureProfile::Numeric {
        name: name.to_owned(),
        reference: Box::new(reference(name, values)?),
    })
}

/// A categorical feature's profile: counts of each category, in the order
/// given; values outside it are counted under their own names at the end.
pub fn categorical<'a>(
    name: &str,
    known: &[&str],
    values: impl IntoIterator<Item = &'a str>,
) -> FeatureProfile {
    let mut categories: Vec<String> = known.iter().map(|s| (*s).to_owned()).collect();
    let mut counts = vec![0u64; categories.len()];
    for v in values {
        match categories.iter().position(|c| c == v) {
            Some(i) => counts[i] += 1,
            None => {
                categories.push(v.to_owned());
                counts.push(1);
            }
        }
    }
    FeatureProfile::Categorical {
        name: name.to_owned(),
        categories,
        counts,
    }
}

/// The drift monitor's reference for one numeric series.
pub fn reference(name: &str, values: &[f64]) -> Result<ReferenceProfile> {
    ReferenceProfile::new(values, BINS, DEFAULT_SKETCH_K)
        .map_err(|e| Error::invalid(name, e.to_string()))
}

impl ModelProfile {
    pub fn feature(&self, name: &str) -> Option<&FeatureProfile> {
        self.features.iter().find(|f| f.name() == name)
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::invalid("profile", e.to_string()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::invalid("profile", e.to_string()))
    }
}
