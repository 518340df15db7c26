//! End to end: archive (issue #13, items 5 and 9). `POST /app/v1/inbox/{id}/archive` hides a message
//! from its receiver's list and counts, `DELETE` the same path puts it back, sync reports both so the
//! receiver's other devices follow, an unread force-read message refuses to be archived (409
//! `force_read_unread`), and `POST /app/v1/inbox/archive-all` clears the inbox in one call (only the
//! read messages with `read_only=true`, one tab with `category`). Each test spawns its own Herald
//! (embedded, or on the servers with `HERALD_TEST_HTTP_ON_SERVERS=1`).

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn archive(h: &TestHerald, token: &str, id: &str) -> Reply {
    h.app_post(token, &format!("/app/v1/inbox/{id}/archive")).await
}

async fn unarchive(h: &TestHerald, token: &str, id: &str) -> Reply {
    h.call(Method::DELETE, &format!("/app/v1/inbox/{id}/archive"), Some(token), None).await
}

async fn archive_all(h: &TestHerald, token: &str, query: &str) -> Reply {
    h.app_post(token, &format!("/app/v1/inbox/archive-all{query}")).await
}

async fn read(h: &TestHerald, token: &str, id: &str) -> Reply {
    h.app_post(token, &format!("/app/v1/inbox/{id}/read")).await
}

fn ids_of(items: &Value) -> Vec<String> {
    items.as_array().expect("items array").iter().map(|i| i["id"].as_str().expect("id").to_string()).collect()
}

fn item<'a>(items: &'a Value, id: &str) -> Option<&'a Value> {
    items.as_array().expect("items array").iter().find(|i| i["id"] == id)
}

/// The whole list (of one tab with `?category=…`), in order.
async fn listed(h: &TestHerald, token: &str, query: &str) -> Vec<String> {
    let r = h.app_get(token, &format!("/app/v1/inbox?limit=50{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["items"].as_array().unwrap().iter().all(|i| i["archived"] == false), "{:?}", r.body);
    ids_of(&r.body["items"])
}

/// (unread, force_read_pending, [system, activity, announcement]).
async fn counts(h: &TestHerald, token: &str) -> (u64, u64, [u64; 3]) {
    let r = h.app_get(token, "/app/v1/inbox/unread-count").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {:?}", r.body));
    let by = &r.body["by_category"];
    (
        n(&r.body["unread"]),
        n(&r.body["force_read_pending"]),
        [n(&by["system"]), n(&by["activity"]), n(&by["announcement"])],
    )
}

async fn stats(h: &TestHerald, id: &str) -> Value {
    h.notification_view(id).await["stats"].clone()
}

#[tokio::test]
async fn archiving_hides_a_message_from_the_list_and_counts_of_that_receiver_only() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let a = h.send_to_all("a", json!({"category": "activity"})).await;
    let b = h.send_to_all("b", json!({})).await;
    let (t1, t2) = (h.app_token("rider", "r1"), h.app_token("rider", "r2"));

    for _ in 0..2 {
        let r = archive(&h, &t1, &a).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        assert_eq!(r.body, Value::Null, "204 carries no body");
    }
    assert_eq!(listed(&h, &t1, "").await, vec![b.clone()]);
    assert_eq!(listed(&h, &t1, "&category=activity").await, Vec::<String>::new(), "gone from its tab too");
    assert_eq!(counts(&h, &t1).await, (1, 0, [1, 0, 0]));
    let force_read = h.app_get(&t1, "/app/v1/inbox/force-read").await;
    assert_eq!(force_read.body["items"], json!([]), "{:?}", force_read.body);
    assert_eq!(listed(&h, &t2, "").await, vec![b.clone(), a.clone()], "r2's inbox is untouched");
    assert_eq!(counts(&h, &t2).await, (2, 0, [1, 1, 0]));
    let r = h.app_post(&t1, "/app/v1/inbox/read-all").await;
    assert_eq!(r.body, json!({"marked": 1}), "read-all reads what is listed");
    assert_eq!(
        stats(&h, &a).await,
        json!({"matched": 2, "sent": 2, "read": 0, "read_rate": 0.0, "opted_out": 0, "variants": [], "default": null}),
        "stats stay"
    );
    h.stop().await;
}

#[tokio::test]
async fn unarchiving_puts_a_message_back_in_its_place_with_its_read_flag() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let pinned = h.send_to_all("pinned", json!({"pinned": true})).await;
    let plain = h.send_to_all("plain", json!({})).await;
    let t = h.app_token("rider", "r1");
    assert_eq!(listed(&h, &t, "").await, vec![pinned.clone(), plain.clone()]);

    assert_eq!(archive(&h, &t, &pinned).await.status, StatusCode::NO_CONTENT);
    assert_eq!(archive(&h, &t, &plain).await.status, StatusCode::NO_CONTENT);
    assert_eq!(listed(&h, &t, "").await, Vec::<String>::new());
    for _ in 0..2 {
        let r = unarchive(&h, &t, &plain).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    assert_eq!(listed(&h, &t, "").await, vec![plain.clone()]);
    // Read while archived: counted once, and back read, in its place by time (no longer on top).
    assert_eq!(read(&h, &t, &pinned).await.status, StatusCode::NO_CONTENT);
    assert_eq!(stats(&h, &pinned).await["read"], json!(1));
    assert_eq!(unarchive(&h, &t, &pinned).await.status, StatusCode::NO_CONTENT);
    assert_eq!(listed(&h, &t, "").await, vec![plain.clone(), pinned.clone()]);
    let r = h.app_get(&t, "/app/v1/inbox?limit=50").await;
    assert_eq!(item(&r.body["items"], &pinned).unwrap()["read"], json!(true));
    assert_eq!(counts(&h, &t).await, (1, 0, [1, 0, 0]));
    assert_eq!(stats(&h, &pinned).await["read"], json!(1), "un-archiving moves no counter");
    h.stop().await;
}

#[tokio::test]
async fn sync_reports_an_archive_and_an_unarchive_so_other_devices_follow() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let a = h.send_to_all("a", json!({})).await;
    let b = h.send_to_all("b", json!({})).await;
    let t = h.app_token("rider", "r1");
    let phone = h.sync(&t, None).await;
    assert!(phone["items"].as_array().unwrap().iter().all(|i| i["archived"] == false), "{phone}");
    let cursor = phone["cursor"].as_str().unwrap().to_string();

    assert_eq!(archive(&h, &t, &a).await.status, StatusCode::NO_CONTENT);
    let delta = h.sync(&t, Some(&cursor)).await;
    assert_eq!(ids_of(&delta["items"]), vec![a.clone()], "{delta}");
    assert_eq!(item(&delta["items"], &a).unwrap()["archived"], json!(true));
    let cursor = delta["cursor"].as_str().unwrap().to_string();
    assert_eq!(h.sync(&t, Some(&cursor)).await["items"], json!([]), "archiving again is no news");
    assert_eq!(archive(&h, &t, &a).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.sync(&t, Some(&cursor)).await["items"], json!([]), "archiving twice changes nothing");

    // A new device learns the archived one with its flag, so it hides it too.
    let tablet = h.sync(&t, None).await;
    assert_eq!(item(&tablet["items"], &a).expect("held").get("archived"), Some(&json!(true)), "{tablet}");
    assert_eq!(item(&tablet["items"], &b).expect("held")["archived"], json!(false));

    assert_eq!(unarchive(&h, &t, &a).await.status, StatusCode::NO_CONTENT);
    let delta = h.sync(&t, Some(&cursor)).await;
    assert_eq!(ids_of(&delta["items"]), vec![a.clone()], "{delta}");
    assert_eq!(item(&delta["items"], &a).unwrap()["archived"], json!(false));
    h.stop().await;
}

#[tokio::test]
async fn an_unread_force_read_message_cannot_be_archived_409_naming_the_rule() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let must = h.send_to_all("must read", json!({"force_read": true})).await;
    let t = h.app_token("rider", "r1");
    let r = archive(&h, &t, &must).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.code(), Some("force_read_unread"), "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("read")), "{:?}", r.body);
    assert_eq!(listed(&h, &t, "").await, vec![must.clone()], "still listed");
    assert_eq!(counts(&h, &t).await, (1, 1, [1, 0, 0]), "still pending");

    assert_eq!(read(&h, &t, &must).await.status, StatusCode::NO_CONTENT);
    assert_eq!(archive(&h, &t, &must).await.status, StatusCode::NO_CONTENT, "read, it may go");
    assert_eq!(listed(&h, &t, "").await, Vec::<String>::new());
    h.stop().await;
}

#[tokio::test]
async fn archiving_a_message_not_in_my_inbox_is_404() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let (only_r1, _) =
        h.send_and_wait(&TestHerald::notification("for r1", json!({"include": ["r1"]}), json!({}))).await;
    let t2 = h.app_token("rider", "r2");
    for id in [only_r1.as_str(), "0123456789abcdef0123456789abcdef", "not-an-id"] {
        for r in [archive(&h, &t2, id).await, unarchive(&h, &t2, id).await] {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {:?}", r.body);
            assert_eq!(r.code(), Some("not_found"), "{:?}", r.body);
        }
    }
    assert_eq!(archive(&h, &h.admin, &only_r1).await.status, StatusCode::FORBIDDEN, "an admin holds no inbox");
    let t1 = h.app_token("rider", "r1");
    assert_eq!(listed(&h, &t1, "").await, vec![only_r1.clone()], "r2's attempts left r1's inbox alone");
    // A revoked message is gone: archiving it is 404 as reading it is.
    let r = h.admin_post(&format!("/admin/v1/notifications/{only_r1}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(archive(&h, &t1, &only_r1).await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test]
async fn archive_all_clears_the_inbox_but_skips_unread_force_read_messages() {
    let h = TestHerald::with_riders(&["r1", "r2"]).await;
    let a = h.send_to_all("a", json!({})).await;
    let pinned = h.send_to_all("pinned", json!({"pinned": true, "category": "activity"})).await;
    let must = h.send_to_all("must", json!({"force_read": true})).await;
    let read_must = h.send_to_all("read must", json!({"force_read": true, "category": "announcement"})).await;
    let t = h.app_token("rider", "r1");
    assert_eq!(read(&h, &t, &read_must).await.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&h, &t, &a).await.status, StatusCode::NO_CONTENT);

    let r = archive_all(&h, &t, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"archived": 3}));
    assert_eq!(listed(&h, &t, "").await, vec![must.clone()], "only the unread force-read one stays");
    assert_eq!(counts(&h, &t).await, (1, 1, [1, 0, 0]));
    assert_eq!(archive_all(&h, &t, "").await.body, json!({"archived": 0}), "idempotent");
    let t2 = h.app_token("rider", "r2");
    assert_eq!(listed(&h, &t2, "").await.len(), 4, "r2 keeps all of its own");

    // Each one is archived as the one-by-one call archives it: un-archiving brings it back.
    assert_eq!(unarchive(&h, &t, &pinned).await.status, StatusCode::NO_CONTENT);
    assert_eq!(listed(&h, &t, "").await, vec![pinned.clone(), must.clone()]);
    // Two devices at once: each message is archived by exactly one of them (r2 read neither
    // force-read one, so both stay).
    let (x, y) = tokio::join!(archive_all(&h, &t2, ""), archive_all(&h, &t2, ""));
    assert_eq!((x.status, y.status), (StatusCode::OK, StatusCode::OK), "{:?} {:?}", x.body, y.body);
    assert_eq!(x.body["archived"].as_u64().unwrap() + y.body["archived"].as_u64().unwrap(), 2, "{x:?} {y:?}");
    assert_eq!(listed(&h, &t2, "").await, vec![read_must.clone(), must.clone()]);
    h.stop().await;
}

#[tokio::test]
async fn archive_all_takes_only_read_messages_or_one_category_when_asked() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let sys_read = h.send_to_all("sys read", json!({})).await;
    let sys = h.send_to_all("sys", json!({})).await;
    let act_read = h.send_to_all("act read", json!({"category": "activity"})).await;
    let act = h.send_to_all("act", json!({"category": "activity"})).await;
    let ann = h.send_to_all("ann", json!({"category": "announcement"})).await;
    let t = h.app_token("rider", "r1");
    for id in [&sys_read, &act_read] {
        assert_eq!(read(&h, &t, id).await.status, StatusCode::NO_CONTENT);
    }

    let r = archive_all(&h, &t, "?read_only=true&category=activity").await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({"archived": 1})), "{:?}", r.body);
    assert_eq!(listed(&h, &t, "").await, vec![ann.clone(), act.clone(), sys.clone(), sys_read.clone()]);
    let r = archive_all(&h, &t, "?read_only=true").await;
    assert_eq!(r.body, json!({"archived": 1}), "the other read one: {:?}", r.body);
    assert_eq!(listed(&h, &t, "").await, vec![ann.clone(), act.clone(), sys.clone()]);
    assert_eq!(counts(&h, &t).await, (3, 0, [1, 1, 1]), "read_only archived nothing unread");
    let r = archive_all(&h, &t, "?category=system&read_only=false").await;
    assert_eq!(r.body, json!({"archived": 1}), "{:?}", r.body);
    assert_eq!(listed(&h, &t, "").await, vec![ann.clone(), act.clone()]);
    assert_eq!(counts(&h, &t).await, (2, 0, [0, 1, 1]));
    h.stop().await;
}

#[tokio::test]
async fn archive_all_with_a_bad_parameter_is_4xx_naming_it() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let a = h.send_to_all("a", json!({})).await;
    let t = h.app_token("rider", "r1");
    for (query, status, field) in [
        ("?read_only=yes", StatusCode::UNPROCESSABLE_ENTITY, "read_only"),
        ("?read_only=", StatusCode::UNPROCESSABLE_ENTITY, "read_only"),
        ("?category=promo", StatusCode::UNPROCESSABLE_ENTITY, "category"),
        ("?read_only=true&read_only=false", StatusCode::BAD_REQUEST, "read_only"),
    ] {
        let r = archive_all(&h, &t, query).await;
        assert_eq!(r.status, status, "{query}: {:?}", r.body);
        assert_eq!(r.field(), Some(field), "{query}: {:?}", r.body);
    }
    assert_eq!(listed(&h, &t, "").await, vec![a], "a rejected request archives nothing");
    h.stop().await;
}

#[tokio::test]
async fn an_archive_hints_the_receivers_other_devices() {
    let h = TestHerald::spawn_with(|s| s.streams.max_age = Duration::from_secs(60)).await;
    h.receivers(&[("rider", "r1", "shanghai", &[])]).await;
    let a = h.send_to_all("a", json!({})).await;
    let t = h.app_token("rider", "r1");
    let soon = Duration::from_secs(10);
    let mut phone = h.events("/app/v1/inbox/events", &t, None).await.expect("stream opens");
    assert_eq!(phone.next_within(soon).await.expect("ready").event, "ready");
    // On the servers the delivery's own hint travels over pub/sub and may reach this stream after it
    // opened: let it pass first, so each hint below is the one of the step before it.
    while phone.next_within(Duration::from_millis(600)).await.is_some() {}
    assert_eq!(archive(&h, &t, &a).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.next_within(soon).await.expect("hint").event, "hint", "the list and count changed");
    assert_eq!(archive(&h, &t, &a).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.next_within(Duration::from_millis(600)).await, None, "archiving again changes nothing");
    assert_eq!(unarchive(&h, &t, &a).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.next_within(soon).await.expect("hint").event, "hint", "back in the list");
    assert_eq!(archive_all(&h, &t, "").await.body, json!({"archived": 1}));
    assert_eq!(phone.next_within(soon).await.expect("hint").event, "hint");
    h.stop().await;
}
