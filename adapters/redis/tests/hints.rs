//! Inbox hints across processes on Redis pub/sub: against one server (`HERALD_TEST_REDIS_URL`) and
//! a Redis Cluster (`HERALD_TEST_REDIS_CLUSTER_URL`), each case under a fresh prefix; and a lost
//! subscription, against a Redis server of the test's own (`redis-server` on a free port), stopped
//! and started again. Unset, the shared-server cases say why they skip, except with `CI=true`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_domain::ports::InboxHints;
use herald_domain::{InboxCap, ReceiverId, ReceiverKind};
use herald_redis::{RedisConfig, RedisHints};
use tokio::sync::mpsc;

/// Long enough for a hint to arrive on a loaded machine; what must come is waited for up to this.
const SOON: Duration = Duration::from_secs(10);
/// How long a hint that must not come is given to show up anyway.
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Changed(ReceiverKind, Vec<String>),
    Everyone(ReceiverKind),
}

/// A process's hub as the adapter sees it: records what it is told.
struct Hub(Mutex<mpsc::UnboundedSender<Told>>);

impl InboxHints for Hub {
    fn changed(&self, kind: ReceiverKind, receivers: &[ReceiverId]) {
        let ids = receivers.iter().map(|r| r.as_str().to_string()).collect();
        let _ = self.0.lock().unwrap().send(Told::Changed(kind, ids));
    }

    fn everyone(&self, kind: ReceiverKind) {
        let _ = self.0.lock().unwrap().send(Told::Everyone(kind));
    }
}

struct Process {
    hints: RedisHints,
    told: mpsc::UnboundedReceiver<Told>,
}

impl Process {
    async fn open(url: &str, prefix: &str, listen: bool) -> Self {
        let (tx, told) = mpsc::unbounded_channel();
        let config = RedisConfig::new(url, prefix, InboxCap::default()).unwrap();
        let hints = RedisHints::open(&config, Arc::new(Hub(Mutex::new(tx))), listen).await.unwrap();
        Self { hints, told }
    }

    async fn next(&mut self) -> Option<Told> {
        tokio::time::timeout(SOON, self.told.recv()).await.ok().flatten()
    }

    async fn nothing_more(&mut self) -> bool {
        tokio::time::timeout(QUIET, self.told.recv()).await.is_err()
    }
}

fn ids(raw: &[&str]) -> Vec<ReceiverId> {
    raw.iter().map(|id| ReceiverId::parse("id", id).unwrap()).collect()
}

fn changed(kind: ReceiverKind, raw: &[&str]) -> Told {
    Told::Changed(kind, raw.iter().map(|s| s.to_string()).collect())
}

fn server(var: &str) -> Option<String> {
    match std::env::var(var).ok().filter(|u| !u.trim().is_empty()) {
        Some(url) => Some(url),
        None if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!("{var} is unset and CI=true"),
        None => {
            eprintln!("skipped: {var} is unset (scripts/redis-cluster.sh start prints the cluster's)");
            None
        }
    }
}

fn fresh_prefix() -> String {
    format!("herald-test:{}", uuid::Uuid::now_v7().simple())
}

/// A hint made in one process reaches its own hub once (at once, not again from the channel) and
/// every other listening process's hub once; a publishing-only process hears nothing; another
/// prefix (another Herald on the same server) hears nothing.
async fn every_listening_process_hears_each_hint_once(url: &str) {
    let prefix = fresh_prefix();
    let mut api_a = Process::open(url, &prefix, true).await;
    let mut api_b = Process::open(url, &prefix, true).await;
    let mut consumer = Process::open(url, &prefix, false).await;
    let mut elsewhere = Process::open(url, &fresh_prefix(), true).await;

    consumer.hints.changed(ReceiverKind::Rider, &ids(&["r1", "r2"]));
    let page = changed(ReceiverKind::Rider, &["r1", "r2"]);
    assert_eq!(consumer.next().await, Some(page), "the delivering process's own hub, at once");
    let page = changed(ReceiverKind::Rider, &["r1", "r2"]);
    assert_eq!(api_a.next().await.as_ref(), Some(&page));
    assert_eq!(api_b.next().await, Some(page));

    api_a.hints.everyone(ReceiverKind::Merchant);
    assert_eq!(api_a.next().await, Some(Told::Everyone(ReceiverKind::Merchant)));
    assert_eq!(api_b.next().await, Some(Told::Everyone(ReceiverKind::Merchant)));
    api_b.hints.changed(ReceiverKind::Merchant, &[]);

    assert!(api_a.nothing_more().await, "its own hint did not come back through the channel");
    assert!(api_b.nothing_more().await, "an empty change publishes nothing");
    assert!(consumer.nothing_more().await, "a process that does not listen hears no other's hints");
    assert!(elsewhere.nothing_more().await, "another prefix is another Herald");
}

#[tokio::test]
async fn every_listening_process_hears_each_hint_once_on_one_server() {
    let Some(url) = server("HERALD_TEST_REDIS_URL") else { return };
    every_listening_process_hears_each_hint_once(&url).await;
}

#[tokio::test]
async fn every_listening_process_hears_each_hint_once_on_a_cluster() {
    let Some(url) = server("HERALD_TEST_REDIS_CLUSTER_URL") else { return };
    every_listening_process_hears_each_hint_once(&url).await;
}

/// A `redis-server` of this test's own, nothing persisted, stopped when dropped.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package)");
        let own = Self { port, child };
        for _ in 0..100 {
            if redis::Client::open(own.url()).and_then(|c| c.get_connection()).is_ok() {
                return own;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not come up on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Redis restarts under a listening process: its subscription comes back by itself, and since
/// hints may have been missed meanwhile, its hub is told that everyone should fetch; hints flow
/// again afterwards (the publisher reconnects too).
#[tokio::test]
async fn a_lost_subscription_comes_back_and_tells_everyone_to_fetch() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let prefix = fresh_prefix();
    let mut api = Process::open(&redis.url(), &prefix, true).await;
    let consumer = Process::open(&redis.url(), &prefix, false).await;
    consumer.hints.changed(ReceiverKind::Rider, &ids(&["r1"]));
    assert_eq!(api.next().await, Some(changed(ReceiverKind::Rider, &["r1"])));

    drop(redis);
    let _redis = OwnRedis::start(port);
    let mut told = vec![api.next().await, api.next().await];
    told.sort_by_key(|t| format!("{t:?}"));
    let everyone = ReceiverKind::ALL.map(|kind| Some(Told::Everyone(kind)));
    let mut expected = everyone.to_vec();
    expected.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(told, expected, "subscribed again: every listener of each kind should fetch");

    // The publisher finds its connection gone at its next message (that one may be lost).
    let mut heard = None;
    for _ in 0..20 {
        consumer.hints.changed(ReceiverKind::Merchant, &ids(&["m1"]));
        if let Ok(Some(t)) = tokio::time::timeout(QUIET, api.told.recv()).await {
            heard = Some(t);
            break;
        }
    }
    assert_eq!(heard, Some(changed(ReceiverKind::Merchant, &["m1"])), "hints flow again after the restart");
}
