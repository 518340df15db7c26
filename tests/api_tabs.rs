//! End to end: categories as tabs (issue #13, item 1). `GET /app/v1/inbox?category=…` lists one
//! category in the inbox's order, `GET /app/v1/inbox/unread-count` answers an exact count per
//! category beside the total, and `POST /app/v1/inbox/read-all?category=…` reads one tab. Each
//! test spawns its own Herald (embedded, or on the servers with `HERALD_TEST_HTTP_ON_SERVERS=1`).

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Sends a message of `category` to every rider and waits until sent (`TestHerald::send_to_all`).
async fn send(h: &TestHerald, title: &str, category: &str, mut extra: Value) -> String {
    extra["category"] = json!(category);
    h.send_to_all(title, extra).await
}

fn ids_of(body: &Value) -> Vec<String> {
    body["items"].as_array().expect("items array").iter().map(|i| i["id"].as_str().expect("id").to_string()).collect()
}

/// The whole list (of one tab when `category` is given), `limit` at a time by `next_cursor`.
async fn listed(h: &TestHerald, token: &str, category: Option<&str>, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/app/v1/inbox?limit={limit}");
        if let Some(c) = category {
            path.push_str(&format!("&category={c}"));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = h.app_get(token, &path).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {:?}", r.body);
        if let Some(c) = category {
            assert!(r.body["items"].as_array().unwrap().iter().all(|i| i["category"] == c), "{:?}", r.body);
        }
        ids.extend(ids_of(&r.body));
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

/// (unread, [system, activity, announcement]) from the unread count, checking the tabs add up.
async fn tabs(h: &TestHerald, token: &str) -> (u64, [u64; 3]) {
    let r = h.app_get(token, "/app/v1/inbox/unread-count").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let by = &r.body["by_category"];
    let n = |c: &str| by[c].as_u64().unwrap_or_else(|| panic!("no {c} count: {:?}", r.body));
    let counts = [n("system"), n("activity"), n("announcement")];
    let unread = r.body["unread"].as_u64().expect("unread");
    assert_eq!(counts.iter().sum::<u64>(), unread, "the tabs add up to the total: {:?}", r.body);
    (unread, counts)
}

async fn read_all(h: &TestHerald, token: &str, query: &str) -> Reply {
    h.app_post(token, &format!("/app/v1/inbox/read-all{query}")).await
}

#[tokio::test]
async fn each_category_is_a_tab_listed_in_inbox_order_with_its_own_cursor() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let sys = send(&h, "sys", "system", json!({})).await;
    let act_pinned = send(&h, "act pinned", "activity", json!({"pinned": true})).await;
    let ann = send(&h, "ann", "announcement", json!({})).await;
    let act = send(&h, "act", "activity", json!({})).await;
    let sys_new = send(&h, "sys new", "system", json!({})).await;
    let t = h.app_token("rider", "r1");

    for limit in [1, 2, 20] {
        assert_eq!(
            listed(&h, &t, Some("activity"), limit).await,
            vec![act_pinned.clone(), act.clone()],
            "pinned first"
        );
        assert_eq!(listed(&h, &t, Some("system"), limit).await, vec![sys_new.clone(), sys.clone()]);
        assert_eq!(listed(&h, &t, Some("announcement"), limit).await, vec![ann.clone()]);
        assert_eq!(
            listed(&h, &t, None, limit).await,
            vec![act_pinned.clone(), sys_new.clone(), act.clone(), ann.clone(), sys.clone()],
            "without a category, every tab merged in the inbox's order"
        );
    }
    // Read, the pinned one takes its place by time in its tab as in the whole list.
    assert_eq!(h.app_post(&t, &format!("/app/v1/inbox/{act_pinned}/read")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(listed(&h, &t, Some("activity"), 1).await, vec![act.clone(), act_pinned.clone()]);
    h.stop().await;
}

#[tokio::test]
async fn unread_count_has_an_exact_count_per_category_never_capped() {
    let h = TestHerald::with_riders(&["r1"]).await;
    // More than a badge's usual 99, created at once and then waited for.
    let mut ids = Vec::new();
    for i in 0..103 {
        let category = ["activity", "activity", "announcement"][i % 3];
        let mut body = TestHerald::notification(&format!("m{i}"), everyone(), json!({}));
        body["category"] = json!(category);
        ids.push(h.create(&body).await);
    }
    for id in &ids {
        h.wait_status(id, "sent").await;
    }
    let t = h.app_token("rider", "r1");
    assert_eq!(tabs(&h, &t).await, (103, [0, 69, 34]));
    assert_eq!(listed(&h, &t, Some("announcement"), 50).await.len(), 34);
    h.stop().await;
}

#[tokio::test]
async fn read_all_of_one_category_leaves_the_other_tabs_unread() {
    let h = TestHerald::with_riders(&["r1"]).await;
    send(&h, "sys", "system", json!({})).await;
    send(&h, "act 1", "activity", json!({})).await;
    send(&h, "act 2", "activity", json!({"force_read": true})).await;
    send(&h, "ann", "announcement", json!({})).await;
    let t = h.app_token("rider", "r1");
    assert_eq!(tabs(&h, &t).await, (4, [1, 2, 1]));

    let r = read_all(&h, &t, "?category=activity").await;
    assert_eq!((r.status, r.body["marked"].clone()), (StatusCode::OK, json!(2)), "{:?}", r.body);
    assert_eq!(tabs(&h, &t).await, (2, [1, 0, 1]));
    assert_eq!(read_all(&h, &t, "?category=activity").await.body["marked"], json!(0), "idempotent");
    let r = read_all(&h, &t, "").await;
    assert_eq!(r.body["marked"], json!(2), "without a category, every tab: {:?}", r.body);
    assert_eq!(tabs(&h, &t).await, (0, [0, 0, 0]));
    h.stop().await;
}

#[tokio::test]
async fn tab_counts_stay_exact_through_revoke_expiry_late_joiners_and_reads() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let expiring_at = Utc::now() + chrono::Duration::seconds(6);
    let expiring = send(&h, "soon gone", "activity", json!({"valid_until": expiring_at.to_rfc3339()})).await;
    let revoked = send(&h, "revoked", "announcement", json!({})).await;
    let kept = send(&h, "kept", "announcement", json!({})).await;
    let sys = send(&h, "sys", "system", json!({})).await;
    let t = h.app_token("rider", "r1");
    let before = tabs(&h, &t).await;

    let r = h.admin_post(&format!("/admin/v1/notifications/{revoked}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let after_revoke = tabs(&h, &t).await;

    // A rider created now gets every still-valid broadcast, each counted in its tab.
    h.receivers(&[("rider", "late", "shanghai", &[])]).await;
    let late = h.app_token("rider", "late");
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed(&h, &late, None, 20).await.len() < 3 {
        assert!(Instant::now() < deadline, "the late joiner never got its messages");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late_tabs = tabs(&h, &late).await;
    assert_eq!(h.app_post(&late, &format!("/app/v1/inbox/{kept}/read")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.app_post(&late, &format!("/app/v1/inbox/{kept}/read")).await.status, StatusCode::NO_CONTENT);
    let late_after_read = tabs(&h, &late).await;

    if Utc::now() < expiring_at {
        assert_eq!(before, (4, [1, 1, 2]), "before anything happened");
        assert_eq!(after_revoke, (3, [1, 1, 1]), "the revoked one counts nowhere");
        assert_eq!(late_tabs, (3, [1, 1, 1]), "a late joiner, counted like the others");
        assert_eq!(late_after_read, (2, [1, 1, 0]), "a read counts once, however often it is sent");
    } else {
        eprintln!("the machine was too slow to see the window open; checking only what follows it");
    }
    tokio::time::sleep((expiring_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200)).await;
    assert_eq!(tabs(&h, &t).await, (2, [1, 0, 1]), "the expired one left its tab's count by time alone");
    assert_eq!(listed(&h, &t, Some("activity"), 20).await, Vec::<String>::new());
    assert_eq!(listed(&h, &t, Some("announcement"), 20).await, vec![kept.clone()]);
    assert_eq!(listed(&h, &t, Some("system"), 20).await, vec![sys.clone()]);
    assert!(!listed(&h, &t, None, 20).await.contains(&expiring));
    assert_eq!(tabs(&h, &late).await, (1, [1, 0, 0]));
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_category_is_422_naming_the_field() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let t = h.app_token("rider", "r1");
    for r in [h.app_get(&t, "/app/v1/inbox?category=promo").await, read_all(&h, &t, "?category=promo").await] {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
        assert_eq!(r.field(), Some("category"), "{:?}", r.body);
    }
    h.stop().await;
}
