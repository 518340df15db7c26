//! The search mirror's feed from SQL's change log: a search outage delays the mirror and loses
//! nothing, what the console writes is listed at once, and the mirror is rebuilt from SQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use herald::startup::{Roles, open_ports, start};
use herald_domain::listing::NotificationFilter;
use herald_domain::ports::{PortError, PortResult};
use herald_domain::search::{SearchCursor, SearchDocument, SearchHits, SearchIndex, SearchRebuild};
use reqwest::StatusCode;
use serde_json::json;

/// The real search index, made unreachable while `down` is set: a backend outage, injected.
struct Outage {
    index: Arc<dyn SearchIndex>,
    down: Arc<AtomicBool>,
}

impl Outage {
    fn reachable(&self) -> PortResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PortError::new("search", "connection refused (outage injected by the test)"));
        }
        Ok(())
    }
}

#[async_trait]
impl SearchIndex for Outage {
    async fn index(&self, position: u64, documents: &[SearchDocument]) -> PortResult<()> {
        self.reachable()?;
        self.index.index(position, documents).await
    }

    async fn applied(&self) -> PortResult<u64> {
        self.reachable()?;
        self.index.applied().await
    }

    async fn search(
        &self,
        filter: &NotificationFilter,
        after: Option<&SearchCursor>,
        limit: usize,
    ) -> PortResult<SearchHits> {
        self.reachable()?;
        self.index.search(filter, after, limit).await
    }

    async fn begin_rebuild(&self) -> PortResult<Box<dyn SearchRebuild>> {
        self.reachable()?;
        self.index.begin_rebuild().await
    }

    async fn ping(&self) -> PortResult<()> {
        self.reachable()?;
        self.index.ping().await
    }
}

/// A Herald whose search backend goes down while the returned switch is set.
async fn herald_with_outage_switch() -> (TestHerald, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let switch = down.clone();
    let h = TestHerald::spawn_on(
        |_| {},
        |ports| ports.search = Arc::new(Outage { index: ports.search.clone(), down: switch }),
    )
    .await;
    (h, down)
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

async fn metrics_text(h: &TestHerald) -> String {
    let r = h.client.get(format!("{}/metrics", h.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

async fn readiness(h: &TestHerald) -> Reply {
    h.call(reqwest::Method::GET, "/readyz", None, None).await
}

/// Lists until the answer satisfies `done` (panics after 20 s).
async fn list_until(h: &TestHerald, query: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = h.admin_get(&format!("/admin/v1/notifications?{query}")).await;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "never got there: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_search_outage_delays_the_mirror_and_loses_nothing() {
    let (h, down) = herald_with_outage_switch().await;
    h.receivers(&[("rider", "r1", "上海", &[])]).await;
    let before =
        h.create(&TestHerald::notification("停运前的通知", json!({"all": true}), json!({"draft": true}))).await;
    assert_eq!(ids(&h.admin_get("/admin/v1/notifications").await), vec![before.clone()]);

    down.store(true, Ordering::SeqCst);
    let (sent, _) = h.send_and_wait(&TestHerald::notification("骑手端升级通知", json!({"all": true}), json!({}))).await;
    let draft = h.create(&TestHerald::notification("周末活动", json!({"all": true}), json!({"draft": true}))).await;
    let cancelled = h.admin_post(&format!("/admin/v1/notifications/{before}/cancel"), &json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let token = h.app_token("rider", "r1");
    assert_eq!(h.inbox_ids(&token).await, vec![sent.clone()], "the apps never notice");
    let read = h.app_post(&token, &format!("/app/v1/inbox/{sent}/read")).await;
    assert_eq!(read.status, StatusCode::NO_CONTENT);

    let refused = h.admin_get("/admin/v1/notifications").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.body);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("search"), "{}", refused.body);
    let ready = readiness(&h).await;
    assert_eq!(ready.status, StatusCode::OK, "search down takes nothing else down: {}", ready.body);
    assert_ne!(ready.body["checks"]["search"], json!("ok"), "{}", ready.body);
    // Created (2), sent (status moves, a page, its read receipt) and cancelled: all wait in SQL.
    let lag = ready.body["search_lag"].as_u64().unwrap();
    assert!(lag >= 6, "the changes wait, counted: {}", ready.body);
    assert!(metrics_text(&h).await.contains(&format!("herald_search_lag_changes {lag}")));

    down.store(false, Ordering::SeqCst);
    // The feed retries on its own (backoff), and the list catches up before it answers.
    let all = list_until(&h, "", |r| r.status == StatusCode::OK).await;
    assert_eq!(ids(&all), vec![draft.clone(), sent.clone(), before.clone()]);
    let found = list_until(&h, "q=骑手", |r| r.status == StatusCode::OK).await;
    assert_eq!(ids(&found), vec![sent.clone()]);
    assert_eq!(ids(&h.admin_get("/admin/v1/notifications?status=cancelled").await), vec![before.clone()]);
    assert_eq!(ids(&h.admin_get("/admin/v1/notifications?status=sent&city=上海").await), vec![sent.clone()]);
    let ready = readiness(&h).await;
    assert_eq!((ready.body["checks"]["search"].clone(), ready.body["search_lag"].clone()), (json!("ok"), json!(0)));
    h.stop().await;
}

/// The mirror applies the change log by itself, about every second, without the console asking.
#[tokio::test]
async fn the_feed_catches_up_by_itself_after_an_outage() {
    let (h, down) = herald_with_outage_switch().await;
    down.store(true, Ordering::SeqCst);
    for i in 0..3 {
        h.create(&TestHerald::notification(&format!("通知{i}"), json!({"all": true}), json!({"draft": true}))).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let ready = readiness(&h).await;
        if ready.body["search_lag"] == json!(0) {
            break;
        }
        assert!(Instant::now() < deadline, "the mirror never caught up: {}", ready.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics_text(&h).await.contains("herald_search_lag_changes 0"));
    assert_eq!(h.admin_get("/admin/v1/notifications").await.body["total"], json!(3));
    h.stop().await;
}

/// What the console just wrote — a creation, a status move — is listed by the very next request.
#[tokio::test]
async fn the_console_reads_its_own_writes() {
    let h = TestHerald::spawn().await;
    for i in 0..5 {
        let id = h
            .create(&TestHerald::notification(&format!("草稿{i}"), json!({"all": true}), json!({"draft": true})))
            .await;
        assert_eq!(ids(&h.admin_get("/admin/v1/notifications?limit=1").await), vec![id.clone()]);
        let cancelled = h.admin_post(&format!("/admin/v1/notifications/{id}/cancel"), &json!({})).await;
        assert_eq!(cancelled.status, StatusCode::OK);
        let listed = h.admin_get("/admin/v1/notifications?status=cancelled&limit=1").await;
        assert_eq!(ids(&listed), vec![id]);
        assert_eq!(listed.body["total"], json!(i + 1));
    }
    h.stop().await;
}

/// Creates `n` drafts through the API of a Herald on `dir`, then stops it.
async fn drafts_on(dir: &std::path::Path, servers: &TestServers, n: usize) -> Vec<String> {
    let running = start(&test_settings(dir, servers), Roles::ALL).await.unwrap();
    let h = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    let mut made = Vec::new();
    for i in 0..n {
        made.push(
            h.create(&TestHerald::notification(&format!("停电通知{i}"), json!({"all": true}), json!({"draft": true})))
                .await,
        );
    }
    assert_eq!(h.admin_get("/admin/v1/notifications?q=停电").await.body["total"], json!(n));
    running.stop().await.unwrap();
    made
}

/// An index gone (deleted, or found damaged and opened empty) is rebuilt from SQL when Herald starts.
#[tokio::test]
async fn a_lost_index_is_rebuilt_from_sql() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    if servers.search_on_server() {
        eprintln!("skipped on a search server: this test loses the embedded index by deleting search/");
        return;
    }
    let mut made = drafts_on(dir.path(), &servers, 3).await;
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();

    let running = start(&test_settings(dir.path(), &servers), Roles::ALL).await.unwrap();
    let h = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    made.reverse();
    let listed = h.admin_get("/admin/v1/notifications?q=停电").await;
    assert_eq!(ids(&listed), made, "{}", listed.body);
    assert_eq!(readiness(&h).await.body["search_lag"], json!(0));
    running.stop().await.unwrap();
}

/// `herald reindex` rebuilds the mirror from SQL and leaves it at the change log's head.
#[tokio::test]
async fn herald_reindex_rebuilds_the_mirror_from_sql() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    if servers.search_on_server() {
        eprintln!("skipped on a search server: this test loses the embedded index by deleting search/");
        return;
    }
    drafts_on(dir.path(), &servers, 4).await;
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();

    // Awaited, not blocking: the Herald just stopped here may hold a write lock until this
    // runtime drops its aborted background task (tests/rebuild.rs).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("reindex")
        .env("HERALD_DATA_DIR", dir.path())
        .env_remove("HERALD_SEARCH_URL")
        .env_remove("HERALD_SQL_URL")
        .envs(servers.env())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("rebuilt from SQL: 4 notifications"), "{said}");

    // Read without any feed running: what is there is what the reindex wrote.
    let ports = open_ports(&test_settings(dir.path(), &servers)).await.unwrap();
    let head = ports.notifications.change_head().await.unwrap();
    assert_eq!(ports.search.applied().await.unwrap(), head);
    let text = NotificationFilter { text: Some("停电".into()), ..Default::default() };
    assert_eq!(ports.search.search(&text, None, 10).await.unwrap().total, 4);
}

/// `herald reindex` on the data dir of a running api refuses, naming the process that writes the
/// embedded index, and leaves that process's mirror serving and fed; once it stops, it rebuilds.
#[tokio::test]
async fn herald_reindex_refuses_while_a_running_api_writes_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    if servers.search_on_server() {
        eprintln!("skipped on a search server: only the embedded index has one writing process");
        return;
    }
    let running = start(&test_settings(dir.path(), &servers), Roles::ALL).await.unwrap();
    let h = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    let draft =
        |i: usize| TestHerald::notification(&format!("停电通知{i}"), json!({"all": true}), json!({"draft": true}));
    h.create(&draft(0)).await;
    // Listed: the api's feed has written the index, so this process is its writer.
    assert_eq!(h.admin_get("/admin/v1/notifications?q=停电").await.body["total"], json!(1));

    // Awaited, not blocking: the api it may ask runs on this test's runtime.
    let reindex = async |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("reindex")
            .args(args)
            .env("HERALD_DATA_DIR", dir.path())
            .env("HERALD_SECRET", SECRET)
            .env_remove("HERALD_SEARCH_URL")
            .env_remove("HERALD_SQL_URL")
            .envs(servers.env())
            .output()
            .await
            .unwrap()
    };
    let out = reindex(&[]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    let writer = format!("written by another Herald process (pid {})", std::process::id());
    assert!(said.contains(&writer) && said.contains("stop that process first"), "{said}");
    assert!(said.contains("herald reindex --server"), "it says how to rebuild beside the api: {said}");

    // The running api still searches and feeds its mirror.
    h.create(&draft(1)).await;
    assert_eq!(h.admin_get("/admin/v1/notifications?q=停电").await.body["total"], json!(2));

    // Through the running api, which writes the index, the rebuild runs.
    let server = format!("http://{}", running.addr.unwrap());
    let out = reindex(&["--server", &server]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("rebuilt from SQL by") && said.contains(": 2 notifications"), "{said}");
    assert_eq!(h.admin_get("/admin/v1/search/reindex").await.body["state"], json!("done"));
    running.stop().await.unwrap();

    let out = reindex(&[]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("rebuilt from SQL: 2 notifications"), "{said}");
}

/// A rebuild asked of the running api (`POST /admin/v1/search/reindex`, as `herald reindex
/// --server` does) answers every search meanwhile from the mirror in use, which stays fed — a
/// notification created during the rebuild is found at once — and then takes over with all of
/// them. On both search adapters.
#[tokio::test]
async fn a_rebuild_through_the_running_api_never_fails_a_search_and_misses_nothing() {
    const NOTIFICATIONS: usize = 1_200;
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    drafts_on(dir.path(), &servers, NOTIFICATIONS).await;
    let running = start(&test_settings(dir.path(), &servers), Roles::ALL).await.unwrap();
    let h = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    let total = async |want: usize| {
        let r = h.admin_get("/admin/v1/notifications?q=停电&limit=5").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["total"], json!(want), "every notification is found: {}", r.body);
    };
    total(NOTIFICATIONS).await;
    assert_eq!(h.admin_get("/admin/v1/search/reindex").await.body["state"], json!("never_run"));

    let started = h.admin_post("/admin/v1/search/reindex", &json!({})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let mut want = NOTIFICATIONS;
    let (mut searched_while_running, mut created_while_running) = (0, false);
    let done = loop {
        let state = h.admin_get("/admin/v1/search/reindex").await.body;
        if state["state"] != json!("running") {
            break state;
        }
        if !created_while_running {
            h.create(&TestHerald::notification("停电通知 重建期间", json!({"all": true}), json!({"draft": true})))
                .await;
            (want, created_while_running) = (want + 1, true);
        }
        total(want).await;
        searched_while_running += 1;
    };
    assert_eq!(done["state"], json!("done"), "{done}");
    assert!(done["indexed"].as_u64().unwrap() >= NOTIFICATIONS as u64, "{done}");
    eprintln!("{searched_while_running} searches answered while the rebuild ran");
    if !created_while_running {
        h.create(&TestHerald::notification("停电通知 重建之后", json!({"all": true}), json!({"draft": true}))).await;
        want += 1;
    }
    total(want).await;
    running.stop().await.unwrap();
}
