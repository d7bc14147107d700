//! The contract between the outrider filter and the scorer: the JSON they exchange,
//! the names of what they count, and the rules both enforce.
//!
//! - [`state`]: the filter polls `GET /v1/rollouts/{name}/state` and gets a
//!   [`RolloutState`];
//! - [`telemetry`]: the filter posts a [`TelemetryBatch`] to `POST /v1/telemetry` on a
//!   timer;
//! - [`results`]: results and reasons (sample results, shadow skip reasons, batch
//!   results, override rejections, status classes, guardrail reasons), each a
//!   [`ClosedSet`] with its list and its names;
//! - [`rules`]: names, weights and limits that a rollout must keep to on both sides;
//! - [`json`]: parsing a document with the path of the first bad field in the error.
//!
//! Both sides compile these types, so a change here changes the contract.

mod closed_set;
pub mod json;
pub mod results;
pub mod rules;
pub mod state;
pub mod telemetry;

pub use closed_set::ClosedSet;
pub use results::{
    BatchOutcome, BatchResult, ComparisonResult, GuardrailReason, LabelPair, OverrideRejection,
    PollResult, SampleResult, ShadowEnd, ShadowSkip, StatusClass,
};
pub use rules::FieldError;
pub use state::{RolloutState, VariantWeight};
pub use telemetry::{
    ClassCounts, GuardrailTrip, LATENCY_BUCKETS_MS, LATENCY_SLOTS, SCORE_DIFF_BUCKETS,
    SCORE_DIFF_SLOTS, Sample, ShadowCounts, TelemetryAck, TelemetryBatch, VariantCounts,
    latency_slot, score_diff_slot,
};
