//! The `InboxStore` contract on Redis: once against one server (`HERALD_TEST_REDIS_URL`, e.g.
//! `redis://127.0.0.1:6379`) and once against a Redis Cluster (`HERALD_TEST_REDIS_CLUSTER_URL`, e.g.
//! `redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002` from
//! `scripts/redis-cluster.sh start`; list every master, so each case's keys can be deleted from
//! each). Each case runs under a fresh key prefix, deleted afterwards (never a FLUSHALL: the server
//! is shared). Unset, each case says why it skips and passes, except with `CI=true`, where it fails.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::InboxHarness;
use herald_domain::InboxCap;
use herald_domain::ports::InboxStore;
use herald_redis::{RedisConfig, RedisInbox, RedisServer};

struct Redis {
    url: String,
    prefix: String,
}

/// The server `var` names with a fresh prefix, or `None` (said why) when it is unset outside CI.
fn redis_from(var: &str) -> Option<Redis> {
    match std::env::var(var).ok().filter(|u| !u.trim().is_empty()) {
        Some(url) => Some(Redis { url, prefix: format!("herald-test:{}", uuid::Uuid::now_v7().simple()) }),
        None if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{var} is unset and CI=true: a Redis is required")
        }
        None => {
            eprintln!("skipped: {var} is unset (scripts/redis-cluster.sh start prints the cluster's)");
            None
        }
    }
}

#[async_trait]
impl InboxHarness for Redis {
    async fn open_capped(&self, cap: InboxCap) -> Arc<dyn InboxStore> {
        let config = RedisConfig::new(&self.url, &self.prefix, cap).unwrap();
        Arc::new(RedisInbox::open(&config).await.unwrap())
    }
}

/// Deletes this case's keys, node by node (one key at a time: a cluster node refuses a DEL across
/// slots).
impl Drop for Redis {
    fn drop(&mut self) {
        let nodes = match RedisServer::parse(&self.url).unwrap() {
            RedisServer::Single(url) => vec![url],
            RedisServer::Cluster(nodes) => nodes,
        };
        for node in nodes {
            let mut conn = redis::Client::open(node.as_str()).unwrap().get_connection().unwrap();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}:*", self.prefix))
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut conn)
                    .unwrap();
                for key in keys {
                    let _: () = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
}

mod single {
    herald_contracts::inbox_contract!({
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        redis
    });
}

mod cluster {
    herald_contracts::inbox_contract!({
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        redis
    });
}
