//! The SQL truth's contract (`ReceiverDirectory`, `NotificationStore`, `SendLedger`) on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::{SqlPorts, StoreHarness};
use herald_sqlite::{SqliteConfig, SqliteStore};

/// A fresh database file in a temp dir; opening again reopens the same file.
struct Sqlite(tempfile::TempDir);

#[async_trait]
impl StoreHarness for Sqlite {
    async fn open(&self) -> SqlPorts {
        let store = Arc::new(SqliteStore::open(&SqliteConfig::in_data_dir(self.0.path())).await.unwrap());
        SqlPorts { receivers: store.clone(), notifications: store.clone(), ledger: store }
    }
}

herald_contracts::store_contract!(Sqlite(tempfile::tempdir().unwrap()));
