//! Which adapter serves each port: the only code that names adapters. Each adapter is a crate of
//! its own (`adapters/<name>/`), compiled in when its Cargo feature is on; a port whose adapter
//! this build lacks refuses to open and says which feature to build with.

use std::path::Path;
use std::sync::Arc;

use herald_domain::ports::{InboxStore, NotificationStore, Queue, ReceiverDirectory, SendLedger};

/// The three ports of the SQL truth, served by one adapter on one database.
pub struct SqlTruth {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
}

/// The SQL truth in `data_dir` (`herald.db`).
#[cfg(feature = "sqlite")]
pub async fn sql_truth(data_dir: &Path) -> anyhow::Result<SqlTruth> {
    let store = Arc::new(herald_sqlite::SqliteStore::open(&herald_sqlite::SqliteConfig::in_data_dir(data_dir)).await?);
    Ok(SqlTruth { receivers: store.clone(), notifications: store.clone(), ledger: store })
}

#[cfg(not(feature = "sqlite"))]
pub async fn sql_truth(_data_dir: &Path) -> anyhow::Result<SqlTruth> {
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

/// The inbox store in `data_dir` (`inbox.db`).
#[cfg(feature = "embedded-inbox")]
pub async fn inbox(data_dir: &Path) -> anyhow::Result<Arc<dyn InboxStore>> {
    Ok(Arc::new(
        herald_embedded_inbox::EmbeddedInbox::open(&herald_embedded_inbox::EmbeddedInboxConfig::in_data_dir(data_dir))
            .await?,
    ))
}

#[cfg(not(feature = "embedded-inbox"))]
pub async fn inbox(_data_dir: &Path) -> anyhow::Result<Arc<dyn InboxStore>> {
    anyhow::bail!("this build has no adapter for the inbox store: build with `--features embedded-inbox`")
}
