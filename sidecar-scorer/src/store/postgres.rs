//! PostgreSQL, shared by every replica. Counts from all replicas add up in the same
//! rows; one replica at a time holds an advisory lock and runs rollout decisions.

use async_trait::async_trait;
use outrider_protocol::TelemetryBatch;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::Mutex;

use super::sql::shared_queries;
use super::{FeedbackEvent, FeedbackOutcome, Ingest, Store, StoreResult, WindowCounts};
use crate::rollout::{Event, Rollout};

/// Key of the advisory lock that the deciding replica holds.
const DECISION_LOCK: i64 = 0x6f75_7472_6964_6572; // "outrider"

pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
    /// The session that holds the decision lock: the lock lives as long as it does,
    /// so it is kept out of the pool. If the process dies, PostgreSQL ends the session
    /// and frees the lock for another replica.
    lock_session: Mutex<Option<PgConnection>>,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        // Replicas starting together must not migrate at once; sqlx serialises
        // migrations with an advisory lock of its own.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self {
            write: pool.clone(),
            read: pool,
            lock_session: Mutex::new(None),
        })
    }
}

shared_queries!(PostgresStore, Postgres);

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
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

    async fn try_lead(&self, _holder: &str, _now_ms: u64) -> StoreResult<bool> {
        let mut session = self.lock_session.lock().await;
        if let Some(conn) = session.as_mut() {
            // Still leading while the session that holds the lock is alive.
            if conn.ping().await.is_ok() {
                return Ok(true);
            }
            *session = None;
        }
        let mut conn = self.write.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(DECISION_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if locked {
            *session = Some(conn.detach());
        }
        Ok(locked)
    }

    async fn release_lead(&self, _holder: &str) -> StoreResult<()> {
        if let Some(mut conn) = self.lock_session.lock().await.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(DECISION_LOCK)
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }
}
