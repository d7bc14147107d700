//! The decisions of the outrider filter, free of host calls so that they run and are
//! tested natively (and, compiled to wasm32, under a WASI runner).
//!
//! - [`config`]: the JSON configuration, parsed and validated into a [`Rollout`].
//! - [`assignment`]: salted hash of the sticky key onto the cumulative weights.
//! - [`sticky_key`]: where the key comes from (a header or a cookie).
//! - [`override_token`]: HMAC-signed tokens that force a variant.
//! - [`decision`]: the per-request choice, combining the three above.
//! - [`response`]: status classes and gRPC status of a response.
//! - [`metric_names`]: stat names that Envoy's `stats_tags` turn into labels.
//! - [`link`]: the link to the scorer, and which requests to sample for it.
//! - [`lease`]: which worker of an Envoy polls the scorer.
//! - [`state`]: applying the rollout state the scorer serves.
//! - [`telemetry`]: per-worker counts and samples, batched for the scorer.
//! - [`shadow`]: which requests to mirror to shadow variants, and comparing answers.

pub mod assignment;
pub mod config;
pub mod decision;
pub mod lease;
pub mod link;
pub mod metric_names;
pub mod override_token;
pub mod response;
pub mod shadow;
pub mod state;
pub mod sticky_key;
pub mod telemetry;

pub use config::{ConfigError, Rollout, Variant};
pub use decision::{Decision, RequestHeaders, Via};
