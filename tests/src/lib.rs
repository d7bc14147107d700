//! Runs the real Envoy with the outrider filter on loopback, in front of small model
//! stand-ins that say who they are. Used by the end-to-end tests in `tests/`, by
//! `make demo` and by `make bench-filter`.
//!
//! - [`admin_stats`]: per-variant figures from `/stats?format=json`.
//! - [`paths`]: where the Envoy binary and the built `.wasm` files are.
//! - [`bootstrap`]: Envoy bootstraps for a rollout (header routing, weighted
//!   clusters, plain route; with or without a wasm filter).
//! - [`envoy`]: a running Envoy that is stopped when dropped, with its admin API.
//! - [`standin`]: model stand-ins that count what they receive.
//! - [`client`]: an HTTP client for sending traffic through Envoy.
//! - [`load`]: closed-loop and fixed-rate load, and a process's CPU time.
//! - [`prom`]: reading `/stats/prometheus`.
//! - [`postgres`]: a private PostgreSQL server.
//! - [`alertmanager`]: a private Alertmanager.
//! - [`browser`]: a private headless Chromium, driven over the DevTools protocol.
//! - [`prometheus`]: a private Prometheus scraping Envoy and the scorer.
//! - [`rollback`]: a canary that goes wrong under traffic, and how fast it is out.
//! - [`scorer`]: a real `outrider-scorer serve` process.

pub mod admin_stats;
pub mod alertmanager;
pub mod bootstrap;
pub mod browser;
pub mod client;
pub mod envoy;
pub mod fixture;
pub mod load;
pub mod paths;
pub mod postgres;
pub mod prom;
pub mod prometheus;
pub mod rollback;
pub mod scorer;
pub mod standin;
