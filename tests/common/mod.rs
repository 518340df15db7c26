//! `TestHerald`: a real Herald (every role, embedded parts, fresh data dir) on a random port, and
//! helpers that speak its HTTP API the way the console and the apps do.
#![allow(dead_code)] // each test binary uses its own subset of the helpers

use std::time::{Duration, Instant};

use herald::auth::{AdminRole, Claims, TokenSigner};
use herald::startup::{Ports, Roles, Running, Settings, open_ports, start, start_with};
use herald_domain::{ReceiverId, ReceiverKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const SECRET: &str = "herald-test-secret-0123456789abcdef";

pub struct TestHerald {
    pub base: String,
    pub client: reqwest::Client,
    pub admin: String,
    pub viewer: String,
    pub data_dir: tempfile::TempDir,
    running: Option<Running>,
}

/// A response's status and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The `error.field` of an error reply.
    pub fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// With `HERALD_TEST_INBOX_REDIS_URL` set (and Herald built with `--features redis`), the inbox
/// store is on that Redis, under a prefix of this data dir's own (so a restart finds it again).
fn inbox_on_redis(settings: &mut Settings, data_dir: &std::path::Path) {
    if let Ok(url) = std::env::var("HERALD_TEST_INBOX_REDIS_URL") {
        settings.servers.redis = Some((url, herald::config::Origin::Env("HERALD_TEST_INBOX_REDIS_URL")));
        settings.servers.redis_prefix = redis_prefix(data_dir);
    }
}

fn redis_prefix(data_dir: &std::path::Path) -> String {
    format!("herald-http:{}", data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
}

/// A Herald on Redis leaves nothing there.
#[cfg(feature = "redis")]
impl Drop for TestHerald {
    fn drop(&mut self) {
        if let Ok(url) = std::env::var("HERALD_TEST_INBOX_REDIS_URL") {
            if let Err(e) = herald_redis::erase_prefix(&url, &redis_prefix(self.data_dir.path())) {
                eprintln!("could not erase this test's Redis keys: {e:#}");
            }
        }
    }
}

impl TestHerald {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A Herald whose settings `configure` adjusts first.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_on(configure, |_| {}).await
    }

    /// A Herald whose settings `configure` adjusts, on the ports they open as `adjust` leaves them
    /// (a port wrapped to fail on demand, say).
    pub async fn spawn_on(configure: impl FnOnce(&mut Settings), adjust: impl FnOnce(&mut Ports)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::embedded(data_dir.path(), "127.0.0.1:0");
        settings.secrets.current = Some(SECRET.to_string());
        settings.scheduler.tick = Duration::from_millis(50);
        inbox_on_redis(&mut settings, data_dir.path());
        // A test reading a live-update stream to its end (as a plain GET does) waits this long.
        settings.streams.max_age = Duration::from_secs(1);
        configure(&mut settings);
        let mut ports = open_ports(&settings).await.expect("ports open");
        adjust(&mut ports);
        let running = start_with(&settings, Roles::ALL, ports).await.expect("herald starts");
        let signer = TokenSigner::new(SECRET);
        Self {
            base: format!("http://{}", running.addr.expect("api role")),
            client: reqwest::Client::new(),
            admin: signer.sign(&Claims::Admin { role: AdminRole::Operator }),
            viewer: signer.sign(&Claims::Admin { role: AdminRole::Viewer }),
            data_dir,
            running: Some(running),
        }
    }

    /// Speaks to a Herald started elsewhere (the caller owns its lifetime).
    pub fn attach(base: &str) -> Self {
        let signer = TokenSigner::new(SECRET);
        Self {
            base: base.to_string(),
            client: reqwest::Client::new(),
            admin: signer.sign(&Claims::Admin { role: AdminRole::Operator }),
            viewer: signer.sign(&Claims::Admin { role: AdminRole::Viewer }),
            data_dir: tempfile::tempdir().expect("temp dir"),
            running: None,
        }
    }

    /// A second API process on the same data dir, as distributed mode runs several; stop it with
    /// `Running::stop`.
    pub async fn second_api(&self) -> (Running, TestHerald) {
        self.second_api_with(|_| {}).await
    }

    /// A second API process whose settings `configure` adjusts first.
    pub async fn second_api_with(&self, configure: impl FnOnce(&mut Settings)) -> (Running, TestHerald) {
        let mut settings = Settings::embedded(self.data_dir.path(), "127.0.0.1:0");
        settings.secrets.current = Some(SECRET.to_string());
        inbox_on_redis(&mut settings, self.data_dir.path());
        configure(&mut settings);
        let roles = Roles { api: true, scheduler: false, consumer: false };
        let running = start(&settings, roles).await.expect("second api starts");
        let other = TestHerald::attach(&format!("http://{}", running.addr.expect("api role")));
        (running, other)
    }

    pub fn ports(&self) -> &herald::startup::Ports {
        &self.running.as_ref().expect("running").ports
    }

    pub fn app_token(&self, kind: &str, id: &str) -> String {
        TokenSigner::new(SECRET).sign(&Claims::App {
            kind: ReceiverKind::parse("kind", kind).unwrap(),
            id: ReceiverId::parse("id", id).unwrap(),
        })
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// Any request: `token` as bearer when given, `body` as JSON when given.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub async fn raw(&self, method: Method, path: &str, token: &str, body: impl Into<reqwest::Body>) -> Reply {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.admin), None).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(&self.admin), Some(body)).await
    }

    pub async fn app_get(&self, token: &str, path: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn app_post(&self, token: &str, path: &str) -> Reply {
        self.call(Method::POST, path, Some(token), None).await
    }

    /// Upserts receivers given as (kind, id, city, groups).
    pub async fn receivers(&self, list: &[(&str, &str, &str, &[&str])]) {
        let batch: Vec<Value> =
            list.iter().map(|(k, id, c, g)| json!({"kind": k, "id": id, "city": c, "groups": g})).collect();
        let r = self.admin_post("/admin/v1/receivers/batch", &json!(batch)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let distinct: std::collections::BTreeSet<(&str, &str)> = list.iter().map(|(k, id, _, _)| (*k, *id)).collect();
        assert_eq!(r.body["upserted"], json!(distinct.len()), "one count per distinct receiver");
    }

    /// `count` riders `prefix0..prefixN` spread round-robin over `cities`.
    pub async fn riders(&self, prefix: &str, count: usize, cities: &[&str]) {
        for chunk in (0..count).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"kind": "rider", "id": format!("{prefix}{i:06}"), "city": cities[i % cities.len()]}))
                .collect();
            let r = self.admin_post("/admin/v1/receivers/batch", &json!(batch)).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
    }

    /// A valid notification body; `extra` overrides or adds fields.
    pub fn notification(title: &str, audience: Value, extra: Value) -> Value {
        let mut body = json!({
            "title": title,
            "body": format!("{title} body"),
            "category": "system",
            "receiver_kind": "rider",
            "audience": audience,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    }

    /// Creates a notification and returns its id.
    pub async fn create(&self, body: &Value) -> String {
        let r = self.admin_post("/admin/v1/notifications", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    pub async fn notification_view(&self, id: &str) -> Value {
        let r = self.admin_get(&format!("/admin/v1/notifications/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }

    /// Polls until the notification reaches `status` (panics after 60 s).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.notification_view(id).await;
            if view["status"] == status {
                return view;
            }
            assert!(Instant::now() < deadline, "never reached {status}: {view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates and waits until sent.
    pub async fn send_and_wait(&self, body: &Value) -> (String, Value) {
        let id = self.create(body).await;
        let view = self.wait_status(&id, "sent").await;
        (id, view)
    }

    pub async fn inbox_ids(&self, token: &str) -> Vec<String> {
        let r = self.app_get(token, "/app/v1/inbox?limit=50").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
    }
}

/// One server-sent event: its type, id and data.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// A server-sent event stream read as a client does, event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (`: heartbeat`) seen so far.
    pub comments: usize,
    pub ended: bool,
}

impl EventStream {
    /// The next event, or None when none comes within `wait` (or the stream ended).
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: None, data: String::new() };
                let mut fields = 0;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                    fields += 1;
                    match name {
                        "event" => event.event = value,
                        "id" => event.id = Some(value),
                        "data" => event.data.push_str(&value),
                        _ => {}
                    }
                }
                if fields > 0 {
                    return Some(event);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// Reads until the stream ends or `wait` passes; true when it ended.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.ended && tokio::time::Instant::now() < deadline {
            self.next_within(deadline - tokio::time::Instant::now()).await;
        }
        self.ended
    }
}

impl TestHerald {
    /// Opens a live-update stream as `token`; Err is the refusal (status and JSON body).
    pub async fn events(&self, path: &str, token: &str, last_event_id: Option<&str>) -> Result<EventStream, Reply> {
        let mut req = self.client.get(format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.expect("request sent");
        if response.status() != StatusCode::OK {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) });
        }
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Ok(EventStream { response, buffer: String::new(), comments: 0, ended: false })
    }
}
