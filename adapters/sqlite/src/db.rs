//! The plumbing every SQLite file of Herald shares (the truth's, the embedded queue's and inbox
//! store's): opening with its pragmas and private file mode, migrations, one writer, and the
//! small helpers their queries use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::ports::Failure;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
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

    /// The same file, read through connections of its own that `limits` bound (the writer is
    /// shared): what the console reads with, so that no console query takes a connection the apps
    /// read with, or runs for longer than the console may.
    pub async fn limited_reads(&self, limits: &ReadLimits) -> Result<Db, sqlx::Error> {
        let timeout = limits.statement_timeout;
        let read = SqlitePoolOptions::new()
            .max_connections(limits.connections.max(1))
            .acquire_timeout(limits.wait)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    plan_once(conn).await?;
                    arm_deadline(conn, timeout).await
                })
            })
            .before_acquire(move |conn, _| Box::pin(async move { arm_deadline(conn, timeout).await.map(|()| true) }))
            .connect_with((*self.read.connect_options()).clone())
            .await?;
        Ok(Db { read, write: self.write.clone() })
    }
}

/// Makes the connection plan each statement once, when it is prepared, whatever values are bound
/// later (SQLite's query planner stability guarantee, `SQLITE_DBCONFIG_ENABLE_QPSG`).
///
/// Without it, SQLite may plan by bound values (the bundled build has STAT4; partial indexes too)
/// and then expires a cached statement whenever such a parameter is bound again, so sqlx's
/// statement cache re-prepares it on every run: measured here, the inbox list (three category
/// ranges in one statement) spent ≈ 300 µs per call parsing and planning, and served 2–2.8× fewer
/// requests (docs/benchmarks.md). Herald's queries are planned by their keys, never by values.
async fn plan_once(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is a live connection, held locked for the call; QPSG takes an int and an
    // optional int* for the previous value, which we do not ask for.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            handle.as_raw_handle().as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            format!("enabling the query planner stability guarantee: SQLite code {rc}").into(),
        ))
    }
}

/// How many connections a kind of reads gets, how long one may wait for a connection, and how long
/// one statement may run.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    pub connections: u32,
    pub wait: Duration,
    pub statement_timeout: Duration,
}

/// SQLite virtual-machine steps between two looks at the clock (a few microseconds' work).
const STEPS_PER_CLOCK_CHECK: i32 = 1_000;

/// Interrupts whatever this connection runs once `timeout` has passed from now: armed each time the
/// connection is handed out, so every statement run on it until it goes back has the same deadline.
async fn arm_deadline(conn: &mut SqliteConnection, timeout: Duration) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + timeout;
    conn.lock_handle().await?.set_progress_handler(STEPS_PER_CLOCK_CHECK, move || std::time::Instant::now() < deadline);
    Ok(())
}

/// What a SQLite failure means to a caller: a statement interrupted at its deadline, no connection
/// free in time, or a backend that failed.
pub(crate) fn failure_of(e: &sqlx::Error) -> Failure {
    const SQLITE_INTERRUPT: &str = "9";
    match e {
        sqlx::Error::PoolTimedOut => Failure::Busy,
        sqlx::Error::Database(d) if d.code().as_deref() == Some(SQLITE_INTERRUPT) => Failure::TimedOut,
        _ => Failure::Unavailable,
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
    let connect = |max| {
        SqlitePoolOptions::new()
            .max_connections(max)
            .after_connect(|conn, _| Box::pin(plan_once(conn)))
            .connect_with(options.clone())
    };
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

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the connection plans statements once (reads the setting back, changing nothing).
    async fn plans_once(pool: &SqlitePool) -> bool {
        let mut conn = pool.acquire().await.unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        let mut on: std::ffi::c_int = -1;
        // SAFETY: a live, locked connection; -1 asks for the current value only.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as std::ffi::c_int,
                &mut on as *mut std::ffi::c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        on == 1
    }

    #[tokio::test]
    async fn every_connection_plans_a_statement_once_whatever_is_bound() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("t.db"), &[]).await.unwrap();
        assert!(plans_once(&db.read).await, "readers");
        assert!(plans_once(db.writer()).await, "the writer");
        let limits =
            ReadLimits { connections: 1, wait: Duration::from_secs(1), statement_timeout: Duration::from_secs(1) };
        let limited = db.limited_reads(&limits).await.unwrap();
        assert!(plans_once(&limited.read).await, "limited readers");
    }
}
