//! The outrider sidecar scorer: the service beside Envoy that holds the rollouts,
//! tells every filter the current weights, takes in what filters observe and the
//! outcomes that arrive later, and runs rollout decisions.
//!
//! - [`rollout`]: rollouts and the changes allowed to them (pure), refused with a
//!   [`rollout::RolloutError`] that [`api`] turns into an answer;
//! - [`store`]: durable state, SQLite or PostgreSQL;
//! - [`api`]: the HTTP API v1, and [`api::ApiError`], its one error type;
//! - [`controller`]: the replica that holds the decision lock advances step schedules;
//! - [`server`]: `outrider-scorer serve`;
//! - [`client`]: the command line's client of a running server;
//! - [`shadow_report`]: how shadow variants compare, against the shadow gate;
//! - [`stats`]: the statistics engine's JSON contract (CLI and `POST /v1/stats/...`).

pub mod api;
pub mod client;
pub mod config;
pub mod controller;
pub mod histogram;
pub mod metrics;
pub mod rollout;
pub mod server;
pub mod shadow_report;
pub mod stats;
pub mod store;
