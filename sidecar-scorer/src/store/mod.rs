//! Durable state: rollouts and their events, telemetry windows, samples, feedback.
//! Two backends behind one trait: SQLite (a file, the default) and PostgreSQL (shared
//! by several replicas). Both run the same SQL, written once in [`SqlStore`]; a
//! [`Dialect`] holds what differs (placeholders of generated statements, leadership).
//!
//! - `sql`: the statements and the conversion of counts to and from rows;
//! - [`SqlStore`]: the [`Store`] over any SQL [`Dialect`];
//! - [`sqlite`], [`postgres`]: opening each database, and how each picks a leader.

mod jobs;
pub mod postgres;
mod sql;
mod sql_store;
pub mod sqlite;

use async_trait::async_trait;
use outrider_protocol::{BatchOutcome, LATENCY_SLOTS, TelemetryBatch};
use serde::{Deserialize, Serialize};

use crate::analysis::Run;
use crate::experiment::{ExperimentRun, Unit};
use crate::monitor::findings::ModelEvent;
use crate::monitor::judge::{MonitoredSample, WindowReport};
use crate::monitor::realised::{Labelled, RealisedPerformance};
use crate::rollout::{Event, Rollout};

pub use jobs::{JobStore, LabelledSample, StoredJob};
pub use sql::Placeholders;
pub use sql_store::{Dialect, SqlStore};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The change lost a race or breaks a uniqueness rule.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Sums of one variant over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowCounts {
    pub variant: String,
    pub window_start_ms: u64,
    pub requests: u64,
    pub responses: outrider_protocol::ClassCounts,
    pub grpc_errors: u64,
    pub latency_sum_ms: u64,
    pub latency_ms: Vec<u64>,
}

impl WindowCounts {
    /// Adds `other` into `self` (same variant).
    pub fn add(&mut self, other: &WindowCounts) {
        self.requests += other.requests;
        self.responses.success += other.responses.success;
        self.responses.redirect += other.responses.redirect;
        self.responses.client_error += other.responses.client_error;
        self.responses.server_error += other.responses.server_error;
        self.grpc_errors += other.grpc_errors;
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_ms.resize(LATENCY_SLOTS, 0);
        for (a, b) in self.latency_ms.iter_mut().zip(&other.latency_ms) {
            *a += b;
        }
    }
}

/// One variant's exposures (sampled requests, or users) joined with their feedback,
/// as the sufficient statistics of the experiment's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExposureSums {
    pub variant: String,
    pub exposures: u64,
    /// Exposures whose latest feedback label is positive.
    pub conversions: u64,
    /// Σ and Σ² over exposures of each one's value: the sum of its feedback values,
    /// 0 without feedback.
    pub value_sum: f64,
    pub value_sum_sq: f64,
}

/// How far one reporting filter worker's telemetry is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerMark {
    pub proxy: String,
    pub worker: String,
    /// Everything the worker saw before this time (its clock) is applied.
    pub complete_through_ms: u64,
    /// When its last batch arrived (the scorer's clock).
    pub last_seen_ms: u64,
}

/// An alert as stored and listed by `GET /v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub starts_ms: u64,
    /// When it resolved; absent while it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_ms: Option<u64>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An outcome label for a request (by its id) or a user (by sticky key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackEvent {
    /// Makes a post idempotent: a second event with the same id is ignored.
    pub event_id: Option<String>,
    pub rollout: Option<String>,
    pub request_id: Option<String>,
    pub user_key: Option<String>,
    pub label: f64,
    pub value: Option<f64>,
    pub observed_ms: u64,
}

/// Inserted and ignored (already known event ids) feedback events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FeedbackOutcome {
    pub accepted: u64,
    pub duplicates: u64,
}

/// Which samples of one variant the monitor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleRange {
    /// Sample time in [from_ms, to_ms), in order of arrival.
    Time { from_ms: u64, to_ms: u64 },
    /// The first `limit` samples stored after sample `id`.
    After { id: u64, limit: u64 },
    /// The last `limit` samples stored up to sample `id`, newest first.
    Through { id: u64, limit: u64 },
    /// Samples stored after `after` up to `through` (ids).
    Ids { after: u64, through: u64 },
}

/// Feedback read and the sample labels it set, in one round of the join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelRound {
    pub feedback: u64,
    pub labelled: u64,
}

#[async_trait]
pub trait Store: JobStore + Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> StoreResult<()>;

    /// Stores a new rollout with its creation event; a conflict if the name exists.
    async fn create_rollout(&self, rollout: &Rollout, event: &Event) -> StoreResult<()>;

    /// Replaces a rollout if it is still at `expected_version`, and records the event,
    /// in one transaction; a conflict if someone changed it meanwhile.
    async fn update_rollout(
        &self,
        rollout: &Rollout,
        expected_version: u64,
        event: &Event,
    ) -> StoreResult<()>;

    async fn rollout(&self, name: &str) -> StoreResult<Option<Rollout>>;

    async fn rollouts(&self) -> StoreResult<Vec<Rollout>>;

    /// A rollout's events, oldest first.
    async fn events(&self, name: &str) -> StoreResult<Vec<Event>>;

    /// A rollout's newest event, read alone: the notifier wants it every tick.
    async fn last_event(&self, name: &str) -> StoreResult<Option<Event>>;

    /// Applies a telemetry batch (counts into the window holding its end, samples)
    /// once per batch id, and moves its worker's mark to the batch's end, in one
    /// transaction. An empty batch only moves the mark.
    async fn ingest(
        &self,
        batch: &TelemetryBatch,
        window_ms: u64,
        received_ms: u64,
    ) -> StoreResult<BatchOutcome>;

    /// The reporting workers of a rollout and how far each is complete.
    async fn workers(&self, rollout: &str) -> StoreResult<Vec<WorkerMark>>;

    /// Per-window counts of a rollout with `from_ms <= window start < to_ms`.
    async fn windows(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<WindowCounts>>;

    /// Per-window counts of a rollout's shadow variants with `from_ms <= window start <
    /// to_ms`, as (window start, counts).
    async fn shadow_windows(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<(u64, outrider_protocol::ShadowCounts)>>;

    /// Stores feedback events, all or none.
    async fn add_feedback(
        &self,
        events: &[FeedbackEvent],
        received_ms: u64,
    ) -> StoreResult<FeedbackOutcome>;

    /// Feedback events stored (for a rollout, or all).
    async fn feedback_count(&self, rollout: Option<&str>) -> StoreResult<u64>;

    /// Records an alert's firing or resolution (one row per firing, by fingerprint and
    /// start).
    async fn put_alert(&self, alert: &StoredAlert) -> StoreResult<()>;

    /// The newest `limit` alerts, firing or resolved, oldest first; or only those
    /// still firing.
    async fn alerts(&self, limit: u64, firing_only: bool) -> StoreResult<Vec<StoredAlert>>;

    /// Stores an analysis run unless one with the same interval end is stored; true
    /// if this one was.
    async fn add_run(&self, run: &Run) -> StoreResult<bool>;

    /// The newest `limit` analysis runs of a rollout, oldest first.
    async fn runs(&self, rollout: &str, limit: u64) -> StoreResult<Vec<Run>>;

    /// Per variant, a rollout's exposures sampled with `from_ms <= at_ms < to_ms`,
    /// joined with their feedback by `unit`: by request id (a request counts once), or
    /// by user key (a user counts once, in the variant of their first exposure, and
    /// only feedback observed from then on counts). Feedback of another rollout, or
    /// received long before `from_ms`, is left out. When several events match an
    /// exposure, the latest label (by `observed_ms`) decides its conversion and the
    /// values add up. Exposures without the join key are not counted.
    async fn exposure_sums(
        &self,
        rollout: &str,
        unit: Unit,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<ExposureSums>>;

    /// Stores an experiment run unless one with the same end is stored; true if this
    /// one was.
    async fn add_experiment_run(&self, run: &ExperimentRun) -> StoreResult<bool>;

    /// The newest `limit` experiment runs of a rollout, oldest first.
    async fn experiment_runs(&self, rollout: &str, limit: u64) -> StoreResult<Vec<ExperimentRun>>;

    /// The sampled scores of a rollout with `from_ms <= at_ms < to_ms`, as (variant,
    /// score).
    async fn scores(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<(String, f64)>>;

    /// Samples stored for a rollout.
    async fn sample_count(&self, rollout: &str) -> StoreResult<u64>;

    /// The newest `limit` samples of a rollout, newest first.
    async fn samples(
        &self,
        rollout: &str,
        limit: u64,
    ) -> StoreResult<Vec<outrider_protocol::Sample>>;

    /// Samples of one rollout variant for the model monitor (features and score).
    async fn monitored_samples(
        &self,
        rollout: &str,
        variant: &str,
        range: SampleRange,
    ) -> StoreResult<Vec<MonitoredSample>>;

    /// Samples of a rollout variant that have a score and an outcome label (`Time` or
    /// `Ids` ranges).
    async fn labelled(
        &self,
        rollout: &str,
        variant: &str,
        range: SampleRange,
    ) -> StoreResult<Vec<Labelled>>;

    /// Joins feedback to samples, in arrival order from where the last round stopped,
    /// up to `limit` events received before `received_before_ms`: an event with a
    /// request id labels the samples of that request, one with only a user key every
    /// sample of that user stored by then; a later label replaces an earlier one.
    async fn label_samples(&self, received_before_ms: u64, limit: u64) -> StoreResult<LabelRound>;

    /// Stores a judged window and the events it raised, once per window end; true if
    /// this call stored it. Events get their ids.
    async fn add_drift_window(
        &self,
        window: &WindowReport,
        events: &[ModelEvent],
    ) -> StoreResult<bool>;

    /// The newest `limit` windows of a model version, oldest first.
    async fn drift_windows(
        &self,
        model: &str,
        version: u64,
        limit: u64,
    ) -> StoreResult<Vec<WindowReport>>;

    /// The latest window of every model version.
    async fn latest_drift_windows(&self) -> StoreResult<Vec<WindowReport>>;

    /// The versions of a model that have judged windows.
    async fn model_versions(&self, model: &str) -> StoreResult<Vec<u64>>;

    /// Findings raised and cleared after event `after_id`, oldest first.
    async fn model_events(&self, after_id: u64, limit: u64) -> StoreResult<Vec<ModelEvent>>;

    /// Replaces a version's realised performance, and stores the events its findings
    /// raised or cleared, in one transaction.
    async fn put_realised(
        &self,
        performance: &RealisedPerformance,
        events: &[ModelEvent],
    ) -> StoreResult<()>;

    /// The time of the first sample of a rollout variant at or after `from_ms`.
    async fn next_sample_ms(
        &self,
        rollout: &str,
        variant: &str,
        from_ms: u64,
    ) -> StoreResult<Option<u64>>;

    /// The realised performance of every version.
    async fn realised(&self) -> StoreResult<Vec<RealisedPerformance>>;

    /// Tries to become (or stay) the replica that runs rollout decisions.
    async fn try_lead(&self, holder: &str, now_ms: u64) -> StoreResult<bool>;

    /// Gives leadership up (on shutdown), so another replica takes over at once.
    async fn release_lead(&self, holder: &str) -> StoreResult<()>;
}

/// Opens the store a `--store` value names: a `postgres://` URL, a `sqlite:` URL, or a
/// plain path to a SQLite file. Migrations run before it is returned.
pub async fn open(location: &str) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::connect(location).await?,
        ))
    } else {
        let path = location
            .strip_prefix("sqlite://")
            .or_else(|| location.strip_prefix("sqlite:"))
            .unwrap_or(location);
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    }
}
