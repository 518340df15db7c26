//! The plumbing every SQLite file of Herald shares (the truth's, the embedded queue's and inbox
//! store's): opening with its pragmas and private file mode, migrations, one writer, and the
//! small helpers their queries use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

/// One SQLite file: a pool of readers and a single writer.
///
/// SQLite allows one writer at a time. Funnelling this process's writes through one connection makes
/// them queue in Rust (cheap, fair) instead of in SQLite's busy handler, which sleeps and retries.
/// Other processes on the same file still meet the busy timeout.
#[derive(Clone)]
pub struct Db {
    pub read: SqlitePool,
    write: SqlitePool,
}

impl Db {
    /// The writer, for a single statement that commits on its own.
    pub fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// A write transaction that takes the write lock up front, so that a writer in another process
    /// waits on the busy timeout instead of failing when it upgrades a read lock.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.write.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Opens (creating if needed) one SQLite file in WAL mode and applies `migrations` in order.
///
/// WAL lets readers go on while the writer commits; `synchronous = NORMAL` keeps commits durable
/// across a process crash (kill -9) at a fraction of the fsync cost of FULL. Checkpoints are spaced
/// out (`wal_autocheckpoint`) because a delivered page dirties hundreds of B-tree pages at once.
pub async fn open(path: &Path, migrations: &[(i64, &'static str)]) -> anyhow::Result<Db> {
    use anyhow::Context as _;
    crate::private_files::restrict_file(path).with_context(|| format!("creating {}", path.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = PathBuf::from(companion);
        if companion.exists() {
            crate::private_files::restrict_file(&companion)
                .with_context(|| format!("restricting {}", companion.display()))?;
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", "-65536")
        .pragma("wal_autocheckpoint", "16384")
        .pragma("temp_store", "memory");
    let connect = |max| SqlitePoolOptions::new().max_connections(max).connect_with(options.clone());
    let write = connect(1).await.with_context(|| format!("opening {}", path.display()))?;
    migrate(&write, migrations).await.with_context(|| format!("migrating {}", path.display()))?;
    let read = connect(4).await.with_context(|| format!("opening {}", path.display()))?;
    Ok(Db { read, write })
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

/// Pushes `(?, ?, …)` binding each value: the `IN` list of a chunked query.
pub fn push_list<T>(qb: &mut QueryBuilder<Sqlite>, values: impl IntoIterator<Item = T>)
where
    T: for<'t> sqlx::Encode<'t, Sqlite> + sqlx::Type<Sqlite>,
{
    qb.push("(");
    let mut list = qb.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    qb.push(")");
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}
