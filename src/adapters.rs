//! Which adapter serves each port: the only code that names adapters. Each adapter is a crate of
//! its own (`adapters/<name>/`), compiled in when its Cargo feature is on; a port whose adapter
//! this build lacks refuses to open and says which feature to build with. A port whose server is
//! set (`HERALD_SQL_URL`, …) opens that server's adapter; one whose adapter is not written yet
//! refuses to start rather than silently running embedded.

use std::path::Path;
use std::sync::Arc;

use herald_app::ConsoleReads;
use herald_domain::InboxCap;
use herald_domain::ports::{InboxStore, NotificationStore, Queue, ReceiverDirectory, SendLedger};
use herald_domain::search::SearchIndex;

use crate::config::{Origin, Settings};

/// Refuses a server address this build cannot use yet: better no start than a silent embedded one.
fn refuse_server(origin: &Origin, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{origin} is set, but this build has no adapter for {what} on that server yet. Unset it to run {what} \
         embedded."
    )
}

/// The three ports of the SQL truth, served by one adapter on one database, and the same truth
/// through the console's own bounded connections.
pub struct SqlTruth {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
    pub console: ConsoleReads,
}

/// The SQL truth: in `data_dir` (`herald.db`) unless `HERALD_SQL_URL` names a server.
pub async fn sql_truth(settings: &Settings) -> anyhow::Result<SqlTruth> {
    if let Some((_, origin)) = &settings.servers.sql {
        return Err(refuse_server(origin, "the SQL truth"));
    }
    embedded_sql_truth(settings).await
}

#[cfg(feature = "sqlite")]
async fn embedded_sql_truth(settings: &Settings) -> anyhow::Result<SqlTruth> {
    let (data_dir, console) = (&settings.data_dir, &settings.console);
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
async fn embedded_sql_truth(_settings: &Settings) -> anyhow::Result<SqlTruth> {
    anyhow::bail!("this build has no adapter for the SQL truth: build with `--features sqlite`")
}

/// The queue: in `data_dir` (`queue.db`) unless `HERALD_MQ_NAMESRV` names a broker.
pub async fn queue(settings: &Settings) -> anyhow::Result<Arc<dyn Queue>> {
    if let Some((_, origin)) = &settings.servers.mq_namesrv {
        return Err(refuse_server(origin, "the queue"));
    }
    embedded_queue(&settings.data_dir).await
}

#[cfg(feature = "embedded-queue")]
async fn embedded_queue(data_dir: &Path) -> anyhow::Result<Arc<dyn Queue>> {
    Ok(Arc::new(
        herald_embedded_queue::EmbeddedQueue::open(&herald_embedded_queue::EmbeddedQueueConfig::in_data_dir(data_dir))
            .await?,
    ))
}

#[cfg(not(feature = "embedded-queue"))]
async fn embedded_queue(_data_dir: &Path) -> anyhow::Result<Arc<dyn Queue>> {
    anyhow::bail!("this build has no adapter for the queue: build with `--features embedded-queue`")
}

/// The inbox store, keeping at most the inbox cap per inbox: in `data_dir` (`inbox.db`) unless
/// `HERALD_REDIS_URL` names a server.
pub async fn inbox(settings: &Settings) -> anyhow::Result<Arc<dyn InboxStore>> {
    if let Some((_, origin)) = &settings.servers.redis {
        return Err(refuse_server(origin, "the inbox store"));
    }
    embedded_inbox(&settings.data_dir, settings.inbox_cap).await
}

#[cfg(feature = "embedded-inbox")]
async fn embedded_inbox(data_dir: &Path, cap: InboxCap) -> anyhow::Result<Arc<dyn InboxStore>> {
    let config = herald_embedded_inbox::EmbeddedInboxConfig::in_data_dir(data_dir, cap);
    Ok(Arc::new(herald_embedded_inbox::EmbeddedInbox::open(&config).await?))
}

#[cfg(not(feature = "embedded-inbox"))]
async fn embedded_inbox(_data_dir: &Path, _cap: InboxCap) -> anyhow::Result<Arc<dyn InboxStore>> {
    anyhow::bail!("this build has no adapter for the inbox store: build with `--features embedded-inbox`")
}

/// Refuses a search server set: this build has no adapter for one yet.
pub fn search(settings: &Settings) -> anyhow::Result<()> {
    match &settings.servers.search {
        Some((_, origin)) => Err(refuse_server(origin, "admin search")),
        None => Ok(()),
    }
}

/// The admin search mirror: in `data_dir` (`search/`) unless `HERALD_SEARCH_URL` names a server.
/// A missing or damaged index opens empty (applied 0), for the feeder to rebuild from SQL.
pub async fn search_index(settings: &Settings) -> anyhow::Result<Arc<dyn SearchIndex>> {
    search(settings)?;
    embedded_search_index(&settings.data_dir).await
}

#[cfg(feature = "tantivy")]
async fn embedded_search_index(data_dir: &Path) -> anyhow::Result<Arc<dyn SearchIndex>> {
    let config = herald_tantivy::TantivyConfig::in_data_dir(data_dir);
    Ok(Arc::new(herald_tantivy::TantivySearch::open(&config).await?))
}

#[cfg(not(feature = "tantivy"))]
async fn embedded_search_index(_data_dir: &Path) -> anyhow::Result<Arc<dyn SearchIndex>> {
    anyhow::bail!("this build has no adapter for admin search: build with `--features tantivy`")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tantivy")]
    #[tokio::test]
    async fn the_search_index_opens_in_the_data_dir_and_keeps_its_position() {
        let data = tempfile::tempdir().unwrap();
        let settings = Settings::embedded(data.path(), "127.0.0.1:0");
        let index = search_index(&settings).await.unwrap();
        assert_eq!(index.applied().await.unwrap(), 0);
        index.index(3, &[]).await.unwrap();
        drop(index);
        assert!(data.path().join("search/CURRENT").is_file());
        assert_eq!(search_index(&settings).await.unwrap().applied().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_search_server_is_refused_naming_its_setting() {
        let data = tempfile::tempdir().unwrap();
        let mut settings = Settings::embedded(data.path(), "127.0.0.1:0");
        settings.servers.search = Some(("http://search:9200".into(), Origin::Env("HERALD_SEARCH_URL")));
        let refused = search_index(&settings).await.err().expect("refused").to_string();
        assert!(refused.contains("HERALD_SEARCH_URL"), "{refused}");
    }
}
