//! The outrider filter, free of proxy-wasm: every decision and every state machine of
//! the filter, over a small [`host::Host`] trait that `filter/wasm` implements with
//! Envoy's host calls and tests implement with [`mock::MockHost`]. It runs and is
//! tested natively, and compiled to wasm32 under a WASI runner.
//!
//! Parse time:
//! - [`config`]: the JSON configuration, parsed and validated into a [`Rollout`].
//!
//! Request time, one request's path in order:
//! - [`root`]: the root context of a worker; hands the rollout in effect to requests;
//! - [`request`]: one stream, whose plan is fixed when it is assigned;
//! - [`decision`]: the per-request choice: override, sticky key, randomness
//!   ([`override_token`], [`sticky_key`], [`assignment`]);
//! - [`recorder`]: each fact once, to Envoy's stats ([`stats`], [`metric_names`]) and
//!   to the scorer's telemetry ([`telemetry`]);
//! - [`body`], [`json_body`], [`response`]: what is read from bodies and responses;
//! - [`shadow`], [`desk`]: copies to shadow variants, sent and compared by the root;
//! - [`guardrail`]: per-variant limits judged on each response; a trip takes the
//!   variant to 0% on this Envoy at once.
//!
//! Off the request path, on the root's tick:
//! - [`link`]: the link to the scorer ([`lease`], [`state`], [`outbox`], [`backlog`]).

pub mod assignment;
pub mod backlog;
pub mod body;
pub mod config;
pub mod decision;
pub mod desk;
pub mod guardrail;
pub mod host;
pub mod json_body;
pub mod lease;
pub mod link;
pub mod metric_names;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
pub mod outbox;
pub mod override_token;
pub mod recorder;
pub mod request;
pub mod response;
pub mod root;
pub mod shadow;
pub mod state;
pub mod stats;
pub mod sticky_key;
pub mod telemetry;
pub mod worker;

pub use config::{ConfigError, Rollout, Variant};
pub use decision::{Decision, RequestHeaders, Via};
pub use host::Host;
pub use request::Request;
pub use root::Root;
