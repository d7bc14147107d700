//! The outrider sidecar scorer: the service beside Envoy that holds the rollouts,
//! tells every filter the current weights, takes in what filters observe and the
//! outcomes that arrive later, and runs rollout decisions.
//!
//! The domain knows nothing of HTTP: it returns its own errors, and [`api`] turns them
//! (and the store's) into answers.
//!
//! - [`rollout`]: rollouts and the changes allowed to them (pure), refused with a
//!   [`rollout::RolloutError`];
//! - [`analysis`]: what a canary's analysis checks each interval, and what its runs
//!   decide;
//! - [`experiment`]: A/B experiments: the spec, the judging of a look (pure), and
//!   what the deciding replica does each interval;
//! - [`shadow_report`]: how shadow variants compare, against the shadow gate;
//! - [`completeness`]: which telemetry windows hold everything the filters saw;
//! - [`histogram`]: quantiles from the latency and score-difference histograms;
//! - [`store`]: durable state behind the [`store::Store`] trait, one SQL implementation
//!   for SQLite and PostgreSQL;
//! - [`api`]: the HTTP API v1: token and body extractors, handlers, [`api::ApiError`];
//! - [`metrics`]: the scorer's own Prometheus metrics;
//! - [`alerts`], [`notifier`]: the alerts that hold for each rollout, sent to
//!   Alertmanager and webhooks and stored;
//! - [`prometheus`]: the instant queries of `prometheus` analysis checks;
//! - [`controller`]: the replica that holds the decision lock advances step schedules;
//! - [`monitor`]: drift and performance of the model versions that variants serve,
//!   against their reference profiles from the registry;
//! - [`config`], [`server`]: `outrider-scorer serve`, its settings and its start-up;
//! - [`client`]: the command line's client of a running server;
//! - [`stats`]: the statistics engine's JSON contract (CLI and `POST /v1/stats/...`).

pub mod alerts;
pub mod analysis;
pub mod api;
pub mod client;
pub mod completeness;
pub mod config;
pub mod controller;
pub mod experiment;
pub mod gates;
pub mod histogram;
pub mod metrics;
pub mod monitor;
pub mod notifier;
pub mod prometheus;
pub mod retrain;
pub mod rollout;
pub mod server;
pub mod shadow_report;
pub mod stats;
pub mod store;
