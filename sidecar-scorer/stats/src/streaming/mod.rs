//! Per-window state for the scorer: small, mergeable summaries that replicas
//! update from telemetry and combine (in memory or through the store) into
//! the same reports the exact functions give.
//!
//! * [`ab::AbWindow`]: n, sum and sum of squares per variant — exactly the
//!   input of [`crate::ab::analyze`], so streaming A/B loses nothing;
//! * [`drift::DriftWindow`]: counts in the reference's bins (PSI and
//!   Jensen-Shannon, exact) and a KLL quantile sketch of every row of a small
//!   window and of a uniform sample of a large one (KS and Wasserstein,
//!   approximate within a reported bound);
//! * [`window`]: tumbling and sliding windows over any mergeable state.

pub mod ab;
pub mod drift;
mod sketch;
pub mod window;

/// State that can absorb another window's state of the same kind.
pub trait Mergeable {
    /// Adds `other` into `self`. Fails when the two were built against
    /// different references (e.g. other bin edges).
    fn merge(&mut self, other: &Self) -> Result<(), crate::InputError>;
}
