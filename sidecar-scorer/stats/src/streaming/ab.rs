//! Streaming A/B: sufficient statistics per variant.

use super::Mergeable;
use crate::InputError;
use crate::ab::VariantStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// n, Σx and Σx² of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Moments {
    pub fn observe(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }
}

impl Mergeable for Moments {
    fn merge(&mut self, other: &Self) -> Result<(), InputError> {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        Ok(())
    }
}

/// One window of an experiment: moments per variant name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AbWindow {
    pub variants: BTreeMap<String, Moments>,
}

impl AbWindow {
    /// Records one observation (a conversion as 1/0, or a metric value).
    /// Non-finite values are ignored: they carry no information on a mean.
    pub fn observe(&mut self, variant: &str, x: f64) {
        if x.is_finite() {
            self.variants
                .entry(variant.to_string())
                .or_default()
                .observe(x);
        }
    }

    /// The variants as the input of [`crate::ab::analyze`], in name order.
    pub fn to_variant_stats(&self) -> Vec<VariantStats> {
        self.variants
            .iter()
            .map(|(name, m)| VariantStats {
                name: name.clone(),
                n: m.n,
                sum: m.sum,
                sum_sq: Some(m.sum_sq),
                expected_share: None,
            })
            .collect()
    }
}

impl Mergeable for AbWindow {
    fn merge(&mut self, other: &Self) -> Result<(), InputError> {
        for (name, m) in &other.variants {
            self.variants.entry(name.clone()).or_default().merge(m)?;
        }
        Ok(())
    }
}
