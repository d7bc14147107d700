//! SQLite: one file in WAL mode. Writes go through a single connection (SQLite has
//! one writer at a time, and queueing in the pool beats retrying on a busy database);
//! reads use a pool of their own.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use outrider_protocol::TelemetryBatch;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::sql::{RELEASE_LEASE, TAKE_LEASE, db_int, shared_queries};
use super::{FeedbackEvent, FeedbackOutcome, Ingest, Store, StoreResult, WindowCounts};
use crate::rollout::{Event, Rollout};

/// A replica that stops renewing loses the lease after this long.
const LEASE_MS: u64 = 5_000;

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // WAL with synchronous=NORMAL: a committed transaction survives the process
        // being killed (it is in the WAL, in the OS's hands); only a power loss can
        // take the last ones back.
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { write, read })
    }
}

shared_queries!(SqliteStore, Sqlite);

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn create_rollout(&self, rollout: &Rollout, event: &Event) -> StoreResult<()> {
        self.shared_create_rollout(rollout, event).await
    }

    async fn update_rollout(
        &self,
        rollout: &Rollout,
        expected_version: u64,
        event: &Event,
    ) -> StoreResult<()> {
        self.shared_update_rollout(rollout, expected_version, event)
            .await
    }

    async fn rollout(&self, name: &str) -> StoreResult<Option<Rollout>> {
        self.shared_rollout(name).await
    }

    async fn rollouts(&self) -> StoreResult<Vec<Rollout>> {
        self.shared_rollouts().await
    }

    async fn events(&self, name: &str) -> StoreResult<Vec<Event>> {
        self.shared_events(name).await
    }

    async fn ingest(
        &self,
        batch: &TelemetryBatch,
        window_ms: u64,
        received_ms: u64,
    ) -> StoreResult<Ingest> {
        self.shared_ingest(batch, window_ms, received_ms).await
    }

    async fn windows(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<WindowCounts>> {
        self.shared_windows(rollout, from_ms, to_ms).await
    }

    async fn shadow_windows(
        &self,
        rollout: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> StoreResult<Vec<(u64, outrider_protocol::ShadowCounts)>> {
        self.shared_shadow_windows(rollout, from_ms, to_ms).await
    }

    async fn add_feedback(
        &self,
        events: &[FeedbackEvent],
        received_ms: u64,
    ) -> StoreResult<FeedbackOutcome> {
        self.shared_add_feedback(events, received_ms).await
    }

    async fn feedback_count(&self, rollout: Option<&str>) -> StoreResult<u64> {
        self.shared_feedback_count(rollout).await
    }

    async fn sample_count(&self, rollout: &str) -> StoreResult<u64> {
        self.shared_sample_count(rollout).await
    }

    async fn samples(
        &self,
        rollout: &str,
        limit: u64,
    ) -> StoreResult<Vec<outrider_protocol::Sample>> {
        self.shared_samples(rollout, limit).await
    }

    /// A lease row: SQLite has no advisory locks, and several processes may share
    /// the file.
    async fn try_lead(&self, holder: &str, now_ms: u64) -> StoreResult<bool> {
        let taken = sqlx::query(TAKE_LEASE)
            .bind(holder)
            .bind(db_int(now_ms + LEASE_MS))
            .bind(db_int(now_ms))
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(taken > 0)
    }

    async fn release_lead(&self, holder: &str) -> StoreResult<()> {
        sqlx::query(RELEASE_LEASE)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
