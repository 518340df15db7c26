//! The `Queue` contract: durable, topics and tags, consumer groups, at-least-once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use herald_domain::ports::{Queue, QueueMessage, Subscription};

#[async_trait]
pub trait QueueHarness: Send + Sync {
    /// A client of the queue; every call reaches the same queue.
    async fn open(&self) -> Arc<dyn Queue>;
    /// Topic names unique to this harness, so suites sharing a broker do not meet.
    fn topic(&self, name: &str) -> String;
    /// Group names unique to this harness, for the same reason (a RocketMQ group's retry and
    /// dead-letter topics are the group's, whatever topics it consumes).
    fn group(&self, name: &str) -> String {
        name.to_string()
    }
    /// How long a case waits for a message that is due: published, retried with a short delay, or
    /// left by a dead holder. Backends differ here legitimately (a RocketMQ retry comes back after
    /// 10 s at the earliest), so the harness says.
    fn delivery_wait(&self) -> Duration {
        Duration::from_secs(10)
    }
    /// Whether a message whose holder died comes back counting that hand-out as an attempt. The
    /// embedded queue records every hand-out; RocketMQ re-reads a dead holder's queue from the
    /// group's offset and never learns the message was handed out, so its attempt is unchanged.
    fn counts_a_dead_holders_hand_out(&self) -> bool {
        true
    }
    /// Whether one topic's messages are handed out in the order they were published. The
    /// RocketMQ client hands a queue's messages to its listener threads at once, which take them
    /// in any order; the port promises priority between topics, not order within one.
    fn keeps_a_topics_order(&self) -> bool {
        true
    }
    /// Whether what a live consumer holds stays its own when another consumer joins the group. A
    /// RocketMQ group rebalances its queues as consumers join: a queue moving to the newcomer
    /// takes the messages its old owner holds along, to be handed out again (at least once).
    fn keeps_a_live_holders_lease_when_a_consumer_joins(&self) -> bool {
        true
    }
    /// After how many attempts the queue stops retrying a message and hands it out once more as
    /// given up (`Delivery::given_up`, for the consumer to keep as a dead letter); `None`: retries
    /// go on forever. A RocketMQ group with a retry limit dead-letters into `%DLQ%<group>`.
    fn gives_up_after(&self) -> Option<u32> {
        None
    }
}

fn msg(topic: &str, tag: &str, key: &str) -> QueueMessage {
    QueueMessage { topic: topic.into(), tag: tag.into(), key: key.into(), body: format!("body of {key}").into_bytes() }
}

fn sub(h: &dyn QueueHarness, group: &str, topics: &[&String], tags: &[&str]) -> Subscription {
    Subscription {
        group: h.group(group),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// Pulls until `n` messages arrived or the harness's `delivery_wait` passed.
async fn pull_n(
    h: &dyn QueueHarness,
    q: &dyn Queue,
    s: &Subscription,
    n: usize,
) -> Vec<herald_domain::ports::Delivery> {
    let deadline = Instant::now() + h.delivery_wait();
    let mut got: Vec<herald_domain::ports::Delivery> = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        for delivery in q.pull(s, n - got.len(), Duration::from_millis(200)).await.expect("pull") {
            // Held past its lease while the case waited for the rest (a slow broker), a message is
            // rightly handed out again, at a later attempt: that one replaces it. The same attempt
            // twice is a duplicate and stays, for the case to catch.
            match got.iter_mut().find(|d| d.message.key == delivery.message.key && d.attempt < delivery.attempt) {
                Some(held) => *held = delivery,
                None => got.push(delivery),
            }
        }
    }
    got
}

pub async fn delivers_in_order_and_ack_removes(h: &dyn QueueHarness) {
    let q = h.open().await;
    let t = h.topic("bulk");
    let s = sub(h, "g1", &[&t], &["rider"]);
    q.subscribe(&s).await.unwrap();
    let sent: Vec<_> = (0..5).map(|i| msg(&t, "rider", &format!("k{i}"))).collect();
    q.publish(&sent).await.unwrap();
    let mut got = pull_n(h, q.as_ref(), &s, 5).await;
    let keys: Vec<_> = got.iter().map(|d| d.message.key.clone()).collect();
    if !h.keeps_a_topics_order() {
        assert_eq!(keys.len(), 5, "every message arrives: {keys:?}");
        got.sort_by(|a, b| a.message.key.cmp(&b.message.key));
    }
    let keys: Vec<_> = got.iter().map(|d| d.message.key.clone()).collect();
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"], "each once, in order");
    assert_eq!(got[2].message, sent[2], "topic, tag, key and body arrive intact");
    assert!(got.iter().all(|d| d.attempt == 1));
    q.ack(&s, &got.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.lag(&s).await.unwrap(), 0);
    assert!(q.pull(&s, 10, Duration::from_millis(300)).await.unwrap().is_empty(), "acked messages never return");
}

pub async fn filters_by_topic_and_tag(h: &dyn QueueHarness) {
    let q = h.open().await;
    let (bulk, direct) = (h.topic("bulk"), h.topic("direct"));
    let riders = sub(h, "riders", &[&bulk, &direct], &["rider"]);
    let merchants_bulk = sub(h, "merchants", &[&bulk], &["merchant"]);
    let merchants_direct = sub(h, "merchants-direct", &[&direct], &["merchant"]);
    q.subscribe(&riders).await.unwrap();
    q.subscribe(&merchants_bulk).await.unwrap();
    q.declare(&merchants_direct).await.unwrap();
    q.publish(&[msg(&bulk, "rider", "r-bulk"), msg(&bulk, "merchant", "m-bulk"), msg(&direct, "rider", "r-direct")])
        .await
        .unwrap();
    q.publish(&[msg(&direct, "merchant", "m-direct")]).await.unwrap();
    let mut got: Vec<_> = pull_n(h, q.as_ref(), &riders, 2).await.into_iter().map(|d| d.message.key).collect();
    got.sort();
    assert_eq!(got, ["r-bulk", "r-direct"]);
    let got: Vec<_> = pull_n(h, q.as_ref(), &merchants_bulk, 1).await.into_iter().map(|d| d.message.key).collect();
    assert_eq!(got, ["m-bulk"]);
    assert!(q.pull(&merchants_bulk, 10, Duration::from_millis(300)).await.unwrap().is_empty());
}

pub async fn every_group_gets_every_message(h: &dyn QueueHarness) {
    let q = h.open().await;
    let t = h.topic("bulk");
    let a = sub(h, "a", &[&t], &["rider"]);
    let b = sub(h, "b", &[&t], &["rider"]);
    q.subscribe(&a).await.unwrap();
    q.subscribe(&b).await.unwrap();
    q.publish(&[msg(&t, "rider", "only")]).await.unwrap();
    let from_a = pull_n(h, q.as_ref(), &a, 1).await;
    q.ack(&a, &[from_a[0].receipt.clone()]).await.unwrap();
    let from_b = pull_n(h, q.as_ref(), &b, 1).await;
    assert_eq!(from_b[0].message.key, "only", "acking in one group leaves it for the other");
}

pub async fn retry_later_redelivers_with_next_attempt(h: &dyn QueueHarness) {
    let q = h.open().await;
    let t = h.topic("bulk");
    let s = sub(h, "g", &[&t], &["rider"]);
    q.subscribe(&s).await.unwrap();
    q.publish(&[msg(&t, "rider", "flaky")]).await.unwrap();
    let first = pull_n(h, q.as_ref(), &s, 1).await;
    q.retry_later(&s, &first[0].receipt, Duration::from_millis(100)).await.unwrap();
    let second = pull_n(h, q.as_ref(), &s, 1).await;
    assert_eq!(second[0].message.key, "flaky");
    assert_eq!(second[0].attempt, 2);
}

pub async fn unacked_messages_survive_a_restart(h: &dyn QueueHarness) {
    let t = h.topic("bulk");
    let s = sub(h, "g", &[&t], &["rider"]);
    {
        let q = h.open().await;
        q.subscribe(&s).await.unwrap();
        q.publish(&[msg(&t, "rider", "a"), msg(&t, "rider", "b")]).await.unwrap();
        let got = pull_n(h, q.as_ref(), &s, 2).await;
        q.ack(&s, &[got[0].receipt.clone()]).await.unwrap();
        // "b" was taken and never acked: the process dies here.
    }
    let q = h.open().await;
    q.subscribe(&s).await.unwrap();
    let got = pull_n(h, q.as_ref(), &s, 1).await;
    assert_eq!(got.len(), 1, "the unacked message comes back after a restart");
    assert_eq!(got[0].message.key, "b");
    assert!(q.pull(&s, 10, Duration::from_millis(300)).await.unwrap().is_empty(), "the acked one does not");
}

pub async fn pull_waits_for_a_publish(h: &dyn QueueHarness) {
    let q = h.open().await;
    let t = h.topic("bulk");
    let s = sub(h, "g", &[&t], &["rider"]);
    q.subscribe(&s).await.unwrap();
    let started = Instant::now();
    assert!(q.pull(&s, 1, Duration::from_millis(200)).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150), "an empty pull waits");
    let publisher = {
        let (q, t) = (q.clone(), t.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            q.publish(&[msg(&t, "rider", "late")]).await.unwrap();
        })
    };
    let got = q.pull(&s, 1, h.delivery_wait()).await.unwrap();
    publisher.await.unwrap();
    assert_eq!(got.len(), 1, "a waiting pull returns what is published meanwhile");
}

pub async fn earlier_topics_are_served_first_so_a_backlog_never_delays_them(h: &dyn QueueHarness) {
    let q = h.open().await;
    let (bulk, direct) = (h.topic("bulk"), h.topic("direct"));
    let s = sub(h, "g", &[&direct, &bulk], &["rider"]);
    q.subscribe(&s).await.unwrap();
    let backlog: Vec<_> = (0..50).map(|i| msg(&bulk, "rider", &format!("b{i}"))).collect();
    q.publish(&backlog).await.unwrap();
    q.publish(&[msg(&direct, "rider", "urgent0"), msg(&direct, "rider", "urgent1")]).await.unwrap();
    let first = pull_n(h, q.as_ref(), &s, 3).await;
    let keys: Vec<_> = first.iter().map(|d| d.message.key.as_str()).collect();
    assert_eq!(keys, ["urgent0", "urgent1", "b0"], "the first-listed topic is served before any later one");
}

/// Each topic pulled on its own (a lane per topic, as the consumers do): a later topic's backlog,
/// far larger than what its slow puller takes, never keeps an earlier topic's message from the
/// puller asking for it. (A client that queues every fetched message for the same worker threads
/// hands the urgent one out only after the backlog ahead of it.)
pub async fn a_backlog_pulled_slowly_never_holds_back_another_topics_message(h: &dyn QueueHarness) {
    let q = h.open().await;
    let (bulk, direct) = (h.topic("bulk"), h.topic("direct"));
    let group = sub(h, "g", &[&direct, &bulk], &["rider"]);
    let (bulk_lane, direct_lane) = (sub(h, "g", &[&bulk], &["rider"]), sub(h, "g", &[&direct], &["rider"]));
    q.subscribe(&group).await.unwrap();
    let backlog: Vec<_> = (0..1_000).map(|i| msg(&bulk, "rider", &format!("b{i}"))).collect();
    q.publish(&backlog).await.unwrap();
    // The bulk lane holds one message, acking nothing: the rest of the backlog waits.
    let held = pull_n(h, q.as_ref(), &bulk_lane, 1).await;
    assert_eq!(held.len(), 1, "the backlog is served");
    q.publish(&[msg(&direct, "rider", "urgent")]).await.unwrap();
    let urgent = pull_n(h, q.as_ref(), &direct_lane, 1).await;
    let keys: Vec<_> = urgent.iter().map(|d| d.message.key.as_str()).collect();
    assert_eq!(keys, ["urgent"], "the earlier topic's message is handed out while the backlog waits");
}

pub async fn a_declared_group_keeps_what_is_published_before_its_consumer_runs(h: &dyn QueueHarness) {
    let t = h.topic("bulk");
    let s = sub(h, "late-consumer", &[&t], &["rider"]);
    {
        let publisher = h.open().await;
        publisher.declare(&s).await.unwrap();
        publisher.publish(&[msg(&t, "rider", "early")]).await.unwrap();
        assert_eq!(publisher.lag(&s).await.unwrap(), 1);
    }
    let consumer = h.open().await;
    consumer.subscribe(&s).await.unwrap();
    let got = pull_n(h, consumer.as_ref(), &s, 1).await;
    assert_eq!(got.len(), 1, "kept for the group until a consumer came");
    assert_eq!(got[0].message.key, "early");
}

/// Retries go on (forever, or until the queue's declared limit), and a message the queue gives up
/// on comes back once, given up and intact, so it is never dropped silently.
pub async fn retries_never_give_up_silently(h: &dyn QueueHarness) {
    let q = h.open().await;
    let t = h.topic("bulk");
    let s = sub(h, "g", &[&t], &["rider"]);
    q.subscribe(&s).await.unwrap();
    let sent = msg(&t, "rider", "stubborn");
    q.publish(std::slice::from_ref(&sent)).await.unwrap();
    let limit = h.gives_up_after();
    for attempt in 1..=limit.map_or(20, |l| l + 1) {
        let got = pull_n(h, q.as_ref(), &s, 1).await;
        assert_eq!(got.len(), 1, "attempt {attempt} arrives");
        let d = &got[0];
        assert_eq!(d.message, sent, "attempt {attempt} is the message intact");
        if limit.is_some_and(|l| attempt > l) {
            assert!(d.given_up, "after {limit:?} attempts it comes back given up");
            q.ack(&s, std::slice::from_ref(&d.receipt)).await.unwrap();
            assert!(q.pull(&s, 10, Duration::from_millis(300)).await.unwrap().is_empty(), "given up once");
            assert_eq!(q.lag(&s).await.unwrap(), 0);
            return;
        }
        assert_eq!((d.attempt, d.given_up), (attempt, false), "attempt {attempt}");
        q.retry_later(&s, &d.receipt, Duration::ZERO).await.unwrap();
    }
}

pub async fn a_second_subscriber_leaves_what_the_first_holds(h: &dyn QueueHarness) {
    let t = h.topic("bulk");
    let s = sub(h, "shared", &[&t], &["rider"]);
    let first = h.open().await;
    first.subscribe(&s).await.unwrap();
    first.publish(&[msg(&t, "rider", "held")]).await.unwrap();
    let held = pull_n(h, first.as_ref(), &s, 1).await;
    assert_eq!(held.len(), 1);
    let second = h.open().await;
    second.subscribe(&s).await.unwrap();
    let taken = second.pull(&s, 10, Duration::from_millis(500)).await.unwrap();
    if h.keeps_a_live_holders_lease_when_a_consumer_joins() {
        assert!(taken.is_empty(), "a live consumer's lease is its own: {taken:?}");
    } else {
        assert!(taken.iter().all(|d| d.message.key == "held"), "only what moved with a queue: {taken:?}");
    }
    first.ack(&s, &[held[0].receipt.clone()]).await.unwrap();
    assert_eq!(second.lag(&s).await.unwrap(), 0, "the holder's ack counts");
}

pub async fn a_stale_holders_messages_come_back_and_its_receipts_are_void(h: &dyn QueueHarness) {
    let t = h.topic("bulk");
    let s = sub(h, "g", &[&t], &["rider"]);
    let stale = {
        let dead = h.open().await;
        dead.subscribe(&s).await.unwrap();
        dead.publish(&[msg(&t, "rider", "orphan")]).await.unwrap();
        pull_n(h, dead.as_ref(), &s, 1).await.remove(0).receipt
        // The holder dies here (kill -9): it stops heartbeating.
    };
    let q = h.open().await;
    q.subscribe(&s).await.unwrap();
    let got = pull_n(h, q.as_ref(), &s, 1).await;
    assert_eq!(got.len(), 1, "a dead holder's lease comes back within seconds");
    let back = if h.counts_a_dead_holders_hand_out() { 2 } else { 1 };
    assert_eq!((got[0].message.key.as_str(), got[0].attempt), ("orphan", back));
    q.retry_later(&s, &got[0].receipt, Duration::ZERO).await.unwrap();
    q.retry_later(&s, &stale, Duration::from_secs(3600)).await.unwrap();
    let again = pull_n(h, q.as_ref(), &s, 1).await;
    assert_eq!(again.len(), 1, "the old holder's retry_later was a no-op");
    assert_eq!(again[0].attempt, back + 1);
    q.ack(&s, &[stale]).await.unwrap();
    assert_eq!(q.lag(&s).await.unwrap(), 1, "the old holder's ack was a no-op");
    q.ack(&s, &[again[0].receipt.clone()]).await.unwrap();
    assert_eq!(q.lag(&s).await.unwrap(), 0);
}

pub async fn ping_answers_and_changes_nothing(h: &dyn QueueHarness) {
    let q = h.open().await;
    let t = h.topic("bulk");
    let s = sub(h, "g", &[&t], &["rider"]);
    q.ping().await.expect("a fresh queue answers");
    q.subscribe(&s).await.unwrap();
    q.publish(&[msg(&t, "rider", "k")]).await.unwrap();
    q.ping().await.expect("a queue in use answers");
    assert_eq!(q.lag(&s).await.unwrap(), 1, "pinging consumes nothing");
    assert_eq!(pull_n(h, q.as_ref(), &s, 1).await.len(), 1);
}

crate::suite!($ queue, queue_contract, [
    delivers_in_order_and_ack_removes,
    filters_by_topic_and_tag,
    every_group_gets_every_message,
    retry_later_redelivers_with_next_attempt,
    unacked_messages_survive_a_restart,
    pull_waits_for_a_publish,
    earlier_topics_are_served_first_so_a_backlog_never_delays_them,
    a_backlog_pulled_slowly_never_holds_back_another_topics_message,
    a_declared_group_keeps_what_is_published_before_its_consumer_runs,
    retries_never_give_up_silently,
    a_second_subscriber_leaves_what_the_first_holds,
    a_stale_holders_messages_come_back_and_its_receipts_are_void,
    ping_answers_and_changes_nothing,
]);
