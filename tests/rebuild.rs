//! `herald rebuild`: the inbox store lost (the embedded file deleted, or this test's Redis keys
//! erased, as a FLUSHALL would) and restored from SQL — every inbox, read flag, archived message,
//! unread count and counter (a variant's split too) as it was — and a second rebuild changes nothing.

mod common;

use std::collections::BTreeMap;

use common::{SECRET, TestHerald, TestServers, test_settings};
use herald::startup::{Roles, Running, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RIDERS: usize = 3_000;
const CITIES: [&str; 3] = ["sh", "bj", "gz"];

fn rider(i: usize) -> String {
    format!("rb{i:06}")
}

async fn up(dir: &std::path::Path, servers: &TestServers) -> (Running, TestHerald) {
    let mut settings = test_settings(dir, servers);
    settings.scheduler.tick = std::time::Duration::from_millis(50);
    let running = start(&settings, Roles::ALL).await.expect("herald starts");
    let h = TestHerald::attach(&format!("http://{}", running.addr.expect("api role")));
    (running, h)
}

/// What every rider's app sees: each inbox (ids and read flags, in order) and its unread count.
async fn inboxes(h: &TestHerald) -> Vec<(Vec<(String, bool)>, Value)> {
    let mut seen = Vec::with_capacity(RIDERS);
    for i in 0..RIDERS {
        let token = h.app_token("rider", &rider(i));
        let page = h.app_get(&token, "/app/v1/inbox?limit=50").await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let items = page.body["items"].as_array().unwrap();
        let listed = items.iter().map(|m| (m["id"].as_str().unwrap().to_string(), m["read"] == true)).collect();
        let unread = h.app_get(&token, "/app/v1/inbox/unread-count").await;
        assert_eq!(unread.status, StatusCode::OK, "{:?}", unread.body);
        seen.push((listed, unread.body));
    }
    seen
}

/// Each notification's stats and per-city (matched, sent), as the console shows them.
async fn stats(h: &TestHerald, ids: &[String]) -> BTreeMap<String, (Value, Value)> {
    let mut all = BTreeMap::new();
    for id in ids {
        let view = h.notification_view(id).await;
        all.insert(id.clone(), (view["stats"].clone(), view["cities"].clone()));
    }
    all
}

/// Awaited, never blocking this test's one runtime thread: the Herald stopped on it may still have a
/// background task (the embedded queue's heartbeat) aborted inside a write transaction, and only
/// that thread can drop it and release queue.db. Blocked, it held the lock past the child's busy
/// timeout ("database is locked" while migrating queue.db, once in CI).
async fn rebuild(dir: &std::path::Path, servers: &TestServers) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("rebuild")
        .env("HERALD_DATA_DIR", dir)
        .env_remove("HERALD_SQL_URL")
        .env_remove("HERALD_REDIS_URL")
        .env_remove("HERALD_MQ_NAMESRV")
        .env_remove("HERALD_SEARCH_URL")
        .envs(servers.env())
        .env("HERALD_SECRET", SECRET)
        .output()
        .await
        .expect("herald rebuild runs");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    said
}

#[tokio::test]
async fn a_lost_inbox_store_is_rebuilt_from_sql_exactly_and_a_second_rebuild_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let (running, h) = up(dir.path(), &servers).await;
    h.riders("rb", RIDERS, &CITIES).await;

    let everyone = TestHerald::notification("全员通知", json!({"all": true}), json!({}));
    let (all, _) = h.send_and_wait(&everyone).await;
    let two_cities = TestHerald::notification("两城置顶", json!({"cities": ["sh", "bj"]}), json!({"pinned": true}));
    let (pinned, _) = h.send_and_wait(&two_cities).await;
    // With a variant rider 4 (bj) is shown, for its group: the split of sent and read comes back too.
    h.receivers(&[("rider", &rider(4), "bj", &["vip"])]).await;
    let vip = json!({"variants": [{"groups": ["vip"], "title": "VIP", "body": "VIP 专享"}]});
    let direct = TestHerald::notification("点对点", json!({"include": [rider(1), rider(2), rider(4)]}), vip);
    let (include, _) = h.send_and_wait(&direct).await;
    let (revoked, _) = h.send_and_wait(&TestHerald::notification("撤回", json!({"cities": ["gz"]}), json!({}))).await;
    let r = h.admin_post(&format!("/admin/v1/notifications/{revoked}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Some read: every 7th rider the broadcast, every 5th the pinned one (if it has it), rider 2
    // the direct one.
    for i in 0..RIDERS {
        let token = h.app_token("rider", &rider(i));
        let mut read = Vec::new();
        if i % 7 == 0 {
            read.push(&all);
        }
        if i % 5 == 0 && CITIES[i % 3] != "gz" {
            read.push(&pinned);
        }
        if i == 2 || i == 4 {
            read.push(&include);
        }
        for id in read {
            let r = h.app_post(&token, &format!("/app/v1/inbox/{id}/read")).await;
            assert!(r.status.is_success(), "{:?}", r.body);
        }
    }
    // Every 11th rider archives the broadcast, and every 22nd puts it back (SQL deletes its row).
    for i in (0..RIDERS).step_by(11) {
        let token = h.app_token("rider", &rider(i));
        let r = h.app_post(&token, &format!("/app/v1/inbox/{all}/archive")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        if i % 22 == 0 {
            let r = h.call(reqwest::Method::DELETE, &format!("/app/v1/inbox/{all}/archive"), Some(&token), None).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        }
    }
    let archived = (0..RIDERS).filter(|i| i % 11 == 0 && i % 22 != 0).count();
    let ids = [all.clone(), pinned.clone(), include.clone(), revoked.clone()];
    let before = inboxes(&h).await;
    assert!(!before[11].0.iter().any(|(id, _)| *id == all), "rider 11 archived the broadcast: {:?}", before[11]);
    let counted = stats(&h, &ids).await;
    assert_eq!(before[0].0.len(), 2, "rider 0 (sh) holds the broadcast and the pinned one: {:?}", before[0]);
    assert_eq!(counted[&all].0["sent"], json!(RIDERS), "{:?}", counted[&all]);
    assert_eq!(counted[&all].0["read"], json!(RIDERS.div_ceil(7)));
    let split = (&counted[&include].0["variants"], &counted[&include].0["default"]);
    let (shown_vip, shown_default) =
        (json!([{"sent": 1, "read": 1, "read_rate": 1.0}]), json!({"sent": 2, "read": 1, "read_rate": 0.5}));
    assert_eq!(split, (&shown_vip, &shown_default), "{:?}", counted[&include]);
    running.stop().await.unwrap();

    servers.erase_inbox(dir.path());
    {
        let (running, h) = up(dir.path(), &servers).await;
        let lost = h.app_get(&h.app_token("rider", &rider(0)), "/app/v1/inbox?limit=50").await;
        assert_eq!(lost.body["items"], json!([]), "the inbox store is gone: {:?}", lost.body);
        running.stop().await.unwrap();
    }

    let said = rebuild(dir.path(), &servers).await;
    let riders_of = |city_count: usize| (0..RIDERS).filter(|i| *i % 3 < city_count).count();
    let entries = RIDERS + riders_of(2) + 3 + riders_of(3) / 3;
    assert!(said.contains(&format!("4 notifications sent of 4, {entries} entries added")), "{said}");
    assert!(said.contains(&format!(" {archived} archives")), "{said}");

    let (running, h) = up(dir.path(), &servers).await;
    assert_eq!(stats(&h, &ids).await, counted, "counters as SQL's ledger and receipts say");
    for (id, (_, cities)) in &counted {
        for c in cities.as_array().unwrap() {
            assert_eq!(c["matched"], c["sent"], "{id}: sent == matched in {c}");
        }
    }
    let after = inboxes(&h).await;
    for (i, (was, is)) in before.iter().zip(&after).enumerate() {
        assert_eq!(was, is, "rider {i}'s inbox and unread count");
    }
    // A new device learns the archived one with its flag, so it hides it too.
    let synced = h.sync(&h.app_token("rider", &rider(11)), None).await;
    let held = synced["items"].as_array().unwrap().iter().find(|m| m["id"] == all.as_str()).cloned();
    assert_eq!(held.map(|m| m["archived"].clone()), Some(json!(true)), "{synced}");
    running.stop().await.unwrap();

    let again = rebuild(dir.path(), &servers).await;
    assert!(again.contains("4 notifications sent of 4, 0 entries added"), "{again}");
    let (running, h) = up(dir.path(), &servers).await;
    assert_eq!(stats(&h, &ids).await, counted, "a second rebuild changes no counter");
    let sample: Vec<usize> = (0..RIDERS).step_by(97).collect();
    for i in sample {
        let token = h.app_token("rider", &rider(i));
        let page = h.app_get(&token, "/app/v1/inbox?limit=50").await;
        let listed: Vec<(String, bool)> = page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_str().unwrap().to_string(), m["read"] == true))
            .collect();
        assert_eq!(listed, before[i].0, "rider {i} after a second rebuild");
    }
    running.stop().await.unwrap();
}
