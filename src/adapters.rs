//! Which adapter serves each port: the only code that names adapters. Each adapter is a crate of
//! its own (`adapters/<name>/`), compiled in when its Cargo feature is on; a port whose adapter
//! this build lacks refuses to open and says which feature to build with. A port whose server is
//! set (`HERALD_SQL_URL`, …) opens that server's adapter; one whose adapter is not written yet
//! refuses to start rather than silently running embedded.

use std::path::Path;
use std::sync::Arc;

use herald_app::{ConsoleReads, InboxHub};
use herald_domain::InboxCap;
use herald_domain::ports::{InboxHints, InboxStore, NotificationStore, Queue, ReceiverDirectory, SendLedger};
use herald_domain::search::SearchIndex;

use crate::config::{Origin, ServerUrls, Settings};

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
    match &settings.servers.sql {
        Some((url, origin)) => server_sql_truth(settings, url, origin).await,
        None => embedded_sql_truth(settings).await,
    }
}

#[cfg(feature = "mariadb")]
async fn server_sql_truth(settings: &Settings, url: &str, origin: &Origin) -> anyhow::Result<SqlTruth> {
    use anyhow::Context as _;
    let config = herald_mariadb::MariaDbConfig::new(url);
    let store = herald_mariadb::MariaDbStore::open(&config)
        .await
        .with_context(|| format!("opening the SQL truth named by {origin}"))?;
    let console = &settings.console;
    let limits = herald_mariadb::ReadLimits {
        connections: console.connections,
        wait: console.wait,
        statement_timeout: console.statement_timeout,
    };
    let for_console = Arc::new(
        store.with_read_limits(&limits).await.with_context(|| format!("opening the SQL truth named by {origin}"))?,
    );
    let store = Arc::new(store);
    let console =
        ConsoleReads { receivers: for_console.clone(), notifications: for_console.clone(), ledger: for_console };
    Ok(SqlTruth { receivers: store.clone(), notifications: store.clone(), ledger: store, console })
}

#[cfg(not(feature = "mariadb"))]
async fn server_sql_truth(_settings: &Settings, _url: &str, origin: &Origin) -> anyhow::Result<SqlTruth> {
    Err(anyhow::anyhow!(
        "{origin} is set, but this build has no MySQL/MariaDB adapter: build with `--features mariadb`, or unset \
         it to run the SQL truth embedded"
    ))
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

/// The queue: in `data_dir` (`queue.db`) unless `HERALD_MQ_NAMESRV` names a broker (its topics and
/// group under `HERALD_MQ_PREFIX`).
pub async fn queue(settings: &Settings) -> anyhow::Result<Arc<dyn Queue>> {
    if let Some((namesrv, origin)) = &settings.servers.mq_namesrv {
        return rocketmq_queue(namesrv, origin, &settings.servers).await;
    }
    embedded_queue(&settings.data_dir).await
}

/// How long the start waits for the name server and a broker before it gives up.
#[cfg(feature = "rocketmq")]
const MQ_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[cfg(feature = "rocketmq")]
async fn rocketmq_queue(namesrv: &str, origin: &Origin, servers: &ServerUrls) -> anyhow::Result<Arc<dyn Queue>> {
    let settings = herald_rocketmq::RocketMqSettings {
        prefix: servers.mq_prefix.clone(),
        prefetch_per_queue: servers.mq_prefetch,
        ..herald_rocketmq::RocketMqSettings::new(namesrv)
    };
    match tokio::time::timeout(MQ_CONNECT_TIMEOUT, herald_rocketmq::RocketMqQueue::connect(settings)).await {
        Ok(Ok(queue)) => Ok(Arc::new(queue)),
        Ok(Err(e)) => Err(anyhow::anyhow!("{origin}: no RocketMQ broker reachable through that name server: {e}")),
        Err(_) => Err(anyhow::anyhow!("{origin}: no RocketMQ name server answered within {MQ_CONNECT_TIMEOUT:?}")),
    }
}

#[cfg(not(feature = "rocketmq"))]
async fn rocketmq_queue(_namesrv: &str, origin: &Origin, _servers: &ServerUrls) -> anyhow::Result<Arc<dyn Queue>> {
    anyhow::bail!("{origin} is set, but this build has no RocketMQ queue: build with `--features rocketmq`")
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
/// `HERALD_REDIS_URL` names a server (or a cluster).
pub async fn inbox(settings: &Settings) -> anyhow::Result<Arc<dyn InboxStore>> {
    if let Some((url, origin)) = &settings.servers.redis {
        return redis_inbox(url, origin, settings).await;
    }
    embedded_inbox(&settings.data_dir, settings.inbox_cap).await
}

#[cfg(feature = "redis")]
async fn redis_inbox(url: &str, origin: &Origin, settings: &Settings) -> anyhow::Result<Arc<dyn InboxStore>> {
    use anyhow::Context;
    let config =
        herald_redis::RedisConfig::new(url, &settings.servers.redis_prefix, settings.inbox_cap).map_err(|e| {
            let given = match e {
                herald_redis::RedisConfigError::Scheme(_) => origin.to_string(),
                herald_redis::RedisConfigError::Prefix(_) => crate::config::REDIS_PREFIX.env.to_string(),
            };
            anyhow::anyhow!("{given}: {e}")
        })?;
    let store = herald_redis::RedisInbox::open(&config)
        .await
        .with_context(|| format!("{origin}: no inbox store on that Redis"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
async fn redis_inbox(_url: &str, origin: &Origin, _settings: &Settings) -> anyhow::Result<Arc<dyn InboxStore>> {
    anyhow::bail!("{origin} is set, but this build has no Redis inbox store: build with `--features redis`")
}

/// Where inbox hints go: to `hub` (this process's listeners) alone, or, when the inbox store is on
/// Redis, also through Redis pub/sub to every process's; with `listen` (an API process) this
/// process subscribes to the others' hints too.
pub async fn hints(settings: &Settings, hub: Arc<InboxHub>, listen: bool) -> anyhow::Result<Arc<dyn InboxHints>> {
    match &settings.servers.redis {
        Some((url, origin)) => redis_hints(url, origin, settings, hub, listen).await,
        None => Ok(hub),
    }
}

#[cfg(feature = "redis")]
async fn redis_hints(
    url: &str,
    origin: &Origin,
    settings: &Settings,
    hub: Arc<InboxHub>,
    listen: bool,
) -> anyhow::Result<Arc<dyn InboxHints>> {
    use anyhow::Context;
    let config = herald_redis::RedisConfig::new(url, &settings.servers.redis_prefix, settings.inbox_cap)
        .with_context(|| origin.to_string())?;
    let hints = herald_redis::RedisHints::open(&config, hub, listen)
        .await
        .with_context(|| format!("{origin}: no inbox hints on that Redis"))?;
    Ok(Arc::new(hints))
}

#[cfg(not(feature = "redis"))]
async fn redis_hints(
    _url: &str,
    origin: &Origin,
    _settings: &Settings,
    _hub: Arc<InboxHub>,
    _listen: bool,
) -> anyhow::Result<Arc<dyn InboxHints>> {
    anyhow::bail!("{origin} is set, but this build has no Redis adapter: build with `--features redis`")
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

/// The admin search mirror: in `data_dir` (`search/`) unless `HERALD_SEARCH_URL` names a server
/// (its names under `HERALD_SEARCH_PREFIX`).
/// Opening a server sends nothing yet: a server that is down fails searches (503) and the feed
/// retries, but Herald starts.
pub async fn search(settings: &Settings) -> anyhow::Result<Arc<dyn SearchIndex>> {
    if let Some((url, origin)) = &settings.servers.search {
        return server_search_index(url, origin, &settings.servers.search_prefix);
    }
    embedded_search(&settings.data_dir).await
}

#[cfg(feature = "tantivy")]
async fn embedded_search(data_dir: &Path) -> anyhow::Result<Arc<dyn SearchIndex>> {
    let config = herald_tantivy::TantivyConfig::in_data_dir(data_dir);
    // Made here, the owner's alone like the rest of the data dir, before the index creates it.
    crate::private_files::create_dir(&config.dir)?;
    Ok(Arc::new(herald_tantivy::TantivySearch::open(&config).await?))
}

#[cfg(not(feature = "tantivy"))]
async fn embedded_search(_data_dir: &Path) -> anyhow::Result<Arc<dyn SearchIndex>> {
    anyhow::bail!("this build has no adapter for admin search: build with `--features tantivy`")
}

#[cfg(feature = "elasticsearch")]
fn server_search_index(url: &str, origin: &Origin, prefix: &str) -> anyhow::Result<Arc<dyn SearchIndex>> {
    let config = herald_elasticsearch::ElasticsearchConfig {
        prefix: prefix.to_string(),
        ..herald_elasticsearch::ElasticsearchConfig::new(url)
    };
    let index = herald_elasticsearch::ElasticsearchIndex::new(config).map_err(|e| e.context(origin.to_string()))?;
    Ok(Arc::new(index))
}

#[cfg(not(feature = "elasticsearch"))]
fn server_search_index(_url: &str, origin: &Origin, _prefix: &str) -> anyhow::Result<Arc<dyn SearchIndex>> {
    anyhow::bail!(
        "{origin} is set, but this build has no adapter for admin search on that server: build with \
         `--features elasticsearch`, or unset it"
    )
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

/// A search index of its own for `herald bench search`: the embedded one in `dir`, or, given a
/// server's `url`, a mirror on it under a prefix of its own (never the alias Herald serves),
/// deleted by `remove`.
pub struct ScratchSearch {
    pub index: Arc<dyn SearchIndex>,
    /// Which adapter, as a report names it.
    pub backend: String,
    #[cfg(feature = "elasticsearch")]
    server: Option<Arc<herald_elasticsearch::ElasticsearchIndex>>,
}

impl ScratchSearch {
    pub async fn open(dir: &Path, url: Option<&str>) -> anyhow::Result<Self> {
        match url {
            Some(url) => Self::on_server(url),
            None => Ok(Self {
                index: embedded_search(dir).await?,
                backend: "tantivy (embedded)".to_string(),
                #[cfg(feature = "elasticsearch")]
                server: None,
            }),
        }
    }

    #[cfg(feature = "elasticsearch")]
    fn on_server(url: &str) -> anyhow::Result<Self> {
        let config = herald_elasticsearch::ElasticsearchConfig {
            prefix: format!("herald-bench-{}-", std::process::id()),
            search_timeout: std::time::Duration::from_secs(30),
            ..herald_elasticsearch::ElasticsearchConfig::new(url)
        };
        let server = Arc::new(herald_elasticsearch::ElasticsearchIndex::new(config)?);
        Ok(Self { index: server.clone(), backend: format!("Elasticsearch API at {url}"), server: Some(server) })
    }

    #[cfg(not(feature = "elasticsearch"))]
    fn on_server(_url: &str) -> anyhow::Result<Self> {
        anyhow::bail!(
            "a search server is given, but this build has no adapter for it: build with `--features elasticsearch`"
        )
    }

    /// Deletes what it made on a server (the embedded one goes with its directory).
    pub async fn remove(self) -> anyhow::Result<()> {
        #[cfg(feature = "elasticsearch")]
        if let Some(server) = self.server {
            server.delete_all().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tantivy")]
    #[tokio::test]
    async fn the_search_index_opens_in_the_data_dir_and_keeps_its_position() {
        let data = tempfile::tempdir().unwrap();
        let settings = Settings::embedded(data.path(), "127.0.0.1:0");
        let index = search(&settings).await.unwrap();
        assert_eq!(index.applied().await.unwrap(), 0);
        index.index(3, &[]).await.unwrap();
        drop(index);
        assert!(data.path().join("search/CURRENT").is_file());
        assert_eq!(search(&settings).await.unwrap().applied().await.unwrap(), 3);
    }

    /// A Redis that is set but cannot serve (unreachable, or not in this build) stops the start with
    /// an error naming the setting, within the connect timeout, never an embedded store instead.
    #[tokio::test]
    async fn a_redis_set_but_unusable_is_an_error_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::embedded(dir.path(), "127.0.0.1:0");
        settings.servers.redis = Some(("redis://127.0.0.1:1".to_string(), Origin::Env("HERALD_REDIS_URL")));
        let refused = inbox(&settings).await.err().expect("no inbox store on a closed port");
        assert!(format!("{refused:#}").starts_with("HERALD_REDIS_URL"), "{refused:#}");
        settings.servers.redis_prefix = "a{b}".to_string();
        if cfg!(feature = "redis") {
            let refused = inbox(&settings).await.err().expect("a brace in the prefix");
            assert!(refused.to_string().starts_with("HERALD_REDIS_PREFIX"), "{refused}");
        }
    }

    /// A name server that is set but cannot serve (nothing listens, or not in this build) stops the
    /// start with an error naming the setting, within the connect timeout.
    #[tokio::test]
    async fn a_name_server_set_but_unusable_is_an_error_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::embedded(dir.path(), "127.0.0.1:0");
        settings.servers.mq_namesrv = Some(("127.0.0.1:1".to_string(), Origin::Env("HERALD_MQ_NAMESRV")));
        let refused = queue(&settings).await.err().expect("no queue on a closed port");
        assert!(format!("{refused:#}").starts_with("HERALD_MQ_NAMESRV"), "{refused:#}");
    }

    fn with_search_url(url: &str) -> Settings {
        let mut settings = Settings::embedded("unused", "127.0.0.1:0");
        settings.servers.search = Some((url.to_string(), Origin::Env("HERALD_SEARCH_URL")));
        settings
    }

    #[cfg(feature = "elasticsearch")]
    #[tokio::test]
    async fn a_search_server_set_opens_the_elasticsearch_adapter_without_reaching_it() {
        // Nothing listens there: opening sends nothing, so a server that is down never stops a start.
        assert!(search(&with_search_url("http://127.0.0.1:9")).await.is_ok());
    }

    #[cfg(not(feature = "elasticsearch"))]
    #[tokio::test]
    async fn a_search_server_set_without_the_feature_is_refused_naming_setting_and_feature() {
        let refused = search(&with_search_url("http://127.0.0.1:9")).await.err().unwrap().to_string();
        assert!(refused.contains("HERALD_SEARCH_URL") && refused.contains("--features elasticsearch"), "{refused}");
    }
}
