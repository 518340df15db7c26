//! The `Queue` contract (tests/contracts/queue.rs, the same cases the embedded queue passes), run
//! against a RocketMQ broker: `HERALD_TEST_MQ_NAMESRV=127.0.0.1:9876` (scripts/rocketmq.sh start).
//! Unset, each case skips with a notice — except under `CI=true`, where a missing broker fails.
#![recursion_limit = "512"]

#[path = "../../../tests/contracts/queue.rs"]
mod queue;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_domain::ports::Queue;
use herald_rocketmq::{RocketMqQueue, RocketMqSettings};
use queue::QueueHarness;

/// Short enough that a dead holder's message is back well within a case's 10 s pulls, long
/// enough that a live holder keeps it through the case.
const LEASE: Duration = Duration::from_secs(3);

struct Broker {
    namesrv: String,
    /// Topics of this harness only: the broker's store outlives the run.
    run: String,
}

static HARNESS: AtomicU64 = AtomicU64::new(0);

/// The cases name their groups literally ("g" in several) and RocketMQ wants every consumer of a
/// group to subscribe alike, so cases run one at a time, each with its own topics.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Broker {
    /// The broker to test against, or `None` (with the reason printed) to skip.
    fn from_env() -> Option<Self> {
        match std::env::var("HERALD_TEST_MQ_NAMESRV") {
            Ok(namesrv) if !namesrv.is_empty() => {
                let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
                let n = HARNESS.fetch_add(1, Ordering::Relaxed);
                Some(Self { namesrv, run: format!("{stamp}-{}-{n}", std::process::id()) })
            }
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but HERALD_TEST_MQ_NAMESRV is unset: start scripts/rocketmq.sh and set it")
            }
            _ => {
                eprintln!("skipped: HERALD_TEST_MQ_NAMESRV is unset (scripts/rocketmq.sh start, then set it)");
                None
            }
        }
    }
}

#[async_trait]
impl QueueHarness for Broker {
    async fn open(&self) -> Arc<dyn Queue> {
        let settings = RocketMqSettings { lease: LEASE, ..RocketMqSettings::new(&self.namesrv) };
        Arc::new(RocketMqQueue::connect(settings).await.expect("the broker is reachable"))
    }

    fn topic(&self, name: &str) -> String {
        format!("herald_test_{name}_{}", self.run)
    }
}

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(broker) = Broker::from_env() else { return };
                let _alone = ONE_AT_A_TIME.lock().await;
                queue::$case(&broker).await;
            }
        )*
    };
}

contract_cases!(
    delivers_in_order_and_ack_removes,
    filters_by_topic_and_tag,
    every_group_gets_every_message,
    retry_later_redelivers_with_next_attempt,
    unacked_messages_survive_a_restart,
    pull_waits_for_a_publish,
    earlier_topics_are_served_first_so_a_backlog_never_delays_them,
    a_declared_group_keeps_what_is_published_before_its_consumer_runs,
    retries_never_give_up,
    a_second_subscriber_leaves_what_the_first_holds,
    a_stale_holders_messages_come_back_and_its_receipts_are_void,
);
