//! Opening the database: connection options, the session every connection runs in, migrations,
//! the console's bounded pool, and what a MySQL failure means to a caller.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use herald_domain::ports::Failure;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPoolOptions};
use sqlx::{MySql, MySqlPool, QueryBuilder};

use crate::MariaDbConfig;

/// How many connections a kind of reads gets, how long one may wait for a connection, and how long
/// one statement may run.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    pub connections: u32,
    pub wait: Duration,
    pub statement_timeout: Duration,
}

/// MariaDB: a statement stopped by `max_statement_time`.
const ER_STATEMENT_TIMEOUT: &str = "70100";
/// MySQL: a SELECT stopped by `max_execution_time`.
const ER_QUERY_TIMEOUT: u16 = 3024;
/// MariaDB's error number for `max_statement_time`, when the SQLSTATE is the generic one.
const ER_STATEMENT_TIMEOUT_NUMBER: u16 = 1969;

/// What a MySQL failure means to a caller: a statement stopped at its time limit, no connection
/// free in time, or a backend that failed (down, a deadlock, a lock wait: worth retrying).
pub(crate) fn failure_of(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::PoolTimedOut => Failure::Busy,
        sqlx::Error::Database(d) => {
            let number = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number());
            if matches!(number, Some(ER_STATEMENT_TIMEOUT_NUMBER | ER_QUERY_TIMEOUT))
                || d.code().as_deref() == Some(ER_STATEMENT_TIMEOUT)
            {
                Failure::TimedOut
            } else {
                Failure::Unavailable
            }
        }
        _ => Failure::Unavailable,
    }
}

fn options(config: &MariaDbConfig) -> anyhow::Result<MySqlConnectOptions> {
    let url = match config.url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => config.url.clone(),
    };
    // The error names the URL without its password.
    let options = MySqlConnectOptions::from_str(&url).map_err(|e| anyhow::anyhow!("not a MySQL URL: {e}"))?;
    Ok(options.charset("utf8mb4").collation("utf8mb4_bin").timezone(Some("+00:00".to_owned())))
}

/// Every connection reads what was committed before each statement (READ COMMITTED): a send's
/// completion is decided under its notification's row lock and must see the other cities' commits
/// made while it waited for that lock, which a REPEATABLE READ snapshot taken earlier would hide.
async fn prepare_session(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").execute(&mut *conn).await?;
    Ok(())
}

/// The main pool, after applying `migrations` in order.
pub(crate) async fn open(config: &MariaDbConfig, migrations: &[(i64, &'static str)]) -> anyhow::Result<MySqlPool> {
    let options = options(config)?;
    let described = format!("MySQL at {}:{}", options.get_host(), options.get_port());
    let pool = MySqlPoolOptions::new()
        .max_connections(config.connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| Box::pin(prepare_session(conn)))
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to {described}"))?;
    migrate(&pool, migrations).await.with_context(|| format!("migrating {described}"))?;
    Ok(pool)
}

/// The same database through a pool of its own that `limits` bound: what the console reads with,
/// so no console query takes a connection the apps read with, waits longer than it may for one, or
/// runs longer than `statement_timeout` (MariaDB's `max_statement_time`; on MySQL, where that is
/// unknown, `max_execution_time`, which bounds SELECTs).
pub(crate) async fn limited_pool(pool: &MySqlPool, limits: &ReadLimits) -> Result<MySqlPool, sqlx::Error> {
    let seconds = limits.statement_timeout.as_secs_f64();
    MySqlPoolOptions::new()
        .max_connections(limits.connections.max(1))
        .acquire_timeout(limits.wait)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                prepare_session(conn).await?;
                let mariadb = sqlx::query("SET SESSION max_statement_time = ?").bind(seconds).execute(&mut *conn).await;
                if mariadb.is_err() {
                    sqlx::query("SET SESSION max_execution_time = ?")
                        .bind((seconds * 1000.0).ceil() as u64)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with((*pool.connect_options()).clone())
        .await
}

/// Applies each migration not yet recorded. DDL commits on its own in MySQL, so processes starting
/// together are serialized by a named lock instead of a transaction.
async fn migrate(pool: &MySqlPool, migrations: &[(i64, &'static str)]) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT GET_LOCK('herald_migrations', 60)").fetch_one(&mut *conn).await?;
    if locked != Some(1) {
        return Err(sqlx::Error::Protocol("another process held the migration lock for 60 s".into()));
    }
    let applied = apply(&mut conn, migrations).await;
    sqlx::query("SELECT RELEASE_LOCK('herald_migrations')").execute(&mut *conn).await?;
    applied
}

async fn apply(conn: &mut MySqlConnection, migrations: &[(i64, &'static str)]) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL) \
         ENGINE = InnoDB",
    )
    .execute(&mut *conn)
    .await?;
    for &(version, sql) in migrations {
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
        if applied.is_none() {
            sqlx::raw_sql(sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(Utc::now().timestamp_millis())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Pushes `(?, ?, …)` binding each value: the `IN` list of a chunked query.
pub(crate) fn push_list<T>(qb: &mut QueryBuilder<MySql>, values: impl IntoIterator<Item = T>)
where
    T: for<'t> sqlx::Encode<'t, MySql> + sqlx::Type<MySql>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The server of `HERALD_TEST_MYSQL_URL` (see tests/contract.rs), or `None` outside CI.
    async fn server() -> Option<MySqlPool> {
        let Ok(url) = std::env::var("HERALD_TEST_MYSQL_URL") else {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "HERALD_TEST_MYSQL_URL is not set in CI");
            eprintln!("skipped: HERALD_TEST_MYSQL_URL is not set (scripts/mariadb-user.sh prints a URL to set it to)");
            return None;
        };
        Some(MySqlPoolOptions::new().connect_with(options(&MariaDbConfig::new(&url)).unwrap()).await.unwrap())
    }

    const TIGHT: ReadLimits =
        ReadLimits { connections: 1, wait: Duration::from_millis(200), statement_timeout: Duration::from_millis(200) };

    #[tokio::test]
    async fn a_console_statement_past_its_limit_is_stopped_and_reported_timed_out() {
        let Some(main) = server().await else { return };
        let console = limited_pool(&main, &TIGHT).await.unwrap();
        let started = std::time::Instant::now();
        // Five seconds of waiting, stopped at the limit (MariaDB reports it as an error).
        let e = sqlx::query("SELECT SLEEP(5)").execute(&console).await.unwrap_err();
        assert_eq!(failure_of(&e), Failure::TimedOut, "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "stopped at its limit, not run to the end");
        sqlx::query("SELECT 1").execute(&console).await.expect("the connection serves the next statement");
    }

    #[tokio::test]
    async fn a_console_read_that_finds_its_connections_taken_is_reported_busy() {
        let Some(main) = server().await else { return };
        let console = limited_pool(&main, &TIGHT).await.unwrap();
        let held = console.acquire().await.unwrap();
        let e = sqlx::query("SELECT 1").execute(&console).await.unwrap_err();
        assert_eq!(failure_of(&e), Failure::Busy, "{e}");
        drop(held);
        sqlx::query("SELECT 1").execute(&console).await.expect("free again once the holder is done");
        sqlx::query("SELECT 1").execute(&main).await.expect("the main pool never waits for the console's");
    }
}
