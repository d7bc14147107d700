//! The statistics engine of outrider.
//!
//! Pure functions and mergeable state, no I/O: the CLI (`outrider-scorer stats
//! ...`) and the HTTP API of the scorer call the same entry points.
//!
//! * [`ab::analyze`] — A/B significance (fixed-horizon or sequential), SRM,
//!   Holm correction, Bayesian chance to beat control;
//! * [`ab::power::sample_size`] — n per arm for a minimum detectable effect;
//! * [`drift::analyze`] — numeric and categorical drift of a current sample
//!   against a reference sample;
//! * [`judge::analyze`] — Kayenta-style canary judgment;
//! * [`performance`] — precision, recall and PR AUC with intervals once labels
//!   arrive, and CBPE estimates from calibrated scores before;
//! * [`streaming`] — per-window mergeable state for drift and A/B, with
//!   tumbling and sliding windows.
//!
//! Requests and reports are serde types; [`from_json`] parses a request and
//! names the offending field on error.

pub mod ab;
pub mod drift;
mod error;
pub mod judge;
pub mod performance;
mod sample;
pub mod special;
pub mod streaming;

pub use error::{ErrorCode, InputError, from_json};
