//! PostgreSQL, shared by every replica. Counts from all replicas add up in the same
//! rows; one replica at a time holds an advisory lock and runs rollout decisions.

use sqlx::postgres::{PgPoolOptions, PgQueryResult};
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::Mutex;

use super::StoreResult;
use super::sql::Placeholders;
use super::sql_store::{Dialect, SqlStore};

/// Key of the advisory lock that the deciding replica holds.
const DECISION_LOCK: i64 = 0x6f75_7472_6964_6572; // "outrider"

/// PostgreSQL's ways: `$n` placeholders, and a session advisory lock for leadership.
#[derive(Default)]
pub struct PostgresDialect {
    /// The session that holds the decision lock: the lock lives as long as it does,
    /// so it is kept out of the pool. If the process dies, PostgreSQL ends the session
    /// and frees the lock for another replica.
    lock_session: Mutex<Option<PgConnection>>,
}

pub type PostgresStore = SqlStore<PostgresDialect>;

impl SqlStore<PostgresDialect> {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        // Replicas starting together must not migrate at once; sqlx serialises
        // migrations with an advisory lock of its own.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(SqlStore::new(
            pool.clone(),
            pool,
            PostgresDialect::default(),
        ))
    }
}

impl Dialect for PostgresDialect {
    type Db = Postgres;

    const NAME: &'static str = "postgres";

    const PLACEHOLDERS: Placeholders = Placeholders::Numbered;

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// The lock belongs to a session, not to a holder name: this replica leads while
    /// its lock session lives.
    async fn try_lead(&self, write: &PgPool, _holder: &str, _now_ms: u64) -> StoreResult<bool> {
        let mut session = self.lock_session.lock().await;
        if let Some(conn) = session.as_mut() {
            // Still leading while the session that holds the lock is alive.
            if conn.ping().await.is_ok() {
                return Ok(true);
            }
            *session = None;
        }
        let mut conn = write.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(DECISION_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if locked {
            *session = Some(conn.detach());
        }
        Ok(locked)
    }

    async fn release_lead(&self, _write: &PgPool, _holder: &str) -> StoreResult<()> {
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
