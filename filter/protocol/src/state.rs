//! What filters poll: `GET /v1/rollouts/{name}/state` answers a [`RolloutState`].

use serde::{Deserialize, Serialize};

/// What filters apply: the weights of a rollout at a version. The version only
/// grows; a filter ignores a state older than the one it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub rollout: String,
    pub version: u64,
    /// `active`, `paused`, `completed`, `promoted` or `rolled_back`; filters route the
    /// same way whatever it is.
    pub status: String,
    pub weights: Vec<VariantWeight>,
}

/// A variant's share of traffic, in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantWeight {
    pub variant: String,
    pub weight: f64,
}
