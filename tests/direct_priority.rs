//! A message to one person never waits behind a broadcast: not in the queue, not for a consumer
//! slot, not at the inbox writer, not behind the scheduler's broadcast round.

mod common;

use std::time::{Duration, Instant};

use common::{TestHerald, TestServers, test_settings};
use herald::startup::{Ports, Roles, Settings, start};
use herald_domain::{City, NotificationId, Receiver, ReceiverId, ReceiverKind, ReceiverRef};
use serde_json::json;

fn settings(dir: &std::path::Path, servers: &TestServers) -> Settings {
    let mut s = test_settings(dir, servers);
    s.scheduler.tick = Duration::from_millis(50);
    s
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count` riders `b000000…` spread over `cities` cities, written straight to the directory.
async fn riders(ports: &Ports, count: usize, cities: usize) {
    let all: Vec<_> = (0..count)
        .map(|i| {
            Receiver::new(
                ReceiverKind::Rider,
                ReceiverId::parse("id", &format!("b{i:06}")).unwrap(),
                City::parse("city", &format!("c{:02}", i % cities)).unwrap(),
                Vec::new(),
            )
            .unwrap()
        })
        .collect();
    for chunk in all.chunks(10_000) {
        ports.receivers.upsert_receivers(chunk).await.unwrap();
    }
}

async fn pages_published(ports: &Ports, id: &str) -> u32 {
    let id = NotificationId::parse("id", id).unwrap();
    ports.ledger.progress(&id).await.unwrap().iter().map(|c| c.pages_published).sum()
}

fn include(rider: &str) -> serde_json::Value {
    TestHerald::notification("for one", json!({"include": [rider]}), json!({}))
}

#[tokio::test]
async fn a_direct_page_is_delivered_before_a_queued_broadcast() {
    const RIDERS: usize = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let mut settings = settings(dir.path(), &servers);
    // One slot: before direct pages had their own lane, a pull of one always took the bulk topic.
    settings.consumer.concurrency = 1;
    let producer = start(&settings, Roles { api: true, scheduler: true, consumer: false }).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", producer.addr.unwrap()));
    let ports = producer.ports.clone();
    riders(&ports, RIDERS, 10).await;
    let me = ReceiverRef { kind: ReceiverKind::Rider, id: ReceiverId::parse("id", "b000007").unwrap() };
    let holds = async |id: &str| {
        let id = NotificationId::parse("id", id).unwrap();
        !ports.inbox.entries_of(&me, &[id]).await.unwrap().is_empty()
    };
    let sub = herald_consumers::subscription();
    let bulk_pages = (RIDERS / 500) as u64;
    let (broadcast, direct, consumer);
    if servers.queue_on_server() {
        // A consumer joining a RocketMQ group is given each topic's queues as the broker
        // rebalances, one topic at a time (seen in CI: the direct page came after 102 bulk pages of
        // a start-up): the consumer runs, holding both topics' queues, before the broadcast is
        // queued. The queue's contract holds the rest: a bulk backlog never holds a direct message
        // back (`a_backlog_pulled_slowly_never_holds_back_another_topics_message`).
        consumer = start(&settings, Roles { api: false, scheduler: false, consumer: true }).await.unwrap();
        let warm_up = t.create(&include("b000007")).await;
        until("the consumer delivers a direct page", async || holds(&warm_up).await).await;
        broadcast = t.create(&TestHerald::notification("everyone", json!({"all": true}), json!({}))).await;
        direct = t.create(&include("b000007")).await;
    } else {
        broadcast = t.create(&TestHerald::notification("everyone", json!({"all": true}), json!({}))).await;
        until("the broadcast's pages are queued", async || ports.queue.lag(&sub).await.unwrap() == bulk_pages).await;
        direct = t.create(&include("b000007")).await;
        until("the direct page is queued", async || ports.queue.lag(&sub).await.unwrap() == bulk_pages + 1).await;
        consumer = start(&settings, Roles { api: false, scheduler: false, consumer: true }).await.unwrap();
    }
    until("the direct message is in the inbox", async || holds(&direct).await).await;
    let sent = ports.inbox.counters(&NotificationId::parse("id", &broadcast).unwrap()).await.unwrap().sent;
    assert!(sent < RIDERS as u64 / 10, "the direct page waited for {sent} of {RIDERS} broadcast deliveries");
    consumer.stop().await.unwrap();
    producer.stop().await.unwrap();
}

#[tokio::test]
async fn a_direct_send_is_paged_as_soon_as_it_is_created_even_mid_broadcast_round() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    if servers.queue_on_server() {
        // The order is the scheduler's (the same code on every queue), read from the embedded queue's
        // own sequence; a broker keeps no order across topics to read it from.
        eprintln!("skipped on a broker: this test reads the order pages were queued in from queue.db");
        return;
    }
    let mut settings = settings(dir.path(), &servers);
    // Paced so that a broadcast round (at most a second) writes ~30 pages, one city each.
    settings.scheduler.max_pages_per_second = Some(30);
    let running = start(&settings, Roles { api: true, scheduler: true, consumer: false }).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    let ports = running.ports.clone();
    riders(&ports, 60 * 500, 60).await;
    let broadcast = t.create(&TestHerald::notification("everyone", json!({"all": true}), json!({}))).await;
    until("the broadcast is paging", async || pages_published(&ports, &broadcast).await >= 5).await;
    let direct = t.create(&include("b000007")).await;
    // Every broadcast page written up to here may have been committed before the direct one existed.
    let paged_when_created = pages_published(&ports, &broadcast).await;

    use sqlx::Row as _;
    let url = format!("sqlite://{}?mode=ro", dir.path().join("queue.db").display());
    let queue = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut direct_seq = None;
    until("the direct page is queued", async || {
        direct_seq = sqlx::query("SELECT seq FROM messages WHERE msg_key LIKE ?")
            .bind(format!("{direct}/%"))
            .fetch_optional(&queue)
            .await
            .unwrap()
            .map(|r| r.get::<i64, _>("seq"));
        direct_seq.is_some()
    })
    .await;
    let bulk_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE topic = 'herald_bulk' AND seq < ?")
        .bind(direct_seq.unwrap())
        .fetch_one(&queue)
        .await
        .unwrap();
    running.stop().await.unwrap();
    // The page in hand when the bell rang may still be written; then the round yields.
    assert!(
        bulk_before <= i64::from(paged_when_created) + 1,
        "{bulk_before} broadcast pages went first; {paged_when_created} were written when the direct one was created"
    );
}
