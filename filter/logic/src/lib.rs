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

pub mod assignment;
pub mod config;
pub mod decision;
pub mod metric_names;
pub mod override_token;
pub mod response;
pub mod sticky_key;

pub use config::{ConfigError, Rollout, Variant};
pub use decision::{Decision, RequestHeaders, Via};
