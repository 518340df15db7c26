//! The SQL truth's contract (`ReceiverDirectory`, `NotificationStore`, `SendLedger`) on the MariaDB /
//! MySQL server named by `HERALD_TEST_MYSQL_URL` (`scripts/mariadb-user.sh` prints one). Each case
//! gets a database of its own (`herald_t_<random>`), dropped when the case ends. Unset, each case
//! says why it does not run and passes — except under `CI=true`, where it fails.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::{SqlPorts, StoreHarness};
use herald_mariadb::{MariaDbConfig, MariaDbStore};
use sqlx::Connection as _;

const URL_VARIABLE: &str = "HERALD_TEST_MYSQL_URL";

/// A fresh database on the test server; opening again reopens the same database.
struct MariaDb {
    /// The server's URL with the database name left for the end: `mysql://…/`.
    base: String,
    database: String,
}

impl MariaDb {
    /// `None` when there is no server to test against (and this is not CI).
    async fn new() -> Option<Self> {
        let Ok(url) = std::env::var(URL_VARIABLE) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{URL_VARIABLE} is not set: CI must run the MariaDB contract (set it from scripts/mariadb-user.sh)"
            );
            eprintln!("skipped: {URL_VARIABLE} is not set (scripts/mariadb-user.sh prints a URL to set it to)");
            return None;
        };
        let base = server_base(&url);
        let database = format!("herald_t_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        Some(Self { base, database })
    }
}

/// `mysql://user:pw@host:port/db?x` → `mysql://user:pw@host:port/`.
fn server_base(url: &str) -> String {
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    match url[authority_at..].find('/') {
        Some(slash) => url[..authority_at + slash + 1].to_owned(),
        None => format!("{url}/"),
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let (base, database) = (self.base.clone(), self.database.clone());
        // Dropped inside the case's runtime, which cannot block on itself: a runtime of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = sqlx::MySqlConnection::connect(&format!("{base}{database}")).await?;
                // A connection of the case still in a transaction would make the drop wait forever.
                sqlx::query("SET SESSION lock_wait_timeout = 10").execute(&mut admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{database}`")))
                    .execute(&mut admin)
                    .await
                    .map(|_| ())
            })
        })
        .join()
        .unwrap()
        .unwrap();
    }
}

#[async_trait]
impl StoreHarness for MariaDb {
    async fn open(&self) -> SqlPorts {
        let config = MariaDbConfig::new(&format!("{}{}", self.base, self.database));
        let store = Arc::new(MariaDbStore::open(&config).await.unwrap());
        SqlPorts { receivers: store.clone(), notifications: store.clone(), ledger: store }
    }
}

// Without a server the factory returns from the case before it runs (having said why).
herald_contracts::store_contract!(match MariaDb::new().await {
    Some(harness) => harness,
    None => return,
});
