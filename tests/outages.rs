//! A backend that goes down makes sends wait: no role crashes, no page is lost, `/readyz` answers
//! 503 naming the backend (JSON), and once the backend is back each send ends exact. Each test
//! starts a server of its own (own port, own data dir), stops and restarts exactly that one, and
//! never touches the shared servers.
//!
//! Built with `--features distributed` (CI's distributed list); needs `redis-server`.
#![cfg(feature = "redis")]

mod common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A redis-server of this test's own. Every write is in its append-only file before it answers
/// (`appendfsync always`), so a SIGKILL loses nothing and a restart finds what it held.
struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(dir: &Path) -> Self {
        let mut redis = Self { port: free_port(), dir: dir.to_path_buf(), child: None };
        redis.up();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers() {
            assert!(Instant::now() < deadline, "the test's redis-server on port {} never answered", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// PONG to a PING (not while it loads its file).
    fn answers(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// Killed (SIGKILL), and waited for.
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
    }
}

async fn readiness(h: &TestHerald) -> (StatusCode, Value) {
    let r = h.call(Method::GET, "/readyz", None, None).await;
    (r.status, r.body)
}

async fn wait_ready(h: &TestHerald) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readiness(h).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Failed calls of `backend` whose operation (the port method) is one of `operations`, as
/// `/metrics` counts them.
async fn failed_calls(h: &TestHerald, backend: &str, operations: &[&str]) -> f64 {
    let text = h.client.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let marker = format!("herald_backend_errors_total{{backend=\"{backend}\"");
    text.lines()
        .filter(|l| l.starts_with(&marker) && operations.iter().any(|op| l.contains(&format!("operation=\"{op}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn while_redis_is_down_sends_wait_and_readyz_names_the_inbox_store_then_they_end_exact() {
    let redis_dir = tempfile::tempdir().unwrap();
    let mut redis = OwnRedis::start(redis_dir.path());
    let url = redis.url();
    let h = TestHerald::spawn_with(|s| {
        s.servers.redis = Some((url, herald::config::Origin::Env("HERALD_REDIS_URL")));
        s.servers.redis_prefix = "outage".to_string();
    })
    .await;
    h.riders("down", 1200, &["sh", "bj"]).await;
    assert_eq!(readiness(&h).await.0, StatusCode::OK);

    redis.down();
    let (status, body) = readiness(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], json!("unavailable"), "{body}");
    assert_ne!(body["checks"]["inbox"], json!("ok"), "the inbox store is named: {body}");
    assert!(body["checks"]["inbox"].as_str().is_some_and(|why| !why.is_empty()), "{body}");
    assert_eq!((&body["checks"]["sql"], &body["checks"]["queue"]), (&json!("ok"), &json!("ok")), "{body}");

    // The API takes the notice (SQL only); the scheduler pages it; the consumers cannot deliver.
    let id = h.create(&TestHerald::notification("during the outage", json!({"all": true}), json!({}))).await;
    let sql = h.servers.sql_by_hand(h.data_dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let published = sql.pages_published(&id).await;
        let failed = failed_calls(&h, "inbox", &["deliver", "deliver_pages"]).await;
        if published > 0 && failed > 0.0 {
            break;
        }
        let publishes = failed_calls(&h, "queue", &["publish"]).await;
        assert!(
            Instant::now() < deadline,
            "{published} pages, {publishes} failed publishes, {failed} failed deliveries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sql.delivered_by_city(&id).await.is_empty(), "nothing is delivered while the inbox store is down");
    let view = h.admin_get(&format!("/admin/v1/notifications/{id}")).await;
    match view.status {
        // Its counters live in the inbox store: the view may wait for it too, naming why.
        StatusCode::SERVICE_UNAVAILABLE => assert!(view.code().is_some(), "{:?}", view.body),
        StatusCode::OK => assert_eq!(view.body["status"], json!("sending"), "{:?}", view.body),
        other => panic!("the view answered {other}: {:?}", view.body),
    }

    redis.up();
    wait_ready(&h).await;
    let view = h.wait_status(&id, "sent").await;
    assert_eq!((&view["stats"]["matched"], &view["stats"]["sent"]), (&json!(1200), &json!(1200)), "{view}");
    for city in view["cities"].as_array().expect("cities") {
        assert_eq!((&city["matched"], &city["sent"]), (&json!(600), &json!(600)), "{view}");
    }
    let by_city = sql.delivered_by_city(&id).await;
    assert_eq!(by_city.values().map(|(_, added)| added).sum::<u64>(), 1200, "SQL's ledger: {by_city:?}");
    for rider in ["down000000", "down000599", "down001199"] {
        let ids = h.inbox_ids(&h.app_token("rider", rider)).await;
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{rider} holds it once: {ids:?}");
    }
    sql.close().await;
    h.stop().await;
}
