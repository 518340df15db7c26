//! Where a distributed benchmark run writes: places of its own on the servers the usual settings
//! name (`HERALD_SQL_URL`, `HERALD_REDIS_URL`, `HERALD_MQ_NAMESRV`, `HERALD_SEARCH_URL`), made
//! fresh for the run and removed after it, so a run never reads what another left and leaves
//! nothing behind but the broker's empty topics (RocketMQ keeps topics; no later run uses these).

use crate::config::{MQ_NAMESRV, Origin, REDIS_URL, SEARCH_URL, SQL_URL, ServerUrls, Setting};

/// One run's database, Redis key prefix, topic prefix and index prefix on the servers set.
pub struct Places {
    /// The servers as set, each present.
    given: ServerUrls,
    run: String,
}

/// A server the distributed mode needs, or an error naming its setting.
fn needed<'a>(server: &'a Option<(String, Origin)>, setting: &Setting, what: &str) -> anyhow::Result<&'a str> {
    match server {
        Some((url, _)) => Ok(url),
        None => anyhow::bail!("--mode distributed runs {what} on its server: set {}", setting.env),
    }
}

impl Places {
    /// Fresh places on the servers `given` names; each must be set.
    pub async fn fresh(given: &ServerUrls) -> anyhow::Result<Self> {
        let sql = needed(&given.sql, &SQL_URL, "the SQL truth")?;
        needed(&given.redis, &REDIS_URL, "the inbox store")?;
        needed(&given.mq_namesrv, &MQ_NAMESRV, "the queue")?;
        needed(&given.search, &SEARCH_URL, "admin search")?;
        let places = Self { given: given.clone(), run: format!("{:016x}", rand::random::<u64>()) };
        herald_mariadb::create_database(sql, &places.database())
            .await
            .map_err(|e| e.context(format!("{}: creating the run's database {}", SQL_URL.env, places.database())))?;
        Ok(places)
    }

    fn database(&self) -> String {
        format!("herald_bench_{}", self.run)
    }

    fn server(server: &Option<(String, Origin)>) -> &str {
        server.as_ref().map_or("", |(url, _)| url)
    }

    /// This run's places, as the settings of the Herald it runs.
    pub fn servers(&self) -> ServerUrls {
        let sql = self.given.sql.as_ref().map(|(_, origin)| (self.sql_url(), origin.clone()));
        ServerUrls {
            sql,
            redis_prefix: self.redis_prefix(),
            mq_prefix: format!("b{}_", self.run),
            search_prefix: format!("herald-bench-{}-", self.run),
            ..self.given.clone()
        }
    }

    /// The URL of this run's database.
    pub fn sql_url(&self) -> String {
        herald_mariadb::database_url(Self::server(&self.given.sql), &self.database())
    }

    pub fn redis_url(&self) -> &str {
        Self::server(&self.given.redis)
    }

    pub fn redis_prefix(&self) -> String {
        format!("herald-bench:{}", self.run)
    }

    /// Drops the database, erases the Redis keys and deletes the indices of this run.
    pub async fn remove(self) -> anyhow::Result<()> {
        herald_mariadb::drop_database(Self::server(&self.given.sql), &self.database()).await?;
        let (url, prefix) = (self.redis_url().to_string(), self.redis_prefix());
        tokio::task::spawn_blocking(move || herald_redis::erase_prefix(&url, &prefix)).await??;
        let search = herald_elasticsearch::ElasticsearchConfig {
            prefix: self.servers().search_prefix,
            ..herald_elasticsearch::ElasticsearchConfig::new(Self::server(&self.given.search))
        };
        herald_elasticsearch::ElasticsearchIndex::new(search)?.delete_all().await?;
        Ok(())
    }
}
