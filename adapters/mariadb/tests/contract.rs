//! The SQL truth's contract (`ReceiverDirectory`, `NotificationStore`, `SendLedger`) on the MariaDB /
//! MySQL server named by `HERALD_TEST_MYSQL_URL` (`scripts/mariadb-user.sh` prints one). Each case
//! gets a database of its own (`herald_t_<random>`), dropped when the case ends. Unset, each case
//! says why it does not run and passes — except under `CI=true`, where it fails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_contracts::{SqlPorts, StoreHarness};
use herald_mariadb::{MariaDbConfig, MariaDbStore, ReadLimits};

const URL_VARIABLE: &str = "HERALD_TEST_MYSQL_URL";

/// A fresh database on the test server; opening again reopens the same database.
struct MariaDb {
    /// The server's URL, as the variable gives it.
    server: String,
    database: String,
}

impl MariaDb {
    /// `None` when there is no server to test against (and this is not CI).
    async fn new() -> Option<Self> {
        let Ok(server) = std::env::var(URL_VARIABLE) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{URL_VARIABLE} is not set: CI must run the MariaDB contract (set it from scripts/mariadb-user.sh)"
            );
            eprintln!("skipped: {URL_VARIABLE} is not set (scripts/mariadb-user.sh prints a URL to set it to)");
            return None;
        };
        let database = format!("herald_t_{:016x}", rand::random::<u64>());
        herald_mariadb::create_database(&server, &database).await.unwrap();
        Some(Self { server, database })
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let (server, database) = (self.server.clone(), self.database.clone());
        // Dropped inside the case's runtime, which cannot block on itself: a runtime of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(herald_mariadb::drop_database(&server, &database))
        })
        .join()
        .unwrap()
        .unwrap();
    }
}

#[async_trait]
impl StoreHarness for MariaDb {
    async fn open(&self) -> SqlPorts {
        let config = MariaDbConfig::new(&herald_mariadb::database_url(&self.server, &self.database));
        let store = Arc::new(MariaDbStore::open(&config).await.unwrap());
        SqlPorts { receivers: store.clone(), notifications: store.clone(), ledger: store }
    }

    async fn open_within(&self, statement_timeout: Duration) -> SqlPorts {
        let config = MariaDbConfig::new(&herald_mariadb::database_url(&self.server, &self.database));
        let store = MariaDbStore::open(&config).await.unwrap();
        let limits = ReadLimits { connections: 2, wait: Duration::from_secs(10), statement_timeout };
        let store = Arc::new(store.with_read_limits(&limits).await.unwrap());
        SqlPorts { receivers: store.clone(), notifications: store.clone(), ledger: store }
    }
}

// Without a server the factory returns from the case before it runs (having said why).
herald_contracts::store_contract!(match MariaDb::new().await {
    Some(harness) => harness,
    None => return,
});
