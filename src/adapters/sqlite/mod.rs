//! SQLite: the embedded SQL truth, and the file format of the embedded queue and inbox store.

mod store;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use store::SqliteStore;

/// Opens (creating if needed) one SQLite file in WAL mode and applies `migrations` in order.
///
/// WAL lets readers go on while the one writer commits; `synchronous = NORMAL` keeps commits
/// durable across a process crash (kill -9) at a fraction of the fsync cost of FULL.
pub async fn open(path: &Path, migrations: &[(i64, &'static str)]) -> anyhow::Result<SqlitePool> {
    use anyhow::Context as _;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", "-65536");
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    migrate(&pool, migrations).await.with_context(|| format!("migrating {}", path.display()))?;
    Ok(pool)
}

/// Applies each migration not yet recorded, each in its own transaction.
async fn migrate(pool: &SqlitePool, migrations: &[(i64, &'static str)]) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    for &(version, sql) in migrations {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        if applied.is_none() {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}
