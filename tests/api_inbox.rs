//! End to end: the rider/merchant app API (`/app/v1/inbox…`) against a real Herald on embedded
//! parts. Each test spawns its own Herald, sends through the admin API and reads as the apps do.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use herald::auth::{Claims, TokenSigner};
use herald_domain::{ReceiverId, ReceiverKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ids_of(items: &Value) -> Vec<String> {
    items.as_array().expect("items array").iter().map(|i| i["id"].as_str().expect("id").to_string()).collect()
}

async fn list(h: &TestHerald, token: &str, query: &str) -> Reply {
    let r = h.app_get(token, &format!("/app/v1/inbox{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "GET /app/v1/inbox{query}: {:?}", r.body);
    r
}

/// The unread count as the base contract has it: `by_category` (tests/api_tabs.rs) checked to add
/// up to `unread` and `unseen` (tests/api_seen.rs) to be part of it, then both left out.
async fn unread(h: &TestHerald, token: &str) -> Value {
    let r = h.app_get(token, "/app/v1/inbox/unread-count").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut body = r.body;
    let tabs = body.as_object_mut().and_then(|o| o.remove("by_category")).expect("by_category");
    let sum: u64 = tabs.as_object().expect("by_category object").values().filter_map(Value::as_u64).sum();
    assert_eq!(Some(sum), body["unread"].as_u64(), "the categories add up to the total: {tabs}");
    let unseen = body.as_object_mut().and_then(|o| o.remove("unseen")).and_then(|u| u.as_u64()).expect("unseen");
    assert!(Some(unseen) <= body["unread"].as_u64(), "unseen is part of unread: {unseen}");
    body
}

async fn read(h: &TestHerald, token: &str, id: &str) -> Reply {
    h.app_post(token, &format!("/app/v1/inbox/{id}/read")).await
}

fn item<'a>(items: &'a Value, id: &str) -> Option<&'a Value> {
    items.as_array().expect("items array").iter().find(|i| i["id"] == id)
}

async fn stats(h: &TestHerald, id: &str) -> Value {
    h.notification_view(id).await["stats"].clone()
}

#[tokio::test]
async fn list_puts_pinned_unread_first_then_newest_and_shows_every_field() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let a = h.send_to_all("a plain", json!({})).await;
    let b = h.send_to_all("b pinned", json!({"pinned": true, "category": "activity"})).await;
    let c = h.send_to_all("c plain", json!({})).await;
    let d = h.send_to_all("d pinned", json!({"pinned": true})).await;
    let t = h.app_token("rider", "r1");

    let r = list(&h, &t, "").await;
    assert_eq!(ids_of(&r.body["items"]), vec![d.clone(), b.clone(), c.clone(), a.clone()]);
    assert_eq!(r.body["has_more"], json!(false));
    assert_eq!(r.body["next_cursor"], Value::Null);

    let item_b = item(&r.body["items"], &b).unwrap();
    assert_eq!(item_b["title"], "b pinned");
    assert_eq!(item_b["body"], "b pinned body");
    assert_eq!(item_b["category"], "activity");
    assert_eq!(item_b["pinned"], json!(true));
    assert_eq!(item_b["force_read"], json!(false));
    assert_eq!(item_b["read"], json!(false));
    assert_eq!(item_b["valid_until"], Value::Null);
    let sent_at = |id: &str| {
        let raw = item(&r.body["items"], id).unwrap()["sent_at"].as_str().expect("sent_at").to_string();
        DateTime::parse_from_rfc3339(&raw).expect("RFC 3339 sent_at").with_timezone(&Utc)
    };
    assert!(sent_at(&a) < sent_at(&b) && sent_at(&b) < sent_at(&c) && sent_at(&c) < sent_at(&d));
    let view = h.notification_view(&b).await;
    assert_eq!(
        DateTime::parse_from_rfc3339(view["sent_at"].as_str().unwrap()).unwrap().with_timezone(&Utc),
        sent_at(&b),
        "the inbox shows the notification's sent time"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_read_pinned_message_drops_out_of_the_pinned_group() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let old_pinned = h.send_to_all("old pinned", json!({"pinned": true})).await;
    let mid = h.send_to_all("mid", json!({})).await;
    let new_pinned = h.send_to_all("new pinned", json!({"pinned": true})).await;
    let newest = h.send_to_all("newest", json!({})).await;
    let t = h.app_token("rider", "r1");

    assert_eq!(h.inbox_ids(&t).await, vec![new_pinned.clone(), old_pinned.clone(), newest.clone(), mid.clone()]);

    assert_eq!(read(&h, &t, &new_pinned).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.inbox_ids(&t).await, vec![old_pinned.clone(), newest.clone(), new_pinned.clone(), mid.clone()]);
    let items = list(&h, &t, "").await.body["items"].clone();
    assert_eq!(item(&items, &new_pinned).unwrap()["read"], json!(true));
    assert_eq!(item(&items, &new_pinned).unwrap()["pinned"], json!(true), "still pinned, just not first");

    assert_eq!(read(&h, &t, &old_pinned).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.inbox_ids(&t).await, vec![newest, new_pinned, mid, old_pinned]);
    h.stop().await;
}

#[tokio::test]
async fn cursor_pages_seven_messages_by_three_without_gaps_or_repeats() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(h.send_to_all(&format!("m{i}"), json!({"pinned": i == 2})).await);
    }
    let t = h.app_token("rider", "r1");
    // pinned m2 first, then newest first
    let expected: Vec<String> = [2, 6, 5, 4, 3, 1, 0].iter().map(|&i| sent[i].clone()).collect();
    assert_eq!(h.inbox_ids(&t).await, expected);

    let mut seen = Vec::new();
    let mut query = "?limit=3".to_string();
    let mut pages = Vec::new();
    loop {
        let r = list(&h, &t, &query).await;
        let page = ids_of(&r.body["items"]);
        pages.push(page.len());
        seen.extend(page);
        if r.body["has_more"] == json!(true) {
            let next = r.body["next_cursor"].as_str().expect("next_cursor when has_more");
            query = format!("?limit=3&cursor={next}");
        } else {
            assert_eq!(r.body["next_cursor"], Value::Null);
            break;
        }
        assert!(pages.len() < 10, "paging never ends: {seen:?}");
    }
    assert_eq!(pages, vec![3, 3, 1]);
    assert_eq!(seen, expected);
    h.stop().await;
}

#[tokio::test]
async fn paging_stays_whole_when_a_message_arrives_between_pages() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(h.send_to_all(&format!("m{i}"), json!({})).await);
    }
    let t = h.app_token("rider", "r1");
    let first = list(&h, &t, "?limit=2").await;
    assert_eq!(ids_of(&first.body["items"]), vec![sent[4].clone(), sent[3].clone()]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();

    let newer = h.send_to_all("newer", json!({})).await;
    // the message the cursor points at is revoked: the next page still starts right after it
    let r = h.admin_post(&format!("/admin/v1/notifications/{}/revoke", sent[3]), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let rest = list(&h, &t, &format!("?limit=50&cursor={cursor}")).await;
    assert_eq!(ids_of(&rest.body["items"]), vec![sent[2].clone(), sent[1].clone(), sent[0].clone()]);
    assert_eq!(rest.body["has_more"], json!(false));
    assert_eq!(h.inbox_ids(&t).await.first(), Some(&newer));
    h.stop().await;
}

#[tokio::test]
async fn limit_defaults_to_twenty_and_accepts_one_to_fifty() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let mut sent = Vec::new();
    for i in 0..21 {
        sent.push(h.send_to_all(&format!("m{i}"), json!({})).await);
    }
    let t = h.app_token("rider", "r1");
    let r = list(&h, &t, "").await;
    let page = ids_of(&r.body["items"]);
    assert_eq!(page.len(), 20);
    assert_eq!(page.first(), sent.last());
    assert_eq!(r.body["has_more"], json!(true));
    let next = r.body["next_cursor"].as_str().unwrap();
    let rest = list(&h, &t, &format!("?cursor={next}")).await;
    assert_eq!(ids_of(&rest.body["items"]), vec![sent[0].clone()]);
    assert_eq!(rest.body["has_more"], json!(false));

    assert_eq!(ids_of(&list(&h, &t, "?limit=1").await.body["items"]), vec![sent[20].clone()]);
    assert_eq!(ids_of(&list(&h, &t, "?limit=50").await.body["items"]).len(), 21);
    h.stop().await;
}

#[tokio::test]
async fn bad_limit_cursor_or_since_is_422_naming_the_field() {
    let h = TestHerald::with_riders(&["r1"]).await;
    h.send_to_all("one", json!({})).await;
    let t = h.app_token("rider", "r1");
    for bad in ["0", "51", "-1", "abc", "2.5", "1000000000000000000000"] {
        let r = h.app_get(&t, &format!("/app/v1/inbox?limit={bad}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "limit={bad}: {:?}", r.body);
        assert_eq!(r.field(), Some("limit"), "limit={bad}: {:?}", r.body);
        assert!(r.code().is_some() && r.body["error"]["message"].is_string(), "{:?}", r.body);
    }
    for bad in [
        "garbage",
        "1.2.notanid",
        "x.5.0123456789abcdef0123456789abcdef",
        "0.notatime.0123456789abcdef0123456789abcdef",
    ] {
        let r = h.app_get(&t, &format!("/app/v1/inbox?cursor={bad}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "cursor={bad}: {:?}", r.body);
        assert_eq!(r.field(), Some("cursor"), "cursor={bad}: {:?}", r.body);
    }
    // Out-of-range parts once wrapped to negative versions and made clients loop on has_more.
    for bad in [
        "garbage",
        "1",
        "a.b",
        "-1.0",
        "18446744073709551615.0.1700000000000",
        "9223372036854775808.0.0",
        "0.9223372036854775808.0",
        "0.0.-5",
        "0.0.99999999999999999",
    ] {
        let r = h.app_get(&t, &format!("/app/v1/inbox/sync?since={bad}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "since={bad}: {:?}", r.body);
        assert_eq!(r.field(), Some("since"), "since={bad}: {:?}", r.body);
    }
    h.stop().await;
}

#[tokio::test]
async fn messages_outside_their_validity_window_are_hidden_everywhere() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let now = Utc::now();
    let hour = chrono::Duration::hours(1);
    // Herald refuses an already-expired notification, so this one expires just after it is sent.
    let expires = now + chrono::Duration::milliseconds(1200);
    let expired = h.send_to_all("expired", json!({"valid_until": expires.to_rfc3339(), "force_read": true})).await;
    let future = h.send_to_all("future", json!({"valid_from": (now + hour).to_rfc3339(), "force_read": true})).await;
    let permanent = h.send_to_all("permanent", json!({})).await;
    let until = (now + hour).to_rfc3339();
    let bounded = h
        .send_to_all(
            "bounded",
            json!({"valid_from": (now - hour).to_rfc3339(), "valid_until": until, "force_read": true}),
        )
        .await;
    let t = h.app_token("rider", "r1");
    tokio::time::sleep((expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(50)).await;

    let items = list(&h, &t, "").await.body["items"].clone();
    assert_eq!(ids_of(&items), vec![bounded.clone(), permanent.clone()]);
    let shown_until = item(&items, &bounded).unwrap()["valid_until"].as_str().expect("valid_until").to_string();
    assert_eq!(DateTime::parse_from_rfc3339(&shown_until).unwrap().timestamp_millis(), (now + hour).timestamp_millis());
    assert_eq!(item(&items, &permanent).unwrap()["valid_until"], Value::Null);
    assert_eq!(unread(&h, &t).await, json!({"unread": 2, "force_read_pending": 1}));
    let forced = h.app_get(&t, "/app/v1/inbox/force-read").await;
    assert_eq!(ids_of(&forced.body["items"]), vec![bounded.clone()]);
    let all_synced = h.sync(&t, None).await;
    let synced: HashSet<String> = ids_of(&all_synced["items"]).into_iter().collect();
    assert!(!synced.contains(&expired) && !synced.contains(&future), "sync shows hidden messages: {all_synced}");
    assert!(synced.contains(&permanent) && synced.contains(&bounded), "{all_synced}");
    for hidden in [&expired, &future] {
        assert_eq!(read(&h, &t, hidden).await.status, StatusCode::NOT_FOUND, "reading a hidden message");
    }
    let marked = h.app_post(&t, "/app/v1/inbox/read-all").await;
    assert_eq!(marked.body, json!({"marked": 2}), "read-all marks only visible messages");
    for hidden in [&expired, &future] {
        assert_eq!(stats(&h, hidden).await["read"], json!(0));
    }
    h.stop().await;
}

/// Runs a scenario whose first steps must finish before an edge in time, with the edge 2.5 s
/// ahead, then (on a fresh Herald) twice as far each time the machine was too slow for them:
/// `scenario` answers `None` when the edge passed before its steps were done, so what a test
/// asserts is always what it set out to check, however loaded the machine.
async fn with_time_to_spare<T>(mut scenario: impl AsyncFnMut(chrono::Duration) -> Option<T>) -> T {
    let mut window = chrono::Duration::milliseconds(2500);
    for _ in 0..4 {
        if let Some(done) = scenario(window).await {
            return done;
        }
        eprintln!("the steps before the edge took longer than {window}: again, with twice the time");
        window = window * 2;
    }
    panic!("the steps before the edge took longer than {window} even")
}

/// Sleeps until just past `edge`.
async fn until_past(edge: DateTime<Utc>) {
    tokio::time::sleep((edge - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_message_appears_when_its_window_opens_and_disappears_when_it_closes() {
    let (h, t, edge, closing, opening) = with_time_to_spare(async |window| {
        let h = TestHerald::with_riders(&["r1"]).await;
        let edge = Utc::now() + window;
        let closing = h.send_to_all("closing", json!({"valid_until": edge.to_rfc3339()})).await;
        let opening = h.send_to_all("opening", json!({"valid_from": edge.to_rfc3339()})).await;
        let t = h.app_token("rider", "r1");
        let before = (h.inbox_ids(&t).await, unread(&h, &t).await["unread"].clone());
        if Utc::now() >= edge {
            h.stop().await;
            return None;
        }
        assert_eq!(before, (vec![closing.clone()], json!(1)), "before the edge");
        Some((h, t, edge, closing, opening))
    })
    .await;

    until_past(edge).await;
    assert_eq!(h.inbox_ids(&t).await, vec![opening.clone()]);
    assert_eq!(unread(&h, &t).await["unread"], json!(1));
    assert_eq!(read(&h, &t, &closing).await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test]
async fn read_is_idempotent_and_moves_the_read_count_once_per_receiver() {
    let h = TestHerald::with_riders(&["r1", "r2", "r3", "r4"]).await;
    let id = h.send_to_all("hello", json!({})).await;
    let other = h.send_to_all("other", json!({})).await;
    assert_eq!(
        stats(&h, &id).await,
        json!({"matched": 4, "sent": 4, "read": 0, "read_rate": 0.0, "opted_out": 0, "variants": [], "default": null})
    );
    let t1 = h.app_token("rider", "r1");
    let t2 = h.app_token("rider", "r2");

    for _ in 0..3 {
        let r = read(&h, &t1, &id).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        assert_eq!(r.body, Value::Null, "204 carries no body");
    }
    let s = stats(&h, &id).await;
    assert_eq!(s["read"], json!(1));
    assert_eq!(s["read_rate"].as_f64(), Some(0.25));
    let items = list(&h, &t1, "").await.body["items"].clone();
    assert_eq!(item(&items, &id).unwrap()["read"], json!(true));
    assert_eq!(item(&items, &other).unwrap()["read"], json!(false));
    assert_eq!(unread(&h, &t1).await["unread"], json!(1));
    assert_eq!(unread(&h, &t2).await["unread"], json!(2), "r1's read does not touch r2's inbox");

    // concurrent retries from one app still count once
    let (a, b, c) = tokio::join!(read(&h, &t2, &id), read(&h, &t2, &id), read(&h, &t2, &id));
    for r in [a, b, c] {
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    let s = stats(&h, &id).await;
    assert_eq!(s["read"], json!(2));
    assert_eq!(s["sent"], json!(4));
    assert_eq!(s["read_rate"].as_f64(), Some(0.5));
    assert_eq!(stats(&h, &other).await["read"], json!(0));
    h.stop().await;
}

#[tokio::test]
async fn reading_a_message_not_in_my_inbox_is_404() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let (only_r1, _) =
        h.send_and_wait(&TestHerald::notification("for r1", json!({"include": ["r1"]}), json!({}))).await;
    let t2 = h.app_token("rider", "r2");
    let r = read(&h, &t2, &only_r1).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert_eq!(r.code(), Some("not_found"));
    assert_eq!(stats(&h, &only_r1).await["read"], json!(0));
    for unknown in ["0123456789abcdef0123456789abcdef", "not-an-id", "0123456789ABCDEF0123456789ABCDEF"] {
        assert_eq!(read(&h, &t2, unknown).await.status, StatusCode::NOT_FOUND, "{unknown}");
    }
    // the admin token is not a receiver
    assert_eq!(read(&h, &h.admin, &only_r1).await.status, StatusCode::FORBIDDEN);
    assert_eq!(read(&h, &h.app_token("rider", "r1"), &only_r1).await.status, StatusCode::NO_CONTENT);
    assert_eq!(stats(&h, &only_r1).await["read"], json!(1));
    h.stop().await;
}

#[tokio::test]
async fn read_all_marks_each_unread_message_once() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let a = h.send_to_all("a", json!({})).await;
    let b = h.send_to_all("b", json!({"pinned": true})).await;
    let c = h.send_to_all("c", json!({"force_read": true})).await;
    let t = h.app_token("rider", "r1");
    assert_eq!(read(&h, &t, &a).await.status, StatusCode::NO_CONTENT);

    let r = h.app_post(&t, "/app/v1/inbox/read-all").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"marked": 2}));
    let again = h.app_post(&t, "/app/v1/inbox/read-all").await;
    assert_eq!(again.body, json!({"marked": 0}));

    assert_eq!(unread(&h, &t).await, json!({"unread": 0, "force_read_pending": 0}));
    let items = list(&h, &t, "").await.body["items"].clone();
    assert!(items.as_array().unwrap().iter().all(|i| i["read"] == json!(true)), "{items}");
    assert_eq!(ids_of(&items), vec![c.clone(), b.clone(), a.clone()], "read pinned is no longer first");
    for id in [&a, &b, &c] {
        let s = stats(&h, id).await;
        assert_eq!((s["read"].clone(), s["sent"].clone()), (json!(1), json!(2)), "{id}: {s}");
    }
    let t2 = h.app_token("rider", "r2");
    assert_eq!(unread(&h, &t2).await, json!({"unread": 3, "force_read_pending": 1}));
    // two devices of one rider at once: each message is marked by exactly one of them
    let (x, y) = tokio::join!(h.app_post(&t2, "/app/v1/inbox/read-all"), h.app_post(&t2, "/app/v1/inbox/read-all"));
    assert_eq!((x.status, y.status), (StatusCode::OK, StatusCode::OK), "{:?} {:?}", x.body, y.body);
    assert_eq!(x.body["marked"].as_u64().unwrap() + y.body["marked"].as_u64().unwrap(), 3, "{x:?} {y:?}");
    assert_eq!(stats(&h, &a).await["read"], json!(2));
    assert_eq!(stats(&h, &a).await["read_rate"].as_f64(), Some(1.0));
    h.stop().await;
}

#[tokio::test]
async fn force_read_lists_only_unread_force_read_messages() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let f1 = h.send_to_all("f1", json!({"force_read": true})).await;
    let plain = h.send_to_all("plain", json!({})).await;
    let f2 = h.send_to_all("f2", json!({"force_read": true, "pinned": true})).await;
    let t = h.app_token("rider", "r1");

    assert_eq!(unread(&h, &t).await, json!({"unread": 3, "force_read_pending": 2}));
    let r = h.app_get(&t, "/app/v1/inbox/force-read").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let got: HashSet<String> = ids_of(&r.body["items"]).into_iter().collect();
    assert_eq!(got, HashSet::from([f1.clone(), f2.clone()]));
    assert!(r.body["items"].as_array().unwrap().iter().all(|i| i["force_read"] == json!(true) && i["read"] == false));

    assert_eq!(read(&h, &t, &f1).await.status, StatusCode::NO_CONTENT);
    assert_eq!(ids_of(&h.app_get(&t, "/app/v1/inbox/force-read").await.body["items"]), vec![f2.clone()]);
    assert_eq!(unread(&h, &t).await, json!({"unread": 2, "force_read_pending": 1}));

    assert_eq!(read(&h, &t, &plain).await.status, StatusCode::NO_CONTENT);
    assert_eq!(unread(&h, &t).await, json!({"unread": 1, "force_read_pending": 1}));
    assert_eq!(read(&h, &t, &f2).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.app_get(&t, "/app/v1/inbox/force-read").await.body, json!({"items": []}));
    assert_eq!(unread(&h, &t).await, json!({"unread": 0, "force_read_pending": 0}));
    h.stop().await;
}

#[tokio::test]
async fn sync_gives_everything_then_only_what_arrived_or_changed() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let a = h.send_to_all("a", json!({})).await;
    let b = h.send_to_all("b", json!({})).await;
    let t = h.app_token("rider", "r1");

    let first = h.sync(&t, None).await;
    let got: HashSet<String> = ids_of(&first["items"]).into_iter().collect();
    assert_eq!(got, HashSet::from([a.clone(), b.clone()]));
    assert_eq!(first["has_more"], json!(false));
    let item_a = item(&first["items"], &a).unwrap();
    assert_eq!(item_a["title"], "a");
    assert_eq!(item_a["read"], json!(false));
    let cursor = first["cursor"].as_str().unwrap().to_string();

    let unchanged = h.sync(&t, Some(&cursor)).await;
    assert_eq!(unchanged["items"], json!([]), "{unchanged}");
    let cursor = unchanged["cursor"].as_str().unwrap().to_string();

    // r2 reading changes nothing in r1's sync
    assert_eq!(read(&h, &h.app_token("rider", "r2"), &b).await.status, StatusCode::NO_CONTENT);
    let c = h.send_to_all("c", json!({})).await;
    assert_eq!(read(&h, &t, &a).await.status, StatusCode::NO_CONTENT);

    let delta = h.sync(&t, Some(&cursor)).await;
    let got: HashSet<String> = ids_of(&delta["items"]).into_iter().collect();
    assert_eq!(got, HashSet::from([a.clone(), c.clone()]), "{delta}");
    assert_eq!(item(&delta["items"], &a).unwrap()["read"], json!(true));
    assert_eq!(item(&delta["items"], &c).unwrap()["read"], json!(false));
    assert_eq!(item(&delta["items"], &c).unwrap()["title"], "c");

    let after = h.sync(&t, Some(delta["cursor"].as_str().unwrap())).await;
    assert_eq!(after["items"], json!([]), "{after}");
    // an old cursor still replays from where it was
    let replay = h.sync(&t, Some(&cursor)).await;
    assert_eq!(ids_of(&replay["items"]).len(), 2, "{replay}");
    h.stop().await;
}

#[tokio::test]
async fn a_revoke_made_by_another_api_process_shows_at_once_in_list_and_sync() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let (second, other) = h.second_api().await;
    let gone = h.send_to_all("gone", json!({})).await;
    let t = h.app_token("rider", "r1");
    // The other process caches the notification and hands out a cursor past it.
    assert_eq!(other.inbox_ids(&t).await, vec![gone.clone()]);
    let cursor = other.sync(&t, None).await["cursor"].as_str().unwrap().to_string();

    let r = h.admin_post(&format!("/admin/v1/notifications/{gone}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    assert_eq!(other.inbox_ids(&t).await, Vec::<String>::new(), "a cached copy hid the revoke");
    assert_eq!(unread(&other, &t).await["unread"], json!(0));
    let delta = other.sync(&t, Some(&cursor)).await;
    assert_eq!(delta["items"], json!([{"id": gone, "revoked": true}]), "{delta}");
    // Once told, a later sync never brings it back.
    let after = other.sync(&t, Some(delta["cursor"].as_str().unwrap())).await;
    assert_eq!(after["items"], json!([]), "{after}");
    second.stop().await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn revoke_removes_the_message_and_sync_reports_it_once() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let (gone, _) = h.send_and_wait(&TestHerald::notification("gone", json!({"include": ["r1"]}), json!({}))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let kept = h.send_to_all("kept", json!({"force_read": true})).await;
    let t1 = h.app_token("rider", "r1");
    let t2 = h.app_token("rider", "r2");
    assert_eq!(read(&h, &t1, &gone).await.status, StatusCode::NO_CONTENT);
    let c1 = h.sync(&t1, None).await["cursor"].as_str().unwrap().to_string();
    let c2 = h.sync(&t2, None).await["cursor"].as_str().unwrap().to_string();

    let r = h.admin_post(&format!("/admin/v1/notifications/{gone}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "revoked");

    assert_eq!(h.inbox_ids(&t1).await, vec![kept.clone()]);
    assert_eq!(unread(&h, &t1).await, json!({"unread": 1, "force_read_pending": 1}));
    assert_eq!(read(&h, &t1, &gone).await.status, StatusCode::NOT_FOUND);

    let delta = h.sync(&t1, Some(&c1)).await;
    assert_eq!(delta["items"], json!([{"id": gone, "revoked": true}]), "{delta}");
    let after = h.sync(&t1, Some(delta["cursor"].as_str().unwrap())).await;
    assert_eq!(after["items"], json!([]), "revocation reported again: {after}");
    let fresh = h.sync(&t1, None).await;
    assert!(
        !ids_of(&fresh["items"]).contains(&gone) || item(&fresh["items"], &gone).unwrap()["revoked"] == json!(true),
        "a full sync must not show a revoked message as live: {fresh}"
    );
    let other = h.sync(&t2, Some(&c2)).await;
    assert_eq!(other["items"], json!([]), "r2 never had it: {other}");

    let s = stats(&h, &gone).await;
    assert_eq!((s["sent"].clone(), s["read"].clone()), (json!(1), json!(1)), "stats kept after revoke: {s}");
    h.stop().await;
}

#[tokio::test]
async fn each_rider_sees_only_their_own_inbox() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let (to_r1, _) = h.send_and_wait(&TestHerald::notification("to r1", json!({"include": ["r1"]}), json!({}))).await;
    let (to_r2, _) = h
        .send_and_wait(&TestHerald::notification("to r2", json!({"include": ["r2"]}), json!({"force_read": true})))
        .await;
    let both = h.send_to_all("both", json!({})).await;
    let t1 = h.app_token("rider", "r1");
    let t2 = h.app_token("rider", "r2");

    assert_eq!(h.inbox_ids(&t1).await, vec![both.clone(), to_r1.clone()]);
    assert_eq!(h.inbox_ids(&t2).await, vec![both.clone(), to_r2.clone()]);
    assert_eq!(unread(&h, &t1).await, json!({"unread": 2, "force_read_pending": 0}));
    assert_eq!(unread(&h, &t2).await, json!({"unread": 2, "force_read_pending": 1}));
    assert_eq!(h.app_get(&t1, "/app/v1/inbox/force-read").await.body, json!({"items": []}));
    let synced: HashSet<String> = ids_of(&h.sync(&t1, None).await["items"]).into_iter().collect();
    assert_eq!(synced, HashSet::from([both.clone(), to_r1.clone()]));

    assert_eq!(h.app_post(&t1, "/app/v1/inbox/read-all").await.body, json!({"marked": 2}));
    assert_eq!(unread(&h, &t2).await["unread"], json!(2), "r1's read-all leaves r2 alone");
    assert_eq!(stats(&h, &to_r2).await["read"], json!(0));

    // a rider nobody sent anything to has an empty inbox
    let stranger = h.app_token("rider", "r9");
    let r = list(&h, &stranger, "").await;
    assert_eq!(r.body, json!({"items": [], "next_cursor": null, "has_more": false}));
    assert_eq!(unread(&h, &stranger).await, json!({"unread": 0, "force_read_pending": 0}));
    h.stop().await;
}

#[tokio::test]
async fn a_merchant_and_a_rider_with_the_same_id_have_separate_inboxes() {
    let h = TestHerald::spawn().await;
    h.receivers(&[("rider", "r1", "shanghai", &[]), ("merchant", "r1", "shanghai", &[])]).await;
    let (for_merchants, view) =
        h.send_and_wait(&TestHerald::notification("merchants", everyone(), json!({"receiver_kind": "merchant"}))).await;
    assert_eq!(view["stats"]["sent"], json!(1), "only the merchant gets it: {view}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (for_riders, _) = h.send_and_wait(&TestHerald::notification("riders", everyone(), json!({}))).await;
    let rider = h.app_token("rider", "r1");
    let merchant = h.app_token("merchant", "r1");

    assert_eq!(h.inbox_ids(&rider).await, vec![for_riders.clone()]);
    assert_eq!(h.inbox_ids(&merchant).await, vec![for_merchants.clone()]);
    assert_eq!(read(&h, &rider, &for_merchants).await.status, StatusCode::NOT_FOUND);
    assert_eq!(read(&h, &merchant, &for_riders).await.status, StatusCode::NOT_FOUND);
    assert_eq!(read(&h, &merchant, &for_merchants).await.status, StatusCode::NO_CONTENT);
    assert_eq!(unread(&h, &rider).await["unread"], json!(1));
    assert_eq!(unread(&h, &merchant).await["unread"], json!(0));
    assert_eq!(stats(&h, &for_merchants).await["read"], json!(1));
    assert_eq!(stats(&h, &for_riders).await["read"], json!(0));
    let synced = h.sync(&rider, None).await;
    assert_eq!(ids_of(&synced["items"]), vec![for_riders.clone()], "{synced}");
    h.stop().await;
}

#[tokio::test]
async fn app_endpoints_refuse_missing_foreign_and_tampered_tokens() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let (id, _) = h.send_and_wait(&TestHerald::notification("secret", json!({"include": ["r1"]}), json!({}))).await;
    let r1 = h.app_token("rider", "r1");
    let r2 = h.app_token("rider", "r2");
    let (r1_signed, r1_sig) = r1.rsplit_once('.').unwrap();
    let (r2_signed, r2_sig) = r2.rsplit_once('.').unwrap();
    // r2's claims with r1's signature, and the other way round: a forged identity
    let swapped = format!("{r2_signed}.{r1_sig}");
    let swapped_back = format!("{r1_signed}.{r2_sig}");
    let flipped = {
        let mut chars: Vec<char> = r1.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    let wrong_secret = TokenSigner::new("not-the-secret").sign(&Claims::App {
        kind: ReceiverKind::parse("kind", "rider").unwrap(),
        id: ReceiverId::parse("id", "r1").unwrap(),
    });
    let tampered = [swapped, swapped_back, flipped, wrong_secret, "garbage".to_string(), String::new()];

    let endpoints: Vec<(Method, String)> = vec![
        (Method::GET, "/app/v1/inbox".into()),
        (Method::GET, "/app/v1/inbox/unread-count".into()),
        (Method::POST, "/app/v1/inbox/seen".into()),
        (Method::GET, "/app/v1/inbox/force-read".into()),
        (Method::GET, "/app/v1/inbox/sync".into()),
        (Method::POST, "/app/v1/inbox/read-all".into()),
        (Method::POST, format!("/app/v1/inbox/{id}/read")),
    ];
    for (method, path) in &endpoints {
        let r = h.call(method.clone(), path, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} without a token: {:?}", r.body);
        assert_eq!(r.code(), Some("unauthorized"));
        for admin in [&h.admin, &h.viewer] {
            let r = h.call(method.clone(), path, Some(admin), None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path} with an admin token: {:?}", r.body);
            assert_eq!(r.code(), Some("forbidden"));
        }
        for bad in &tampered {
            let r = h.call(method.clone(), path, Some(bad), None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} with {bad:?}: {:?}", r.body);
        }
    }
    // an expired token, however well signed, is 401 token_expired
    let rider = Claims::App { kind: ReceiverKind::Rider, id: ReceiverId::parse("id", "r1").unwrap() };
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    let expired = TokenSigner::new(SECRET).sign_for(&rider, Duration::from_secs(60), an_hour_ago);
    for (method, path) in &endpoints {
        let r = h.call(method.clone(), path, Some(&expired), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} expired: {:?}", r.body);
        assert_eq!(r.code(), Some("token_expired"), "{:?}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("expired at"), "{:?}", r.body);
    }
    // a Basic header is not a bearer token
    let r = h
        .client
        .get(format!("{}/app/v1/inbox", h.base))
        .header("authorization", format!("Basic {r1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // nothing above read anything
    assert_eq!(stats(&h, &id).await["read"], json!(0));
    assert_eq!(unread(&h, &r1).await["unread"], json!(1));
    // an app token may not use the admin API
    let r = h.call(Method::GET, &format!("/admin/v1/notifications/{id}"), Some(&r1), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    h.stop().await;
}

#[tokio::test]
async fn drafts_cancelled_and_future_notifications_never_reach_the_inbox() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let draft = h.create(&TestHerald::notification("draft", everyone(), json!({"draft": true}))).await;
    let scheduled = h.create(&TestHerald::notification("later", everyone(), json!({"send_at": later}))).await;
    let cancelled = h.create(&TestHerald::notification("cancelled", everyone(), json!({"send_at": later}))).await;
    let r = h.admin_post(&format!("/admin/v1/notifications/{cancelled}/cancel"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let now = h.send_to_all("now", json!({})).await;
    let t = h.app_token("rider", "r1");

    assert_eq!(h.inbox_ids(&t).await, vec![now.clone()]);
    assert_eq!(unread(&h, &t).await["unread"], json!(1));
    assert_eq!(ids_of(&h.sync(&t, None).await["items"]), vec![now]);
    for id in [&draft, &scheduled, &cancelled] {
        assert_eq!(read(&h, &t, id).await.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(stats(&h, id).await["sent"], json!(0), "{id}");
    }
    h.stop().await;
}

#[tokio::test]
async fn sync_delivers_a_message_once_its_window_opens() {
    let (h, t, opens, plain, later, cursor) = with_time_to_spare(async |window| {
        let h = TestHerald::with_riders(&["r1"]).await;
        let opens = Utc::now() + window;
        let plain = h.send_to_all("plain", json!({})).await;
        let later = h.send_to_all("later", json!({"valid_from": opens.to_rfc3339()})).await;
        let t = h.app_token("rider", "r1");
        // a device syncs before the window opens: it gets only what it may show now
        let first = h.sync(&t, None).await;
        if Utc::now() >= opens {
            h.stop().await;
            return None;
        }
        assert_eq!(ids_of(&first["items"]), vec![plain.clone()], "{first}");
        let cursor = first["cursor"].as_str().unwrap().to_string();
        Some((h, t, opens, plain, later, cursor))
    })
    .await;

    until_past(opens).await;
    assert_eq!(h.inbox_ids(&t).await, vec![later.clone(), plain], "the list shows it now");
    let delta = h.sync(&t, Some(&cursor)).await;
    assert_eq!(ids_of(&delta["items"]), vec![later], "sync must bring what became visible since: {delta}");
    h.stop().await;
}

/// The cap as an app sees it: an inbox past it keeps the newest messages, the pinned and the
/// unread force-read ones, shows no gap when paged, counts only what it still holds, and a
/// message's `sent` stays what was delivered.
#[tokio::test]
async fn a_full_inbox_keeps_the_newest_and_every_pinned_and_force_read_message() {
    let h = TestHerald::spawn_with(|s| s.inbox_cap = herald_domain::InboxCap::new("cap", 10).unwrap()).await;
    h.receivers(&[("rider", "r1", "shanghai", &[][..])]).await;
    let rider = h.app_token("rider", "r1");
    let pinned = h.send_to_all("pinned", json!({"pinned": true})).await;
    let must_read = h.send_to_all("must read", json!({"force_read": true})).await;
    let mut plain = Vec::new();
    for i in 0..14 {
        plain.push(h.send_to_all(&format!("plain {i}"), json!({})).await);
    }
    // 16 delivered to a cap of 10: each time past it the oldest two plain ones went (down to 9);
    // the last one took the inbox back to 10: the pinned, the force-read and the 8 newest plain.
    let shown: Vec<String> = {
        let first = list(&h, &rider, "?limit=4").await;
        let cursor = first.body["next_cursor"].as_str().expect("more follow").to_string();
        let rest = list(&h, &rider, &format!("?limit=50&cursor={cursor}")).await;
        assert_eq!(rest.body["has_more"], json!(false));
        ids_of(&first.body["items"]).into_iter().chain(ids_of(&rest.body["items"])).collect()
    };
    let mut want = vec![pinned.clone()];
    want.extend(plain[6..].iter().rev().cloned());
    want.push(must_read.clone());
    assert_eq!(shown, want, "pinned unread first, then by time: the force-read one is older than any plain kept");
    let pending = h.app_get(&rider, "/app/v1/inbox/force-read").await;
    assert_eq!(ids_of(&pending.body["items"]), vec![must_read.clone()], "kept although older than what went");
    let count = unread(&h, &rider).await;
    assert_eq!(count, json!({"unread": 10, "force_read_pending": 1}));
    assert_eq!(stats(&h, &plain[0]).await["sent"], json!(1), "dropping does not un-send");
    // A message dropped from the inbox is not there to read.
    assert_eq!(read(&h, &rider, &plain[0]).await.status, StatusCode::NOT_FOUND);
}

/// The inbox store filters revoked messages by itself, so every read first applies the revocation
/// log to it: a revoke committed in SQL whose process died before withholding is hidden at once,
/// not when the consumer's reconciler comes round.
#[tokio::test]
async fn a_revoke_never_withheld_in_the_inbox_store_is_hidden_at_the_next_read() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let gone = h.send_to_all("gone", json!({"force_read": true})).await;
    let kept = h.send_to_all("kept", json!({})).await;
    let t = h.app_token("rider", "r1");
    assert_eq!(h.inbox_ids(&t).await, vec![kept.clone(), gone.clone()]);
    let id = herald_domain::NotificationId::parse("id", &gone).unwrap();
    let revoked = h.ports().notifications.transition(
        &id,
        herald_domain::Status::Revoked,
        &herald_domain::HistoryEvent::Revoked,
        Utc::now(),
    );
    assert!(matches!(revoked.await.unwrap(), herald_domain::ports::TransitionOutcome::Moved(_)));

    assert_eq!(h.inbox_ids(&t).await, vec![kept]);
    assert_eq!(unread(&h, &t).await, json!({"unread": 1, "force_read_pending": 0}));
    assert_eq!(read(&h, &t, &gone).await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}
