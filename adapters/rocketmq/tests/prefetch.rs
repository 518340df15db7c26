//! The bound on what a consumer that falls behind keeps in memory (`RocketMqSettings::
//! prefetch_per_queue`, `HERALD_MQ_PREFETCH`): a consumer that answers nothing, as one whose
//! deliveries are all blocked, is handed at most queues × (prefetch + `PULL_BATCH`) messages while
//! ten times as many wait on the broker, which keeps every one of them. Against a broker:
//! `HERALD_TEST_MQ_NAMESRV=127.0.0.1:9876 cargo test -p herald-rocketmq --features broker-tests`.
#![recursion_limit = "512"]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_domain::ports::{Queue, QueueMessage, Subscription};
use herald_rocketmq::{PULL_BATCH, RocketMqQueue, RocketMqSettings};

/// Small, so the bound is far below the 128 messages the listener threads could hold without it.
const PREFETCH: u32 = 2;

#[tokio::test]
async fn a_consumer_that_answers_nothing_is_handed_at_most_its_prefetch_while_ten_times_as_many_wait() {
    let namesrv = std::env::var("HERALD_TEST_MQ_NAMESRV").ok().filter(|n| !n.is_empty());
    let namesrv = namesrv.expect("HERALD_TEST_MQ_NAMESRV is unset: scripts/rocketmq.sh start, then set it");
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let name = format!("herald_test_prefetch_{stamp}_{}", std::process::id());
    let settings = RocketMqSettings { prefetch_per_queue: PREFETCH, ..RocketMqSettings::new(&namesrv) };
    let queues = settings.queues_per_topic as usize;
    let queue = RocketMqQueue::connect(settings).await.expect("the broker is reachable");
    let sub = Subscription { group: name.clone(), topics: vec![name.clone()], tags: vec!["rider".into()] };
    queue.declare(&sub).await.expect("the topic is created");

    // Each queue caches at most the prefetch, plus the one fetch that passed it.
    let bound = queues * (PREFETCH + PULL_BATCH) as usize;
    let queued = 10 * bound;
    let messages: Vec<QueueMessage> = (0..queued)
        .map(|i| QueueMessage {
            topic: name.clone(),
            tag: "rider".into(),
            key: format!("p{i}"),
            body: vec![b'x'; 1024],
        })
        .collect();
    for batch in messages.chunks(100) {
        queue.publish(batch).await.expect("published");
    }
    queue.subscribe(&sub).await.expect("subscribed");

    // Nothing is ever answered: all the consumer was handed stays in its hands. However long it
    // asks, it gets no more than the bound (the client stops fetching at the prefetch); without
    // one, it is soon handed one message per listener thread (128).
    let mut handed = 0;
    let asking = Instant::now() + Duration::from_secs(8);
    while Instant::now() < asking {
        handed += queue.pull(&sub, queued, Duration::from_millis(200)).await.expect("pulled").len();
    }
    assert!(handed > 0, "the consumer was handed messages");
    assert!(handed <= bound, "handed {handed} messages, more than {queues} queues × ({PREFETCH} + {PULL_BATCH})");
    assert_eq!(queue.lag(&sub).await.expect("lag"), queued as u64, "the broker keeps every message");
    queue.shutdown().await;
}
