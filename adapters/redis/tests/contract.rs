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
use herald_domain::{
    Category, City, EntryMeta, InboxCap, NotificationId, Page, PageKey, ReceiverId, ReceiverKind, ReceiverRef,
};
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

/// Deletes this case's keys (and nothing else: the server is shared).
impl Drop for Redis {
    fn drop(&mut self) {
        herald_redis::erase_prefix(&self.url, &self.prefix).unwrap();
    }
}

impl Redis {
    /// Runs one command straight on the server (the cluster routes it by its key).
    fn run(&self, cmd: &redis::Cmd) -> redis::Value {
        run_on(&self.url, cmd)
    }
}

/// Runs one command straight on the server at `url` (the cluster routes it by its key).
fn run_on(url: &str, cmd: &redis::Cmd) -> redis::Value {
    match RedisServer::parse(url).unwrap() {
        RedisServer::Single(url) => cmd.query(&mut redis::Client::open(url).unwrap().get_connection().unwrap()),
        RedisServer::Cluster(nodes) => {
            cmd.query(&mut redis::cluster::ClusterClient::new(nodes).unwrap().get_connection().unwrap())
        }
    }
    .unwrap()
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
        category: Category::System,
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
        redis.run(redis::cmd("DEL").arg(format!("{tag}:l:system")).arg(format!("{tag}:v")));
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

/// A page's entries are written by one script per slot (on one server, one for the whole page),
/// which answers which of its receivers' inboxes went past the cap: only those are trimmed, and
/// each exactly, wherever it stands in the page.
async fn a_page_trims_exactly_the_inboxes_it_took_past_the_cap(redis: &Redis) {
    let inbox = redis.open_capped(InboxCap::new("cap", 10).unwrap()).await;
    let rider = |i: usize| ReceiverId::parse("id", &format!("r{i:05}")).unwrap();
    let page_to = |n: &NotificationId, receivers: Vec<ReceiverId>| Page {
        key: PageKey { notification_id: n.clone(), city: City::parse("city", "sh").unwrap(), page_no: 0 },
        receiver_kind: ReceiverKind::Rider,
        receivers,
    };
    let meta_at = |minute: i64| EntryMeta {
        category: Category::System,
        pinned: false,
        force_read: false,
        sent_at_ms: 1_700_000_000_000 + minute * 60_000,
        valid_from_ms: None,
        valid_until_ms: None,
    };
    let mut sent = Vec::new();
    for minute in 0..10 {
        let n = NotificationId::generate();
        inbox.deliver(&page_to(&n, vec![rider(1)]), &meta_at(minute)).await.unwrap();
        sent.push(n);
    }
    let last = NotificationId::generate();
    let delivery = inbox.deliver(&page_to(&last, (0..3).map(rider).collect()), &meta_at(10)).await.unwrap();
    assert_eq!(delivery, PageDelivery { added: 3, repeated: false });
    sent.push(last.clone());
    let me = |i: usize| ReceiverRef { kind: ReceiverKind::Rider, id: rider(i) };
    let full = inbox.entries_of(&me(1), &sent).await.unwrap();
    assert_eq!(full.len(), 9, "the full inbox is trimmed to nine tenths of the cap");
    assert!(full.iter().any(|e| e.notification_id == last), "keeping the newest");
    for i in [0, 2] {
        assert_eq!(inbox.entries_of(&me(i), &sent).await.unwrap().len(), 1, "r{i:05} holds the new one");
    }
}

/// On a loaded machine a call can wait behind others on the server for longer than the client's
/// default 500 ms answer timeout: it must be answered, not failed (a failed delivery is redone, more
/// load; a failed poll is a 503 to an app). A script that holds the server for 1.5 s stands in for
/// the load; the call's keys are on the server (or cluster node) it holds.
async fn a_call_waiting_behind_a_slow_server_is_answered(redis: &Redis) {
    let inbox = redis.open().await;
    let n = NotificationId::generate();
    let same_slot = format!("{}:{{n:{n}}}:slow", redis.prefix);
    let busy = {
        let (url, key) = (redis.url.clone(), same_slot.clone());
        std::thread::spawn(move || {
            let script = "local t = redis.call('TIME') repeat local now = redis.call('TIME') \
                until (now[1] - t[1]) * 1000000 + (now[2] - t[2]) > 1500000 return 1";
            run_on(&url, redis::cmd("EVAL").arg(script).arg(1).arg(key))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let counters = inbox.counters(&n).await;
    assert_eq!(busy.join().unwrap(), redis::Value::Int(1), "the slow script ran");
    assert_eq!(counters.expect("answered after the slow script, not timed out").sent, 0);
}

mod single {
    herald_contracts::inbox_contract!({
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        redis
    });

    #[tokio::test]
    async fn a_call_waiting_behind_a_slow_server_is_answered() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        super::a_call_waiting_behind_a_slow_server_is_answered(&redis).await;
    }

    #[tokio::test]
    async fn a_page_trims_exactly_the_inboxes_it_took_past_the_cap() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        super::a_page_trims_exactly_the_inboxes_it_took_past_the_cap(&redis).await;
    }

    #[tokio::test]
    async fn an_interrupted_delivery_is_finished_by_the_next() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        super::an_interrupted_delivery_is_finished_by_the_next(&redis).await;
    }

    #[tokio::test]
    async fn kill_9_mid_delivery_then_redelivery_counts_exactly() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_URL") else { return };
        super::kill_9_mid_delivery_then_redelivery_counts_exactly(&redis, "single::deliver_until_killed").await;
    }

    #[tokio::test]
    #[ignore = "the child process of kill_9_mid_delivery_then_redelivery_counts_exactly"]
    async fn deliver_until_killed() {
        super::deliver_until_killed().await;
    }
}

mod cluster {
    herald_contracts::inbox_contract!({
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        redis
    });

    #[tokio::test]
    async fn a_call_waiting_behind_a_slow_server_is_answered() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        super::a_call_waiting_behind_a_slow_server_is_answered(&redis).await;
    }

    #[tokio::test]
    async fn a_page_trims_exactly_the_inboxes_it_took_past_the_cap() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        super::a_page_trims_exactly_the_inboxes_it_took_past_the_cap(&redis).await;
    }

    #[tokio::test]
    async fn an_interrupted_delivery_is_finished_by_the_next() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        super::an_interrupted_delivery_is_finished_by_the_next(&redis).await;
    }

    #[tokio::test]
    async fn kill_9_mid_delivery_then_redelivery_counts_exactly() {
        let Some(redis) = super::redis_from("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
        super::kill_9_mid_delivery_then_redelivery_counts_exactly(&redis, "cluster::deliver_until_killed").await;
    }

    #[tokio::test]
    #[ignore = "the child process of kill_9_mid_delivery_then_redelivery_counts_exactly"]
    async fn deliver_until_killed() {
        super::deliver_until_killed().await;
    }
}

/// Receivers and pages of the kill test: 100 pages of 500.
const KILL_PAGES: u32 = 100;

fn kill_page(n: &NotificationId, page_no: u32) -> Page {
    let first = page_no * 500;
    Page {
        key: PageKey { notification_id: n.clone(), city: City::parse("city", "sh").unwrap(), page_no },
        receiver_kind: ReceiverKind::Rider,
        receivers: (first..first + 500).map(|i| ReceiverId::parse("id", &format!("k{i:06}")).unwrap()).collect(),
    }
}

fn kill_meta() -> EntryMeta {
    EntryMeta {
        category: Category::System,
        pinned: false,
        force_read: false,
        sent_at_ms: 1_700_000_000_000,
        valid_from_ms: None,
        valid_until_ms: None,
    }
}

/// The child of `kill_9_mid_delivery_then_redelivery_counts_exactly`: delivers the kill test's pages,
/// 4 at a time, until it is killed. Run only by that test (it sets the variables).
async fn deliver_until_killed() {
    let (Ok(url), Ok(prefix), Ok(n)) =
        (std::env::var("HERALD_KILL_URL"), std::env::var("HERALD_KILL_PREFIX"), std::env::var("HERALD_KILL_ID"))
    else {
        panic!("run only by kill_9_mid_delivery_then_redelivery_counts_exactly");
    };
    let inbox = RedisInbox::open(&RedisConfig::new(&url, &prefix, InboxCap::default()).unwrap()).await.unwrap();
    let n = NotificationId::parse("id", &n).unwrap();
    let pages: Vec<Page> = (0..KILL_PAGES).map(|p| kill_page(&n, p)).collect();
    let meta = kill_meta();
    for group in pages.chunks(4) {
        futures_util::future::try_join_all(group.iter().map(|p| inbox.deliver(p, &meta))).await.unwrap();
    }
}

/// A delivering process killed with SIGKILL at some point of its pages, then every page delivered
/// again (as the queue redelivers what was never acked): each receiver holds the message once and
/// `sent` is exactly the number of receivers, whatever step the kill interrupted.
async fn kill_9_mid_delivery_then_redelivery_counts_exactly(redis: &Redis, child_test: &str) {
    let inbox = redis.open().await;
    let n = NotificationId::generate();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child_test, "--ignored", "--nocapture"])
        .env("HERALD_KILL_URL", &redis.url)
        .env("HERALD_KILL_PREFIX", &redis.prefix)
        .env("HERALD_KILL_ID", n.as_str())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while inbox.page_outcome(&kill_page(&n, 8).key).await.unwrap().is_none() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the child delivers nothing");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let last = kill_page(&n, KILL_PAGES - 1);
    assert_eq!(inbox.page_outcome(&last.key).await.unwrap(), None, "killed mid-way, not after the last page");

    for p in 0..KILL_PAGES {
        inbox.deliver(&kill_page(&n, p), &kill_meta()).await.unwrap();
    }
    let all = u64::from(KILL_PAGES) * 500;
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.sent, c.sent_by_city.get("sh").copied()), (all, Some(all)), "counted exactly once each");
    for p in 0..KILL_PAGES {
        let page = kill_page(&n, p);
        assert_eq!(inbox.page_outcome(&page.key).await.unwrap(), Some(500), "page {p}");
        for id in page.receivers.iter().step_by(25) {
            let me = ReceiverRef { kind: ReceiverKind::Rider, id: id.clone() };
            let held = inbox.entries_of(&me, std::slice::from_ref(&n)).await.unwrap();
            assert_eq!(held.len(), 1, "{id} holds it once");
        }
    }
}
