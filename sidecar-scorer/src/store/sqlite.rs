//! SQLite: one file in WAL mode. Writes go through a single connection (SQLite has
//! one writer at a time, and queueing in the pool beats retrying on a busy database);
//! reads use a pool of their own.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::StoreResult;
use super::sql::{RELEASE_LEASE, TAKE_LEASE, db_int, store_impl};

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

store_impl!(
    SqliteStore,
    Sqlite,
    super::sql::Placeholders::Anonymous,
    "sqlite",
    {
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
);
