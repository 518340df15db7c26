//! The `InboxStore` contract on Redis: once against one server (`HERALD_TEST_REDIS_URL`, e.g.
//! `redis://127.0.0.1:6379`) and once against a Redis Cluster (`HERALD_TEST_REDIS_CLUSTER_URL`, e.g.
//! `redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002` from
//! `scripts/redis-cluster.sh start`; list every master, so each case's keys can be deleted from
//! each). Each case runs under a fresh key prefix, deleted afterwards (never a FLUSHALL: the server
//! is shared). Unset, each case says why it skips and passes, except with `CI=true`, where it fails.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::InboxHarness;
use herald_domain::ports::{InboxStore, PageDelivery};
use herald_domain::{City, EntryMeta, InboxCap, NotificationId, Page, PageKey, ReceiverId, ReceiverKind, ReceiverRef};
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

impl Redis {
    /// Runs one command straight on the server (the cluster routes it by its key).
    fn run(&self, cmd: &redis::Cmd) -> redis::Value {
        match RedisServer::parse(&self.url).unwrap() {
            RedisServer::Single(url) => cmd.query(&mut redis::Client::open(url).unwrap().get_connection().unwrap()),
            RedisServer::Cluster(nodes) => {
                cmd.query(&mut redis::cluster::ClusterClient::new(nodes).unwrap().get_connection().unwrap())
            }
        }
        .unwrap()
    }
}

/// A delivery killed after its page's script (the page recorded and counted, its new receivers
/// listed as pending) and before some entries were written: the next delivery of that page writes
/// them, moves no counter, and clears the pending list. The state is made by hand, as the kill
/// leaves it: the script's outcome with five entries missing.
async fn an_interrupted_delivery_is_finished_by_the_next(redis: &Redis) {
    let inbox = redis.open().await;
    let n = NotificationId::generate();
    let receivers: Vec<ReceiverId> = (0..10).map(|i| ReceiverId::parse("id", &format!("r{i:05}")).unwrap()).collect();
    let page = Page {
        key: PageKey { notification_id: n.clone(), city: City::parse("city", "sh").unwrap(), page_no: 0 },
        receiver_kind: ReceiverKind::Rider,
        receivers: receivers.clone(),
    };
    let meta = EntryMeta {
        pinned: false,
        force_read: false,
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        valid_from_ms: None,
        valid_until_ms: None,
    };
    assert_eq!(inbox.deliver(&page, &meta).await.unwrap(), PageDelivery { added: 10, repeated: false });
    let pending = format!("{}:{{n:{n}}}:w:sh/0", redis.prefix);
    for id in &receivers[..5] {
        let tag = format!("{}:{{r:rider:{id}}}", redis.prefix);
        redis.run(redis::cmd("DEL").arg(format!("{tag}:l")).arg(format!("{tag}:v")));
        redis.run(redis::cmd("RPUSH").arg(&pending).arg(format!("rider:{id}")));
    }
    let me = |id: &ReceiverId| ReceiverRef { kind: ReceiverKind::Rider, id: id.clone() };
    assert!(inbox.entries_of(&me(&receivers[0]), std::slice::from_ref(&n)).await.unwrap().is_empty());

    let again = inbox.deliver(&page, &meta).await.unwrap();
    assert_eq!(again, PageDelivery { added: 10, repeated: true }, "the first outcome");
    for id in &receivers {
        assert_eq!(inbox.entries_of(&me(id), std::slice::from_ref(&n)).await.unwrap().len(), 1, "{id} holds it");
    }
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10, "counted once");
    assert_eq!(redis.run(redis::cmd("EXISTS").arg(&pending)), redis::Value::Int(0), "nothing pending");
    assert_eq!(inbox.deliver(&page, &meta).await.unwrap(), again);
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10);
}

mod single {
    herald_contracts::inbox_contract!({
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        redis
    });

    #[tokio::test]
    async fn an_interrupted_delivery_is_finished_by_the_next() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        super::an_interrupted_delivery_is_finished_by_the_next(&redis).await;
    }
}

mod cluster {
    herald_contracts::inbox_contract!({
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        redis
    });

    #[tokio::test]
    async fn an_interrupted_delivery_is_finished_by_the_next() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        super::an_interrupted_delivery_is_finished_by_the_next(&redis).await;
    }
}
