//! Which adapter serves each port: the only code that names adapters. Each adapter is a crate of
//! its own (`adapters/<name>/`), compiled in when its Cargo feature is on; a port whose adapter
//! this build lacks refuses to open and says which feature to build with.

use std::path::Path;
use std::sync::Arc;

use herald_app::ConsoleReads;
use herald_domain::InboxCap;
use herald_domain::ports::{InboxStore, NotificationStore, Queue, ReceiverDirectory, SendLedger};

use crate::config::ConsoleLimits;

/// The three ports of the SQL truth, served by one adapter on one database, and the same truth
/// through the console's own bounded connections.
pub struct SqlTruth {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
    pub console: ConsoleReads,
}

/// The SQL truth in `data_dir` (`herald.db`).
#[cfg(feature = "sqlite")]
pub async fn sql_truth(data_dir: &Path, console: &ConsoleLimits) -> anyhow::Result<SqlTruth> {
    let store = herald_sqlite::SqliteStore::open(&herald_sqlite::SqliteConfig::in_data_dir(data_dir)).await?;
    let limits = herald_sqlite::ReadLimits {
        connections: console.connections,
        wait: console.wait,
        statement_timeout: console.statement_timeout,
    };
    let for_console = Arc::new(store.with_read_limits(&limits).await?);
    let store = Arc::new(store);
    let console =
        ConsoleReads { receivers: for_console.clone(), notifications: for_console.clone(), ledger: for_console };
    Ok(SqlTruth { receivers: store.clone(), notifications: store.clone(), ledger: store, console })
}

#[cfg(not(feature = "sqlite"))]
pub async fn sql_truth(_data_dir: &Path, _console: &ConsoleLimits) -> anyhow::Result<SqlTruth> {
    anyhow::bail!("this build has no adapter for the SQL truth: build with `--features sqlite`")
}

/// The queue in `data_dir` (`queue.db`).
#[cfg(feature = "embedded-queue")]
pub async fn queue(data_dir: &Path) -> anyhow::Result<Arc<dyn Queue>> {
    Ok(Arc::new(
        herald_embedded_queue::EmbeddedQueue::open(&herald_embedded_queue::EmbeddedQueueConfig::in_data_dir(data_dir))
            .await?,
    ))
}

#[cfg(not(feature = "embedded-queue"))]
pub async fn queue(_data_dir: &Path) -> anyhow::Result<Arc<dyn Queue>> {
    anyhow::bail!("this build has no adapter for the queue: build with `--features embedded-queue`")
}

/// The inbox store in `data_dir` (`inbox.db`), keeping at most `cap` entries per inbox.
#[cfg(feature = "embedded-inbox")]
pub async fn inbox(data_dir: &Path, cap: InboxCap) -> anyhow::Result<Arc<dyn InboxStore>> {
    let config = herald_embedded_inbox::EmbeddedInboxConfig::in_data_dir(data_dir, cap);
    Ok(Arc::new(herald_embedded_inbox::EmbeddedInbox::open(&config).await?))
}

#[cfg(not(feature = "embedded-inbox"))]
pub async fn inbox(_data_dir: &Path, _cap: InboxCap) -> anyhow::Result<Arc<dyn InboxStore>> {
    anyhow::bail!("this build has no adapter for the inbox store: build with `--features embedded-inbox`")
}

/// Seconds the inbox store's engine takes to write `entries` rows its most direct way, into a fresh
/// file at `path`: the raw limit `herald bench fanout` compares Herald with.
#[cfg(feature = "embedded-inbox")]
pub async fn raw_inbox_write_seconds(path: &Path, entries: u64) -> anyhow::Result<f64> {
    herald_embedded_inbox::raw_write_seconds(path, entries).await
}

#[cfg(not(feature = "embedded-inbox"))]
pub async fn raw_inbox_write_seconds(_path: &Path, _entries: u64) -> anyhow::Result<f64> {
    anyhow::bail!("this build has no embedded inbox store to measure: build with `--features embedded-inbox`")
}
