//! SQLite: one file in WAL mode. Writes go through a single connection (SQLite has
//! one writer at a time, and queueing in the pool beats retrying on a busy database);
//! reads use a pool of their own. The replica that decides holds a lease row.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool};

use super::StoreResult;
use super::sql::{Placeholders, RELEASE_LEASE, TAKE_LEASE, db_int};
use super::sql_store::{Dialect, SqlStore};

/// A replica that stops renewing loses the lease after this long.
pub const LEASE_MS: u64 = 5_000;

/// SQLite's ways: `?` placeholders, and a lease row for leadership.
pub struct SqliteDialect;

pub type SqliteStore = SqlStore<SqliteDialect>;

impl SqlStore<SqliteDialect> {
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
        Ok(SqlStore::new(write, read, SqliteDialect))
    }
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;

    const NAME: &'static str = "sqlite";

    /// `?`: binding thousands of `$n` takes quadratic time in SQLite.
    const PLACEHOLDERS: Placeholders = Placeholders::Anonymous;

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// A lease row: SQLite has no advisory locks, and several processes may share the
    /// file. The holder renews it every tick; another takes it once it has expired.
    async fn try_lead(&self, write: &SqlitePool, holder: &str, now_ms: u64) -> StoreResult<bool> {
        let taken = sqlx::query(TAKE_LEASE)
            .bind(holder)
            .bind(db_int(now_ms + LEASE_MS))
            .bind(db_int(now_ms))
            .execute(write)
            .await?
            .rows_affected();
        Ok(taken > 0)
    }

    async fn release_lead(&self, write: &SqlitePool, holder: &str) -> StoreResult<()> {
        sqlx::query(RELEASE_LEASE)
            .bind(holder)
            .execute(write)
            .await?;
        Ok(())
    }
}
