//! The SQL truth's contract (`ReceiverDirectory`, `NotificationStore`, `SendLedger`) on SQLite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_contracts::{SqlPorts, StoreHarness};
use herald_sqlite::{ReadLimits, SqliteConfig, SqliteStore};

/// A fresh database file in a temp dir; opening again reopens the same file.
struct Sqlite(tempfile::TempDir);

#[async_trait]
impl StoreHarness for Sqlite {
    async fn open(&self) -> SqlPorts {
        let store = Arc::new(SqliteStore::open(&SqliteConfig::in_data_dir(self.0.path())).await.unwrap());
        SqlPorts { receivers: store.clone(), notifications: store.clone(), ledger: store }
    }

    async fn open_within(&self, statement_timeout: Duration) -> SqlPorts {
        let store = SqliteStore::open(&SqliteConfig::in_data_dir(self.0.path())).await.unwrap();
        let limits = ReadLimits { connections: 2, wait: Duration::from_secs(10), statement_timeout };
        let store = Arc::new(store.with_read_limits(&limits).await.unwrap());
        SqlPorts { receivers: store.clone(), notifications: store.clone(), ledger: store }
    }
}

herald_contracts::store_contract!(Sqlite(tempfile::tempdir().unwrap()));
