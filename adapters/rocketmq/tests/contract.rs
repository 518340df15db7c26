//! The `Queue` contract (herald-contracts, the cases every queue adapter passes) against a RocketMQ
//! broker: `scripts/rocketmq.sh start`, then
//! `HERALD_TEST_MQ_NAMESRV=127.0.0.1:9876 cargo test -p herald-rocketmq --features broker-tests`.
//! Built only with that feature (the adapter is not wired into Herald yet and CI starts no broker
//! yet), so a run without a broker never reports these cases as passed; with the feature and no
//! broker, every case fails.
#![recursion_limit = "512"]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_contracts::QueueHarness;
use herald_domain::ports::{Queue, QueueMessage, Subscription};
use herald_rocketmq::{RocketMqQueue, RocketMqSettings};

/// Short enough that a dead holder's message is back well within a case's pulls, long enough that a
/// live holder keeps it through the case.
const LEASE: Duration = Duration::from_secs(3);
/// Attempts before the broker dead-letters a message in these cases.
const GIVE_UP_AFTER: u32 = 3;

struct Broker {
    namesrv: String,
    /// Topics of this harness only: the broker's store outlives the run.
    run: String,
    /// Cases run one at a time, each with its own topics and groups: the broker is shared, and one
    /// case at a time keeps the timing of leases and rebalances far from the cases' waits.
    _alone: tokio::sync::MutexGuard<'static, ()>,
}

static HARNESS: AtomicU64 = AtomicU64::new(0);
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Broker {
    /// The broker `HERALD_TEST_MQ_NAMESRV` names, this case's turn taken.
    async fn from_env() -> Self {
        let namesrv = std::env::var("HERALD_TEST_MQ_NAMESRV").ok().filter(|n| !n.is_empty());
        let namesrv = namesrv.expect("HERALD_TEST_MQ_NAMESRV is unset: scripts/rocketmq.sh start, then set it");
        let alone = ONE_AT_A_TIME.lock().await;
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        let n = HARNESS.fetch_add(1, Ordering::Relaxed);
        Self { namesrv, run: format!("{stamp}-{}-{n}", std::process::id()), _alone: alone }
    }
}

#[async_trait]
impl QueueHarness for Broker {
    async fn open(&self) -> Arc<dyn Queue> {
        let settings = RocketMqSettings {
            lease: LEASE,
            give_up_after: Some(GIVE_UP_AFTER),
            ..RocketMqSettings::new(&self.namesrv)
        };
        Arc::new(RocketMqQueue::connect(settings).await.expect("the broker is reachable"))
    }

    fn topic(&self, name: &str) -> String {
        format!("herald_test_{name}_{}", self.run)
    }

    fn group(&self, name: &str) -> String {
        format!("herald_test_{name}_{}", self.run)
    }

    /// Listener threads take a queue's messages concurrently.
    fn keeps_a_topics_order(&self) -> bool {
        false
    }

    /// A queue the group gives the newcomer carries what the old owner holds along.
    fn keeps_a_live_holders_lease_when_a_consumer_joins(&self) -> bool {
        false
    }

    /// A retry comes back after the broker's first delay level (1 s) and its schedule tick.
    fn delivery_wait(&self) -> Duration {
        Duration::from_secs(15)
    }

    /// The broker re-reads a dead holder's queue from the group's offset: not sent back, the
    /// message keeps its attempt.
    fn counts_a_dead_holders_hand_out(&self) -> bool {
        false
    }

    /// A limit, so that the dead-letter topic's read-back is exercised (Herald's own default is
    /// none).
    fn gives_up_after(&self) -> Option<u32> {
        Some(GIVE_UP_AFTER)
    }
}

herald_contracts::queue_contract!(Broker::from_env().await);

/// Two queues under different prefixes use the port's same topic and group names on one broker:
/// each sees only what it published, served on the port's topic name, and its group's lag is its
/// own.
#[tokio::test]
async fn a_prefix_keeps_two_heralds_apart_on_one_broker() {
    let broker = Broker::from_env().await;
    let open = |prefix: String| {
        RocketMqQueue::connect(RocketMqSettings { lease: LEASE, prefix, ..RocketMqSettings::new(&broker.namesrv) })
    };
    let a = open(format!("a{}_", broker.run)).await.expect("the broker is reachable");
    let b = open(format!("b{}_", broker.run)).await.expect("the broker is reachable");
    let subscription =
        Subscription { group: "herald_inbox".into(), topics: vec!["herald_bulk".into()], tags: vec!["rider".into()] };
    let message = |key: &str| QueueMessage {
        topic: "herald_bulk".into(),
        tag: "rider".into(),
        key: key.into(),
        body: key.as_bytes().to_vec(),
    };
    for (queue, key) in [(&a, "for-a"), (&b, "for-b")] {
        queue.subscribe(&subscription).await.unwrap();
        queue.publish(&[message(key)]).await.unwrap();
    }
    for (queue, key) in [(&a, "for-a"), (&b, "for-b")] {
        let got = queue.pull(&subscription, 10, Duration::from_secs(30)).await.unwrap();
        let seen: Vec<(&str, &str)> = got.iter().map(|d| (d.message.topic.as_str(), d.message.key.as_str())).collect();
        assert_eq!(seen, [("herald_bulk", key)]);
        assert_eq!(queue.lag(&subscription).await.unwrap(), 1, "{key}: its own message, held");
        queue.ack(&subscription, &[got[0].receipt.clone()]).await.unwrap();
        assert_eq!(queue.lag(&subscription).await.unwrap(), 0, "{key}: acked");
    }
    a.shutdown().await;
    b.shutdown().await;
}
