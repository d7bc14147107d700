//! PostgreSQL, shared by every replica. Counts from all replicas add up in the same
//! rows; one replica at a time holds an advisory lock and runs rollout decisions.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::Mutex;

use super::StoreResult;
use super::sql::store_impl;

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

store_impl!(
    PostgresStore,
    Postgres,
    super::sql::Placeholders::Numbered,
    "postgres",
    {
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
);
