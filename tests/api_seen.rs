//! End to end: seen against read (issue #13, item 6). `POST /app/v1/inbox/seen` says the app opened
//! the inbox; `unread-count`'s `unseen` counts the unread messages that arrived since (all of them
//! before the first call): the app icon's badge, beside `unread` for the list. Each test spawns its
//! own Herald (embedded, or on the servers with `HERALD_TEST_HTTP_ON_SERVERS=1`).

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// (unread, unseen) of the receiver's unread count.
async fn badges(h: &TestHerald, token: &str) -> (u64, u64) {
    let r = h.app_get(token, "/app/v1/inbox/unread-count").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let n = |field: &str| r.body[field].as_u64().unwrap_or_else(|| panic!("no {field}: {:?}", r.body));
    (n("unread"), n("unseen"))
}

async fn seen(h: &TestHerald, token: &str) {
    let r = h.app_post(token, "/app/v1/inbox/seen").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(r.body, Value::Null, "204 carries no body");
}

#[tokio::test]
async fn unseen_counts_the_unread_messages_that_arrived_since_the_app_opened_the_inbox() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let a = h.send_to_all("a", json!({})).await;
    h.send_to_all("b", json!({"category": "activity", "force_read": true})).await;
    let (t1, t2) = (h.app_token("rider", "r1"), h.app_token("rider", "r2"));
    assert_eq!(badges(&h, &t1).await, (2, 2), "never opened: every unread message is unseen");

    for _ in 0..2 {
        seen(&h, &t1).await;
        assert_eq!(badges(&h, &t1).await, (2, 0), "seen is not read; seeing twice is seeing once");
    }
    assert_eq!(badges(&h, &t2).await, (2, 2), "r2 has not opened its inbox");
    let listed = h.app_get(&t1, "/app/v1/inbox").await;
    assert!(listed.body["items"].as_array().unwrap().iter().all(|i| i["read"] == false), "{:?}", listed.body);
    assert_eq!(h.notification_view(&a).await["stats"]["read"], json!(0), "no read counted");

    let c = h.send_to_all("c", json!({})).await;
    assert_eq!(badges(&h, &t1).await, (3, 1), "c arrived after");
    let r = h.app_post(&t1, &format!("/app/v1/inbox/{c}/read")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(badges(&h, &t1).await, (2, 0), "a read message is not unseen");
    h.send_to_all("d", json!({})).await;
    assert_eq!(badges(&h, &t1).await, (3, 1));
    seen(&h, &t1).await;
    assert_eq!(badges(&h, &t1).await, (3, 0));
    h.stop().await;
}

#[tokio::test]
async fn opening_the_inbox_on_one_device_hints_the_others_to_redraw_the_badge() {
    let h = TestHerald::spawn_with(|s| s.streams.max_age = Duration::from_secs(60)).await;
    h.receivers(&[("rider", "r1", "shanghai", &[])]).await;
    h.send_to_all("a", json!({})).await;
    let t = h.app_token("rider", "r1");
    let mut phone = h.events("/app/v1/inbox/events", &t, None).await.expect("stream opens");
    assert_eq!(phone.next_within(Duration::from_secs(10)).await.expect("ready").event, "ready");
    // The delivery's own hint may reach the stream after it opened (over pub/sub on the servers).
    while phone.next_within(Duration::from_millis(600)).await.is_some() {}
    seen(&h, &t).await;
    assert_eq!(phone.next_within(Duration::from_secs(10)).await.expect("hint").event, "hint");
    h.stop().await;
}
