//! End-to-end tests of the admin HTTP API (`/admin/v1/...`) and the operations endpoints, against a
//! real Herald (every role, embedded parts) per test. What is asserted is the contract in
//! `shared/contract/http-api.md`: who receives what, the numbers the console shows, the status flow,
//! idempotency, the error shape for every kind of bad input, and who may call what.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt as _;
use herald::auth::{AdminRole, Claims, TokenSigner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Any request with an optional bearer token, optional extra headers and an optional raw body
/// (sent as `application/json`).
async fn request(
    th: &TestHerald,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    let mut req = th.client.request(method, format!("{}{path}", th.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

/// Creates a notification with an `Idempotency-Key`, the body given as raw text.
async fn create_with_key(th: &TestHerald, key: &str, body: String) -> Reply {
    request(th, Method::POST, "/admin/v1/notifications", Some(&th.admin), &[("idempotency-key", key)], Some(body)).await
}

/// Asserts the contract's error shape: status, `error.code`, `error.field`, a message.
#[track_caller]
fn assert_error(r: &Reply, status: StatusCode, code: &str, field: Option<&str>, what: &str) {
    assert_eq!(r.status, status, "{what}: status; body {}", r.body);
    assert_eq!(r.code(), Some(code), "{what}: error.code; body {}", r.body);
    assert_eq!(r.field(), field, "{what}: error.field; body {}", r.body);
    assert!(
        r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: error.message missing; body {}",
        r.body
    );
}

/// The statuses of a notification's history, in order.
async fn history(th: &TestHerald, id: &str) -> Vec<Value> {
    let r = th.admin_get(&format!("/admin/v1/notifications/{id}/history")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

async fn history_statuses(th: &TestHerald, id: &str) -> Vec<String> {
    history(th, id).await.iter().map(|h| h["status"].as_str().expect("status").to_string()).collect()
}

/// The view's `cities` as city → (matched, sent, done).
fn cities_of(view: &Value) -> BTreeMap<String, (u64, u64, bool)> {
    view["cities"]
        .as_array()
        .expect("cities")
        .iter()
        .map(|c| {
            (
                c["city"].as_str().expect("city").to_string(),
                (c["matched"].as_u64().expect("matched"), c["sent"].as_u64().expect("sent"), c["done"] == true),
            )
        })
        .collect()
}

/// The preview's `cities` as city → matched.
fn preview_cities(preview: &Value) -> BTreeMap<String, u64> {
    preview["cities"]
        .as_array()
        .expect("cities")
        .iter()
        .map(|c| (c["city"].as_str().unwrap().to_string(), c["matched"].as_u64().unwrap()))
        .collect()
}

async fn inbox_of(th: &TestHerald, kind: &str, id: &str) -> Vec<String> {
    th.inbox_ids(&th.app_token(kind, id)).await
}

/// Asserts who got the notification and who did not.
async fn assert_reached(th: &TestHerald, id: &str, yes: &[(&str, &str)], no: &[(&str, &str)]) {
    for (kind, rid) in yes {
        let inbox = inbox_of(th, kind, rid).await;
        assert_eq!(inbox.iter().filter(|i| *i == id).count(), 1, "{kind} {rid} should hold {id} once: {inbox:?}");
    }
    for (kind, rid) in no {
        let inbox = inbox_of(th, kind, rid).await;
        assert!(!inbox.iter().any(|i| i == id), "{kind} {rid} must not hold {id}: {inbox:?}");
    }
}

/// Polls `check` for up to `within`; returns whether it became true.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn in_future(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

fn instant(raw: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(raw.as_str().expect("a time string")).expect("RFC 3339")
}

const NIL_ID: &str = "00000000000000000000000000000000";

// ---------------------------------------------------------------------------------------------
// Delivery: who receives, and the numbers the console shows
// ---------------------------------------------------------------------------------------------

/// 1,234 riders over three cities (shanghai has 618: two pages), `all` minus two excluded riders, an
/// excluded id that is only a merchant and an unknown id. Every other rider holds it exactly once,
/// merchants hold nothing, and the stats and per-city progress are exact.
#[tokio::test]
async fn all_riders_send_reaches_every_rider_once_with_exact_stats() {
    let th = TestHerald::spawn().await;
    // i % 4: 0 and 1 → shanghai (309 + 309), 2 → beijing (308), 3 → shenzhen (308).
    th.riders("r", 1234, &["shanghai", "shanghai", "beijing", "shenzhen"]).await;
    th.receivers(&[
        ("merchant", "m1", "shanghai", &[]),
        ("merchant", "r000005", "shanghai", &[]), // a merchant sharing a rider's id
        ("merchant", "mx", "beijing", &[]),
    ])
    .await;
    // r000000 is in shanghai, r000002 in beijing; mx is a merchant; ghost is nobody.
    let audience = json!({"all": true, "exclude": ["r000000", "r000002", "mx", "ghost"]});
    let preview =
        th.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": audience})).await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(preview.body["matched"], 1232, "{}", preview.body);

    let (id, view) = th.send_and_wait(&TestHerald::notification("to every rider", audience, json!({}))).await;
    assert_eq!(view["stats"]["matched"], 1232, "{view}");
    assert_eq!(view["stats"]["sent"], 1232, "{view}");
    assert_eq!(view["stats"]["read"], 0, "{view}");
    assert_eq!(view["stats"]["read_rate"].as_f64(), Some(0.0), "{view}");
    let expected: BTreeMap<String, (u64, u64, bool)> = [
        ("beijing".to_string(), (307, 307, true)),
        ("shanghai".to_string(), (617, 617, true)),
        ("shenzhen".to_string(), (308, 308, true)),
    ]
    .into();
    assert_eq!(cities_of(&view), expected, "{view}");

    // Every rider's inbox, concurrently: exactly once for everyone but the two excluded.
    let counts: Vec<(usize, usize)> = futures::stream::iter(0..1234usize)
        .map(|i| {
            let th = &th;
            let id = &id;
            async move {
                let inbox = inbox_of(th, "rider", &format!("r{i:06}")).await;
                (i, inbox.iter().filter(|x| *x == id).count())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for (i, n) in counts {
        let want = if i == 0 || i == 2 { 0 } else { 1 };
        assert_eq!(n, want, "rider r{i:06} holds the notification {n} times");
    }
    for m in ["m1", "r000005", "mx"] {
        assert!(inbox_of(&th, "merchant", m).await.is_empty(), "merchant {m} got a rider message");
    }
    th.stop().await;
}

/// Cities + groups + exclude: a receiver matches when in one of the cities and in at least one of
/// the groups, minus the excluded; a city named with nobody in it shows with 0 and done.
#[tokio::test]
async fn cities_groups_and_exclude_select_exactly_the_right_receivers() {
    let th = TestHerald::spawn().await;
    th.receivers(&[
        ("rider", "a1", "shanghai", &["vip"]),          // yes
        ("rider", "a2", "shanghai", &["new", "other"]), // yes (second group)
        ("rider", "a3", "shanghai", &[]),               // no group
        ("rider", "a4", "beijing", &["other", "vip"]),  // yes
        ("rider", "a5", "beijing", &["vip"]),           // excluded
        ("rider", "a6", "shenzhen", &["vip"]),          // other city
        ("rider", "a7", "shanghai", &["other"]),        // other group
        ("rider", "a8", "shanghai", &["svip", "vip2"]), // groups that only contain "vip"
        ("rider", "a9", "上海", &["vip"]),              // yes: a city in Chinese
        ("rider", "a10", "上海", &["vipnew"]),          // no: not a listed group
        ("merchant", "a1", "shanghai", &["vip"]),       // right city and group, wrong kind
        ("merchant", "m2", "beijing", &["new"]),
    ])
    .await;
    let audience =
        json!({"cities": ["shanghai", "beijing", "guangzhou", "上海"], "groups": ["vip", "new"], "exclude": ["a5"]});

    let preview =
        th.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": audience})).await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(preview.body["matched"], 4, "{}", preview.body);
    let want_preview: BTreeMap<String, u64> =
        [("beijing".into(), 1), ("guangzhou".into(), 0), ("shanghai".into(), 2), ("上海".into(), 1)].into();
    assert_eq!(preview_cities(&preview.body), want_preview, "{}", preview.body);
    assert_eq!(preview.body["unknown"], json!([]), "{}", preview.body);

    let (id, view) = th.send_and_wait(&TestHerald::notification("vip and new", audience, json!({}))).await;
    assert_eq!(view["stats"]["matched"], preview.body["matched"], "preview and send disagree: {view}");
    assert_eq!(view["stats"]["sent"], 4, "{view}");
    let want: BTreeMap<String, (u64, u64, bool)> = [
        ("beijing".to_string(), (1, 1, true)),
        ("guangzhou".to_string(), (0, 0, true)),
        ("shanghai".to_string(), (2, 2, true)),
        ("上海".to_string(), (1, 1, true)),
    ]
    .into();
    assert_eq!(cities_of(&view), want, "{view}");
    assert_reached(
        &th,
        &id,
        &[("rider", "a1"), ("rider", "a2"), ("rider", "a4"), ("rider", "a9")],
        &[
            ("rider", "a3"),
            ("rider", "a5"),
            ("rider", "a6"),
            ("rider", "a7"),
            ("rider", "a8"),
            ("rider", "a10"),
            ("merchant", "a1"),
            ("merchant", "m2"),
        ],
    )
    .await;
    th.stop().await;
}

/// An include list minus an exclude list reaches exactly those receivers, counted in their own
/// cities; the same ids of the other kind get nothing.
#[tokio::test]
async fn include_list_minus_exclude_is_point_to_point() {
    let th = TestHerald::spawn().await;
    th.receivers(&[
        ("rider", "p1", "shanghai", &[]),
        ("rider", "p2", "beijing", &["vip"]),
        ("rider", "p3", "beijing", &[]),
        ("rider", "p4", "shenzhen", &[]),
        ("merchant", "p1", "shanghai", &[]),
    ])
    .await;
    // A repeated id counts (and arrives) once.
    let audience = json!({"include": ["p1", "p2", "p3", "p1"], "exclude": ["p3"]});
    let preview =
        th.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": audience})).await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(preview.body["matched"], 2, "{}", preview.body);

    let (id, view) = th.send_and_wait(&TestHerald::notification("direct", audience, json!({}))).await;
    assert_eq!(view["stats"]["matched"], 2, "{view}");
    assert_eq!(view["stats"]["sent"], 2, "{view}");
    let want: BTreeMap<String, (u64, u64, bool)> =
        [("beijing".to_string(), (1, 1, true)), ("shanghai".to_string(), (1, 1, true))].into();
    assert_eq!(cities_of(&view), want, "{view}");
    assert_reached(
        &th,
        &id,
        &[("rider", "p1"), ("rider", "p2")],
        &[("rider", "p3"), ("rider", "p4"), ("merchant", "p1")],
    )
    .await;
    th.stop().await;
}

/// A merchant notification to everyone reaches merchants only, never a rider with the same id.
#[tokio::test]
async fn merchant_notification_never_reaches_riders() {
    let th = TestHerald::spawn().await;
    th.receivers(&[
        ("merchant", "s1", "shanghai", &[]),
        ("merchant", "s2", "beijing", &["vip"]),
        ("rider", "s1", "shanghai", &[]),
        ("rider", "s9", "beijing", &[]),
    ])
    .await;
    let body = TestHerald::notification("for shops", json!({"all": true}), json!({"receiver_kind": "merchant"}));
    let (id, view) = th.send_and_wait(&body).await;
    assert_eq!((view["stats"]["matched"].as_u64(), view["stats"]["sent"].as_u64()), (Some(2), Some(2)), "{view}");
    assert_eq!(view["receiver_kind"], "merchant", "{view}");
    assert_reached(&th, &id, &[("merchant", "s1"), ("merchant", "s2")], &[("rider", "s1"), ("rider", "s9")]).await;
    th.stop().await;
}

/// Include ids that are not receivers of the kind are refused (422, `audience.include`) and
/// nothing is created; the preview lists them as unknown.
#[tokio::test]
async fn unknown_include_ids_are_refused_and_nothing_is_created() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "k1", "shanghai", &[]), ("merchant", "shop7", "shanghai", &[])]).await;

    let preview = th
        .admin_post(
            "/admin/v1/audience/preview",
            &json!({"receiver_kind": "rider", "audience": {"include": ["k1", "ghost", "shop7"]}}),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(preview.body["matched"], 1, "{}", preview.body);
    let unknown: BTreeSet<&str> =
        preview.body["unknown"].as_array().expect("unknown").iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(unknown, BTreeSet::from(["ghost", "shop7"]), "{}", preview.body);

    for include in [json!(["k1", "ghost"]), json!(["shop7"])] {
        let r = th
            .admin_post(
                "/admin/v1/notifications",
                &TestHerald::notification("x", json!({"include": include}), json!({})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "include {include}: {}", r.body);
        assert_eq!(r.field(), Some("audience.include"), "include {include}: {}", r.body);
    }
    // Nothing was created: after a valid send to k1, k1 holds exactly that one.
    let (id, _) = th.send_and_wait(&TestHerald::notification("ok", json!({"include": ["k1"]}), json!({}))).await;
    assert_eq!(inbox_of(&th, "rider", "k1").await, vec![id]);
    th.stop().await;
}

/// The batch is an upsert: a receiver moved to another city counts only there, in the preview and in
/// the send; a second upsert of the same receiver does not duplicate it.
#[tokio::test]
async fn receivers_batch_upserts_and_a_moved_receiver_counts_only_in_its_new_city() {
    let th = TestHerald::spawn().await;
    th.receivers(&[
        ("rider", "u1", "shanghai", &["vip"]),
        ("rider", "u2", "shanghai", &[]),
        ("rider", "u3", "beijing", &[]),
    ])
    .await;
    // u1 moves to beijing and loses vip; u2 is upserted unchanged; u3 is named twice in one batch:
    // the last entry wins.
    th.receivers(&[("rider", "u1", "beijing", &[]), ("rider", "u2", "shanghai", &[])]).await;
    th.receivers(&[("rider", "u3", "shanghai", &[]), ("rider", "u3", "beijing", &[])]).await;

    let preview = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}}))
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(preview.body["matched"], 3, "{}", preview.body);
    let want: BTreeMap<String, u64> = [("beijing".into(), 2), ("shanghai".into(), 1)].into();
    assert_eq!(preview_cities(&preview.body), want, "{}", preview.body);

    let vip = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"groups": ["vip"]}}))
        .await;
    assert_eq!(vip.body["matched"], 0, "u1 lost vip: {}", vip.body);

    let (_, view) = th
        .send_and_wait(&TestHerald::notification("moved", json!({"cities": ["shanghai", "beijing"]}), json!({})))
        .await;
    let cities: BTreeMap<String, (u64, u64, bool)> =
        [("beijing".to_string(), (2, 2, true)), ("shanghai".to_string(), (1, 1, true))].into();
    assert_eq!(cities_of(&view), cities, "{view}");
    assert_eq!(view["stats"]["sent"], 3, "{view}");
    th.stop().await;
}

/// 10,000 receivers in one call are fine; 10,001 are refused with `batch_too_large` and none stored.
#[tokio::test]
async fn receivers_batch_is_limited_to_ten_thousand() {
    let th = TestHerald::spawn().await;
    let batch = |n: usize, prefix: &str| -> Value {
        json!(
            (0..n).map(|i| json!({"kind": "rider", "id": format!("{prefix}{i}"), "city": "wuhan"})).collect::<Vec<_>>()
        )
    };
    let r = th.admin_post("/admin/v1/receivers/batch", &batch(10_001, "big")).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "batch_too_large", None, "10,001 receivers");

    let r = th.admin_post("/admin/v1/receivers/batch", &batch(10_000, "ok")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["upserted"], 10_000);

    let preview = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}}))
        .await;
    assert_eq!(preview.body["matched"], 10_000, "the refused batch stored receivers: {}", preview.body);
    th.stop().await;
}

/// A batch naming one receiver twice upserts one receiver (the last entry wins); more groups than
/// a receiver may hold is a 422 naming the receiver's groups, and nothing of the batch is stored.
#[tokio::test]
async fn receivers_batch_counts_distinct_receivers_and_caps_groups() {
    let th = TestHerald::spawn().await;
    let twice = json!([
        {"kind": "rider", "id": "t1", "city": "shanghai"},
        {"kind": "rider", "id": "t1", "city": "beijing"},
        {"kind": "merchant", "id": "t1", "city": "shanghai"},
    ]);
    let r = th.admin_post("/admin/v1/receivers/batch", &twice).await;
    assert_eq!((r.status, &r.body), (StatusCode::OK, &json!({"upserted": 2})), "{:?}", r.body);
    let preview = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}}))
        .await;
    assert_eq!(preview.body["cities"], json!([{"city": "beijing", "matched": 1, "opted_out": 0}]), "{}", preview.body);

    let groups = |n: usize| (0..n).map(|i| format!("g{i}")).collect::<Vec<_>>();
    let ok = json!([{"kind": "rider", "id": "t2", "city": "sh", "groups": groups(100)}]);
    assert_eq!(th.admin_post("/admin/v1/receivers/batch", &ok).await.status, StatusCode::OK);
    for n in [101, 100_000] {
        let body = json!([
            {"kind": "rider", "id": "t3", "city": "sh"},
            {"kind": "rider", "id": "t4", "city": "sh", "groups": groups(n)},
        ]);
        let r = th.admin_post("/admin/v1/receivers/batch", &body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("[1].groups"), &format!("{n} groups"));
    }
    let preview = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}}))
        .await;
    assert_eq!(preview.body["matched"], 2, "a refused batch stored receivers: {}", preview.body);
    th.stop().await;
}

/// An `Idempotency-Key` replay answers what the first request got, even once the notification's
/// window has closed (a time check must not run before the key is looked up).
#[tokio::test]
async fn idempotent_replay_after_the_window_closed_returns_the_stored_result() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "w1", "shanghai", &[])]).await;
    let body = TestHerald::notification("brief", json!({"all": true}), json!({"valid_until": in_future(1)}));
    let first = create_with_key(&th, "brief-1", body.to_string()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let replay = create_with_key(&th, "brief-1", body.to_string()).await;
    assert_eq!(replay.status, StatusCode::OK, "{:?}", replay.body);
    assert_eq!(replay.body["id"], first.body["id"], "{}", replay.body);
    // Without the key, the same body is now refused: nobody could ever see it.
    let fresh = th.admin_post("/admin/v1/notifications", &body).await;
    assert_error(&fresh, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("valid_until"), "expired body");
    th.stop().await;
}

/// A draft whose window closed while it waited cannot be released: 422 naming `valid_until`, and it
/// stays a draft that reaches nobody.
#[tokio::test]
async fn an_expired_draft_cannot_be_sent() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "x1", "shanghai", &[])]).await;
    let body =
        TestHerald::notification("late", json!({"all": true}), json!({"draft": true, "valid_until": in_future(1)}));
    let id = th.create(&body).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/send"), &json!({})).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("valid_until"), "send an expired draft");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(th.notification_view(&id).await["status"], "draft");
    assert!(inbox_of(&th, "rider", "x1").await.is_empty());
    assert_eq!(history_statuses(&th, &id).await, ["draft"]);
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Status flow: draft, scheduled, cancel, revoke, history
// ---------------------------------------------------------------------------------------------

/// A draft is not sent until `/send`; then it goes out. Sending it twice is a 409.
#[tokio::test]
async fn draft_stays_draft_until_send_then_sends() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "d1", "shanghai", &[])]).await;
    let r = th
        .admin_post(
            "/admin/v1/notifications",
            &TestHerald::notification("draft", json!({"all": true}), json!({"draft": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "draft");
    let id = r.body["id"].as_str().unwrap().to_string();

    tokio::time::sleep(Duration::from_millis(400)).await;
    let view = th.notification_view(&id).await;
    assert_eq!(view["status"], "draft", "{view}");
    assert_eq!(view["draft"], true, "{view}");
    assert_eq!(view["stats"]["sent"], 0, "{view}");
    assert!(inbox_of(&th, "rider", "d1").await.is_empty(), "a draft was delivered");
    assert_eq!(history_statuses(&th, &id).await, ["draft"]);

    let sent = th.admin_post(&format!("/admin/v1/notifications/{id}/send"), &json!({})).await;
    assert_eq!(sent.status, StatusCode::OK, "{:?}", sent.body);
    assert!(["scheduled", "sending", "sent"].contains(&sent.body["status"].as_str().unwrap()), "{}", sent.body);
    let view = th.wait_status(&id, "sent").await;
    assert_eq!(view["stats"]["sent"], 1, "{view}");
    assert_eq!(inbox_of(&th, "rider", "d1").await, vec![id.clone()]);
    assert_eq!(history_statuses(&th, &id).await, ["draft", "scheduled", "sending", "sent"]);

    let again = th.admin_post(&format!("/admin/v1/notifications/{id}/send"), &json!({})).await;
    assert_error(&again, StatusCode::CONFLICT, "invalid_transition", None, "send a sent notification");
    th.stop().await;
}

/// `send_at` in the future: stays scheduled and undelivered, echoes its content, can be cancelled;
/// a cancelled notification cannot be sent, revoked or cancelled again, and never goes out.
#[tokio::test]
async fn future_send_at_stays_scheduled_and_can_be_cancelled() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "f1", "hangzhou", &[])]).await;
    let send_at = in_future(3600);
    let valid_until = in_future(7 * 86_400);
    let body = TestHerald::notification(
        "later",
        json!({"cities": ["hangzhou"]}),
        json!({"send_at": send_at, "category": "announcement", "pinned": true, "force_read": true,
               "valid_until": valid_until}),
    );
    let r = th.admin_post("/admin/v1/notifications", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    let id = r.body["id"].as_str().unwrap().to_string();

    tokio::time::sleep(Duration::from_millis(400)).await;
    let view = th.notification_view(&id).await;
    assert_eq!(view["status"], "scheduled", "{view}");
    assert_eq!(view["id"], id.as_str());
    assert_eq!(view["title"], "later");
    assert_eq!(view["body"], "later body");
    assert_eq!(view["category"], "announcement");
    assert_eq!(view["receiver_kind"], "rider");
    assert_eq!(view["audience"], json!({"cities": ["hangzhou"]}));
    assert_eq!((view["pinned"].as_bool(), view["force_read"].as_bool()), (Some(true), Some(true)), "{view}");
    assert_eq!(instant(&view["send_at"]).timestamp(), instant(&json!(send_at)).timestamp(), "{view}");
    assert_eq!(instant(&view["valid_until"]).timestamp(), instant(&json!(valid_until)).timestamp(), "{view}");
    assert_eq!(view["valid_from"], Value::Null, "{view}");
    assert_eq!(view["stats"]["sent"], 0, "{view}");
    assert!(inbox_of(&th, "rider", "f1").await.is_empty(), "delivered before send_at");

    let cancelled = th.admin_post(&format!("/admin/v1/notifications/{id}/cancel"), &json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    for verb in ["send", "revoke", "cancel"] {
        let r = th.admin_post(&format!("/admin/v1/notifications/{id}/{verb}"), &json!({})).await;
        assert_error(&r, StatusCode::CONFLICT, "invalid_transition", None, &format!("{verb} a cancelled one"));
    }
    assert_eq!(th.notification_view(&id).await["status"], "cancelled");
    assert_eq!(history_statuses(&th, &id).await, ["scheduled", "cancelled"]);
    assert!(inbox_of(&th, "rider", "f1").await.is_empty());
    th.stop().await;
}

/// A `send_at` a moment ahead is held back until then, and goes out once due.
#[tokio::test]
async fn near_send_at_goes_out_when_due_and_not_before() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "n1", "shanghai", &[])]).await;
    // Herald keeps times to the millisecond, so the due time is given so too.
    let due = herald_domain::notification::to_millis(chrono::Utc::now() + chrono::Duration::milliseconds(1500));
    let body = TestHerald::notification("soon", json!({"all": true}), json!({"send_at": due.to_rfc3339()}));
    let id = th.create(&body).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(chrono::Utc::now() < due, "the machine is too slow for this test");
    assert_eq!(th.notification_view(&id).await["status"], "scheduled");
    assert!(inbox_of(&th, "rider", "n1").await.is_empty(), "delivered before send_at");

    let view = th.wait_status(&id, "sent").await;
    assert!(chrono::Utc::now() >= due);
    assert!(instant(&view["sent_at"]) >= due, "sent_at {} before send_at {due}", view["sent_at"]);
    assert_eq!(inbox_of(&th, "rider", "n1").await, vec![id]);
    th.stop().await;
}

/// A draft can be cancelled too; then it can no longer be sent.
#[tokio::test]
async fn cancelled_draft_cannot_be_sent() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "c1", "shanghai", &[])]).await;
    let id = th.create(&TestHerald::notification("d", json!({"all": true}), json!({"draft": true}))).await;
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_transition", None, "revoke a draft");
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/cancel"), &json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{:?}", r.body);
    assert_eq!(r.body["draft"], true, "a cancelled draft was still created as a draft: {}", r.body);
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/send"), &json!({})).await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_transition", None, "send a cancelled draft");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(inbox_of(&th, "rider", "c1").await.is_empty());
    assert_eq!(history_statuses(&th, &id).await, ["draft", "cancelled"]);
    th.stop().await;
}

/// Revoke after sent: gone from every inbox (other messages stay), stats kept, further moves refused.
#[tokio::test]
async fn revoke_after_sent_removes_from_inboxes_and_keeps_stats() {
    let th = TestHerald::spawn().await;
    th.receivers(&[
        ("rider", "v1", "shanghai", &[]),
        ("rider", "v2", "shanghai", &[]),
        ("rider", "v3", "beijing", &[]),
    ])
    .await;
    let (keep, _) = th.send_and_wait(&TestHerald::notification("stays", json!({"all": true}), json!({}))).await;
    let (id, _) = th.send_and_wait(&TestHerald::notification("goes", json!({"all": true}), json!({}))).await;

    // A sent notification can be neither sent nor cancelled.
    for verb in ["send", "cancel"] {
        let r = th.admin_post(&format!("/admin/v1/notifications/{id}/{verb}"), &json!({})).await;
        assert_error(&r, StatusCode::CONFLICT, "invalid_transition", None, &format!("{verb} a sent one"));
    }

    let v1 = th.app_token("rider", "v1");
    let read = th.app_post(&v1, &format!("/app/v1/inbox/{id}/read")).await;
    assert_eq!(read.status, StatusCode::NO_CONTENT, "{:?}", read.body);
    let read_counted =
        eventually(Duration::from_secs(3), || async { th.notification_view(&id).await["stats"]["read"] == 1 }).await;
    assert!(read_counted, "read never counted: {}", th.notification_view(&id).await);
    let before = th.notification_view(&id).await;

    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "revoked");
    assert!(r.body["revoked_at"].is_string(), "{}", r.body);

    for rid in ["v1", "v2", "v3"] {
        let token = th.app_token("rider", rid);
        let gone = eventually(Duration::from_secs(3), || async { !th.inbox_ids(&token).await.contains(&id) }).await;
        assert!(gone, "{rid} still shows the revoked notification");
        assert_eq!(th.inbox_ids(&token).await, vec![keep.clone()], "{rid}: the other message must stay");
    }

    let after = th.notification_view(&id).await;
    assert_eq!(after["status"], "revoked");
    assert_eq!(after["stats"], before["stats"], "stats must be kept after revoke");
    assert_eq!(after["stats"]["matched"], 3);
    assert_eq!(after["stats"]["sent"], 3);
    assert_eq!(after["stats"]["read"], 1);
    let rate = after["stats"]["read_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 3.0).abs() < 1e-9, "read_rate {rate}");
    assert_eq!(cities_of(&after), cities_of(&before));

    for verb in ["cancel", "send"] {
        let r = th.admin_post(&format!("/admin/v1/notifications/{id}/{verb}"), &json!({})).await;
        assert_error(&r, StatusCode::CONFLICT, "invalid_transition", None, &format!("{verb} a revoked one"));
    }
    // Revoking again finishes whatever an interrupted revoke left undone, and changes nothing else.
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await;
    assert_eq!((r.status, r.body["status"].clone()), (StatusCode::OK, json!("revoked")), "{:?}", r.body);
    assert_eq!(history_statuses(&th, &id).await, ["scheduled", "sending", "sent", "revoked"]);
    th.stop().await;
}

/// History of a send-now: scheduled, sending, sent, in time order, each with a detail.
#[tokio::test]
async fn history_records_the_status_flow_in_order() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "h1", "shanghai", &[]), ("rider", "h2", "beijing", &[])]).await;
    let r = th
        .admin_post("/admin/v1/notifications", &TestHerald::notification("now", json!({"all": true}), json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(["scheduled", "sending"].contains(&r.body["status"].as_str().unwrap()), "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let view = th.wait_status(&id, "sent").await;
    assert!(view["sent_at"].is_string() && view["created_at"].is_string(), "{view}");

    let items = history(&th, &id).await;
    let statuses: Vec<&str> = items.iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["scheduled", "sending", "sent"], "{items:?}");
    let times: Vec<_> = items.iter().map(|h| instant(&h["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "history out of order: {items:?}");
    for h in &items {
        assert!(h["detail"].as_str().is_some_and(|d| !d.is_empty()), "{h}");
    }
    th.stop().await;
}

/// An audience that matches nobody still completes: sent, zero everywhere, the named city shown done.
#[tokio::test]
async fn audience_matching_nobody_is_sent_with_zero_counts() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "e1", "shanghai", &[])]).await;
    let (id, view) =
        th.send_and_wait(&TestHerald::notification("nobody", json!({"cities": ["lhasa"]}), json!({}))).await;
    assert_eq!(
        view["stats"],
        json!({"matched": 0, "sent": 0, "read": 0, "read_rate": 0.0, "opted_out": 0, "variants": [], "default": null}),
        "{view}"
    );
    let want: BTreeMap<String, (u64, u64, bool)> = [("lhasa".to_string(), (0, 0, true))].into();
    assert_eq!(cities_of(&view), want, "{view}");
    assert!(!inbox_of(&th, "rider", "e1").await.contains(&id));
    th.stop().await;
}

/// `{"groups": []}` names no group: like `{"cities": []}` it must be refused, not silently widened
/// into a broadcast to every receiver.
#[tokio::test]
async fn empty_group_list_is_refused_rather_than_sent_to_everyone() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "g1", "shanghai", &[]), ("rider", "g2", "beijing", &["vip"])]).await;
    let body = TestHerald::notification("no groups", json!({"groups": []}), json!({}));
    let r = th.admin_post("/admin/v1/notifications", &body).await;
    let created = r.body["id"].as_str().map(str::to_string);
    if let Some(id) = &created {
        th.wait_status(id, "sent").await;
    }
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("audience.groups"), "groups: []");
    assert!(inbox_of(&th, "rider", "g1").await.is_empty(), "an empty group list reached a rider in no group");
    th.stop().await;
}

/// Cancelling a send-now notification right after creating it races the scheduler: either the
/// cancel wins (then it is never delivered) or it is refused with 409 because sending began.
#[tokio::test]
async fn cancel_right_after_create_is_all_or_nothing() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "x1", "shanghai", &[])]).await;
    let id = th.create(&TestHerald::notification("race", json!({"all": true}), json!({}))).await;
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/cancel"), &json!({})).await;
    if r.status == StatusCode::OK {
        assert_eq!(r.body["status"], "cancelled");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let view = th.notification_view(&id).await;
        assert_eq!(view["status"], "cancelled", "{view}");
        assert_eq!(view["stats"]["sent"], 0, "{view}");
        assert!(inbox_of(&th, "rider", "x1").await.is_empty(), "a cancelled notification was delivered");
        assert_eq!(history_statuses(&th, &id).await, ["scheduled", "cancelled"]);
    } else {
        assert_error(&r, StatusCode::CONFLICT, "invalid_transition", None, "cancel once sending");
        th.wait_status(&id, "sent").await;
        assert_eq!(inbox_of(&th, "rider", "x1").await, vec![id]);
    }
    th.stop().await;
}

/// Revoking while pages are still going out: it stays revoked (never flips to sent) and no inbox
/// shows it, including pages delivered after the revoke.
#[tokio::test]
async fn revoke_while_sending_stays_revoked_and_reaches_no_inbox() {
    let th = TestHerald::spawn().await;
    th.riders("q", 2500, &["chengdu"]).await;
    let id = th.create(&TestHerald::notification("oops", json!({"all": true}), json!({}))).await;
    let view = loop {
        let view = th.notification_view(&id).await;
        if view["status"] != "scheduled" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let r = th.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "revoke while {}: {:?}", view["status"], r.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = th.notification_view(&id).await;
    assert_eq!(after["status"], "revoked", "{after}");
    let last = history_statuses(&th, &id).await;
    assert_eq!(last.last().map(String::as_str), Some("revoked"), "{last:?}");
    let holders: Vec<usize> = futures::stream::iter(0..2500usize)
        .map(|i| {
            let th = &th;
            let id = &id;
            async move { (i, inbox_of(th, "rider", &format!("q{i:06}")).await.contains(id)) }
        })
        .buffer_unordered(32)
        .filter_map(|(i, holds)| async move { holds.then_some(i) })
        .collect()
        .await;
    assert!(
        holders.is_empty(),
        "{} riders still see the revoked notification, e.g. {:?}",
        holders.len(),
        &holders[..holders.len().min(5)]
    );
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

/// Same key + same JSON (other spacing, other key order) → 200 with the same id, nothing new sent;
/// same key + another body → 409; another key → a new notification.
#[tokio::test]
async fn idempotency_key_replays_and_refuses_reuse() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "i1", "shanghai", &[])]).await;
    let body = TestHerald::notification("once", json!({"all": true}), json!({"pinned": false}));
    let first = create_with_key(&th, "key-1", body.to_string()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let id = first.body["id"].as_str().unwrap().to_string();
    th.wait_status(&id, "sent").await;

    // The same JSON value, keys reordered and spaced out.
    let reordered = r#"{ "audience" : { "all" : true },
        "pinned": false, "receiver_kind": "rider", "category": "system",
        "body": "once body", "title": "once" }"#;
    let replay = create_with_key(&th, "key-1", reordered.to_string()).await;
    assert_eq!(replay.status, StatusCode::OK, "{:?}", replay.body);
    assert_eq!(replay.body["id"], id.as_str(), "{}", replay.body);
    let replay = create_with_key(&th, "key-1", body.to_string()).await;
    assert_eq!((replay.status, replay.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())), "{}", replay.body);

    let other = TestHerald::notification("twice", json!({"all": true}), json!({}));
    let reused = create_with_key(&th, "key-1", other.to_string()).await;
    assert_error(&reused, StatusCode::CONFLICT, "idempotency_key_reused", None, "same key, other body");

    let second = create_with_key(&th, "key-2", body.to_string()).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    let second_id = second.body["id"].as_str().unwrap().to_string();
    assert_ne!(second_id, id);
    th.wait_status(&second_id, "sent").await;

    let inbox: BTreeSet<String> = inbox_of(&th, "rider", "i1").await.into_iter().collect();
    assert_eq!(inbox, BTreeSet::from([id, second_id]), "replays must not create notifications");

    let bad_key = create_with_key(&th, &"k".repeat(256), body.to_string()).await;
    assert_error(&bad_key, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("Idempotency-Key"), "256-char key");
    th.stop().await;
}

/// Concurrent creates with one key and one body make one notification: one 201, the rest 200.
#[tokio::test]
async fn concurrent_creates_with_one_key_make_one_notification() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "cc1", "shanghai", &[])]).await;
    let body = TestHerald::notification("concurrent", json!({"all": true}), json!({})).to_string();
    let replies = futures::future::join_all((0..8).map(|_| create_with_key(&th, "same-key", body.clone()))).await;
    let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
    let replayed = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!((created, replayed), (1, 7), "{replies:?}");
    let ids: BTreeSet<&str> = replies.iter().map(|r| r.body["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap().to_string();
    th.wait_status(&id, "sent").await;
    assert_eq!(inbox_of(&th, "rider", "cc1").await, vec![id]);
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Bodies that are not JSON (or not only JSON) are 400 `malformed_json`.
#[tokio::test]
async fn malformed_json_is_400() {
    let th = TestHerald::spawn().await;
    let endpoints = [
        ("/admin/v1/notifications", TestHerald::notification("x", json!({"all": true}), json!({}))),
        ("/admin/v1/receivers/batch", json!([{"kind": "rider", "id": "j1", "city": "sh"}])),
        ("/admin/v1/audience/preview", json!({"receiver_kind": "rider", "audience": {"all": true}})),
    ];
    for (path, valid) in &endpoints {
        let cases = [
            ("truncated", valid.to_string()[..valid.to_string().len() - 2].to_string()),
            ("not json", "title=hello".to_string()),
            ("trailing garbage", format!("{valid} trailing")),
            ("two values", format!("{valid}{valid}")),
            ("empty", String::new()),
        ];
        for (what, body) in cases {
            let r = th.raw(Method::POST, path, &th.admin, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what} on {path}: {}", r.body);
            assert_eq!(r.code(), Some("malformed_json"), "{what} on {path}: {}", r.body);
        }
    }
    // None of them took effect.
    let preview = th.admin_post("/admin/v1/audience/preview", &endpoints[2].1).await;
    assert_eq!(preview.body["matched"], 0, "{}", preview.body);
    th.stop().await;
}

/// Every invalid notification field is a 422 `invalid_field` naming the field, and nothing is
/// created by a refused request.
#[tokio::test]
async fn invalid_notification_fields_are_422_naming_the_field() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "b1", "shanghai", &["vip"])]).await;
    let base = |extra: Value| TestHerald::notification("t", json!({"all": true}), extra);
    let without = |field: &str| {
        let mut b = base(json!({}));
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let with_audience = |a: Value| TestHerald::notification("t", a, json!({}));
    let many: Vec<String> = (0..10_001).map(|i| format!("x{i}")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing title", without("title"), "title"),
        ("empty title", base(json!({"title": ""})), "title"),
        ("blank title", base(json!({"title": "   "})), "title"),
        ("long title", base(json!({"title": "字".repeat(201)})), "title"),
        ("NUL in title", base(json!({"title": "a\u{0}b"})), "title"),
        ("terminal escape in title", base(json!({"title": "\u{1b}[31mred"})), "title"),
        ("bidi override in title", base(json!({"title": "pay \u{202e}gpj.exe"})), "title"),
        ("only zero-width title", base(json!({"title": "\u{200b}\u{200b} \u{feff}"})), "title"),
        ("newline in title", base(json!({"title": "two\nlines"})), "title"),
        ("C1 control in body", base(json!({"body": "a\u{9b}31m"})), "body"),
        ("bidi isolate in body", base(json!({"body": "x\u{2066}y"})), "body"),
        ("invisible body", base(json!({"body": "\u{200d}\n\t"})), "body"),
        ("numeric title", base(json!({"title": 42})), "title"),
        ("missing body", without("body"), "body"),
        ("long body", base(json!({"body": "b".repeat(10_001)})), "body"),
        ("missing category", without("category"), "category"),
        ("unknown category", base(json!({"category": "promo"})), "category"),
        ("missing receiver_kind", without("receiver_kind"), "receiver_kind"),
        ("unknown receiver_kind", base(json!({"receiver_kind": "driver"})), "receiver_kind"),
        ("missing audience", without("audience"), "audience"),
        ("empty audience", with_audience(json!({})), "audience"),
        ("all false", with_audience(json!({"all": false})), "audience"),
        ("exclude only", with_audience(json!({"exclude": ["b1"]})), "audience"),
        ("bad city", with_audience(json!({"cities": ["a b"]})), "audience.cities[0]"),
        ("second city bad", with_audience(json!({"cities": ["ok", "no;way"]})), "audience.cities[1]"),
        ("empty group", with_audience(json!({"groups": [""]})), "audience.groups[0]"),
        ("bad exclude id", with_audience(json!({"all": true, "exclude": ["r 1"]})), "audience.exclude[0]"),
        ("empty cities", with_audience(json!({"cities": []})), "audience.cities"),
        ("all with cities", with_audience(json!({"all": true, "cities": ["x"]})), "audience.cities"),
        ("include with all", with_audience(json!({"all": true, "include": ["b1"]})), "audience.include"),
        ("include with cities", with_audience(json!({"cities": ["shanghai"], "include": ["b1"]})), "audience.include"),
        ("include with groups", with_audience(json!({"groups": ["vip"], "include": ["b1"]})), "audience.include"),
        ("empty include", with_audience(json!({"include": []})), "audience.include"),
        ("unknown audience field", with_audience(json!({"everyone": true})), "audience.everyone"),
        ("exclude too long", with_audience(json!({"all": true, "exclude": many})), "audience.exclude"),
        ("unknown field", base(json!({"colour": "red"})), "colour"),
        ("pinned not bool", base(json!({"pinned": "yes"})), "pinned"),
        ("bad valid_until", base(json!({"valid_until": "tomorrow"})), "valid_until"),
        ("valid_until already past", base(json!({"valid_until": "2020-01-01T00:00:00Z"})), "valid_until"),
        (
            "send_at after valid_until",
            base(json!({"send_at": "2031-01-02T00:00:00Z", "valid_until": "2031-01-01T00:00:00Z"})),
            "send_at",
        ),
        (
            "valid_until before valid_from",
            base(json!({"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"})),
            "valid_until",
        ),
        (
            "valid_until equal to valid_from",
            base(json!({"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-02T00:00:00Z"})),
            "valid_until",
        ),
        ("bad valid_from", base(json!({"valid_from": 12})), "valid_from"),
        ("bad send_at", base(json!({"send_at": "not a time"})), "send_at"),
        ("draft not bool", base(json!({"draft": 1})), "draft"),
    ];
    for (what, body, field) in &cases {
        let r = th.admin_post("/admin/v1/notifications", body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field), what);
    }
    // A body that is JSON but not an object.
    let r = th.admin_post("/admin/v1/notifications", &json!([1, 2])).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")), "{}", r.body);

    // None of them created anything: b1's inbox holds only the valid ones sent next.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(inbox_of(&th, "rider", "b1").await.is_empty());
    let (id, _) = th.send_and_wait(&base(json!({}))).await;
    assert_eq!(inbox_of(&th, "rider", "b1").await, vec![id.clone()]);
    // The limits themselves are accepted: a 200-character title, a 10,000-character body.
    let (edge, view) = th.send_and_wait(&base(json!({"title": "字".repeat(200), "body": "b".repeat(10_000)}))).await;
    assert_eq!(view["title"].as_str().unwrap().chars().count(), 200);
    assert_eq!(inbox_of(&th, "rider", "b1").await.len(), 2, "{edge}");
    th.stop().await;
}

/// Receiver batches and previews name the field at fault too.
#[tokio::test]
async fn invalid_batch_and_preview_fields_are_422_naming_the_field() {
    let th = TestHerald::spawn().await;
    let ok = json!({"kind": "rider", "id": "g1", "city": "shanghai"});
    let batch_cases: Vec<(&str, Value, &str)> = vec![
        ("unknown kind", json!([{"kind": "driver", "id": "g1", "city": "shanghai"}]), "[0].kind"),
        ("missing id", json!([ok, {"kind": "rider", "city": "shanghai"}]), "[1].id"),
        ("bad city", json!([ok, ok, {"kind": "rider", "id": "g2", "city": "new york"}]), "[2].city"),
        ("bad group", json!([{"kind": "rider", "id": "g1", "city": "sh", "groups": ["ok", "a,b"]}]), "[0].groups[1]"),
        ("unknown field", json!([{"kind": "rider", "id": "g1", "city": "sh", "age": 3}]), "[0].age"),
        ("long id", json!([{"kind": "rider", "id": "i".repeat(65), "city": "sh"}]), "[0].id"),
    ];
    for (what, body, field) in &batch_cases {
        let r = th.admin_post("/admin/v1/receivers/batch", body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field), what);
    }
    // Whole batches are refused: g1 (valid, first in a refused batch) was not stored.
    let preview = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}}))
        .await;
    assert_eq!(preview.body["matched"], 0, "{}", preview.body);

    let preview_cases: Vec<(&str, Value, &str)> = vec![
        ("missing receiver_kind", json!({"audience": {"all": true}}), "receiver_kind"),
        ("unknown receiver_kind", json!({"receiver_kind": "bus", "audience": {"all": true}}), "receiver_kind"),
        ("missing audience", json!({"receiver_kind": "rider"}), "audience"),
        ("bad city", json!({"receiver_kind": "rider", "audience": {"cities": ["x y"]}}), "audience.cities[0]"),
        (
            "mixed include",
            json!({"receiver_kind": "rider", "audience": {"all": true, "include": ["a"]}}),
            "audience.include",
        ),
        ("unknown field", json!({"receiver_kind": "rider", "audience": {"all": true}, "title": "t"}), "title"),
    ];
    for (what, body, field) in &preview_cases {
        let r = th.admin_post("/admin/v1/audience/preview", body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field), what);
    }
    th.stop().await;
}

/// Bodies over 4 MiB are 413; a body of about 3 MiB (mostly whitespace) is still accepted.
#[tokio::test]
async fn bodies_over_four_mib_are_413() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "z1", "shanghai", &[])]).await;
    let valid = TestHerald::notification("padded", json!({"all": true}), json!({})).to_string();

    let big = format!("{}{}", " ".repeat(4 * 1024 * 1024 + 1), valid);
    let r = th.raw(Method::POST, "/admin/v1/notifications", &th.admin, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.body["error"]["code"].is_string(), "413 without the error shape: {}", r.body);

    let big_batch = format!("[{}]", " ".repeat(4 * 1024 * 1024 + 1));
    let r = th.raw(Method::POST, "/admin/v1/receivers/batch", &th.admin, big_batch).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);

    let fits = format!("{}{}", " ".repeat(3 * 1024 * 1024), valid);
    let r = th.raw(Method::POST, "/admin/v1/notifications", &th.admin, fits).await;
    assert_eq!(r.status, StatusCode::CREATED, "a 3 MiB body must fit: {}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    th.wait_status(&id, "sent").await;
    assert_eq!(inbox_of(&th, "rider", "z1").await, vec![id], "only the accepted body created a notification");
    th.stop().await;
}

/// Unknown and malformed ids are 404 on every notification route; so is an unknown endpoint.
#[tokio::test]
async fn unknown_or_malformed_ids_are_404() {
    let th = TestHerald::spawn().await;
    for id in [NIL_ID, "abc", "0000000000000000000000000000000G", "ABCDEF00000000000000000000000000", "..%2F..%2Fetc"] {
        for path in [format!("/admin/v1/notifications/{id}"), format!("/admin/v1/notifications/{id}/history")] {
            let r = th.admin_get(&path).await;
            assert_error(&r, StatusCode::NOT_FOUND, "not_found", None, &path);
        }
        for verb in ["send", "cancel", "revoke"] {
            let path = format!("/admin/v1/notifications/{id}/{verb}");
            let r = th.admin_post(&path, &json!({})).await;
            assert_error(&r, StatusCode::NOT_FOUND, "not_found", None, &path);
        }
    }
    let r = th.admin_get("/admin/v1/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.code(), Some("not_found"));
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

/// No or bad token → 401; an app token → 403; a viewer may GET but every POST is 403, even with a
/// bad body, and creates nothing.
#[tokio::test]
async fn auth_rules_for_admin_endpoints() {
    let th = TestHerald::spawn().await;
    th.receivers(&[("rider", "w1", "shanghai", &[])]).await;
    let valid = TestHerald::notification("auth", json!({"all": true}), json!({}));
    let id = th.create(&TestHerald::notification("draft", json!({"all": true}), json!({"draft": true}))).await;
    let foreign = TokenSigner::new("another-secret").sign(&Claims::Admin { role: AdminRole::Operator });
    let app = th.app_token("rider", "w1");

    let gets = [
        format!("/admin/v1/notifications/{id}"),
        format!("/admin/v1/notifications/{id}/history"),
        "/admin/v1/search/reindex".into(),
    ];
    let posts: Vec<(String, String)> = vec![
        ("/admin/v1/notifications".into(), valid.to_string()),
        ("/admin/v1/receivers/batch".into(), json!([{"kind": "rider", "id": "w2", "city": "sh"}]).to_string()),
        ("/admin/v1/audience/preview".into(), json!({"receiver_kind": "rider", "audience": {"all": true}}).to_string()),
        (format!("/admin/v1/notifications/{id}/send"), "{}".into()),
        (format!("/admin/v1/notifications/{id}/cancel"), "{}".into()),
        (format!("/admin/v1/notifications/{id}/revoke"), "{}".into()),
        ("/admin/v1/search/reindex".into(), "{}".into()),
    ];

    // 401: no token, a token from another secret, garbage, the wrong scheme.
    let unauthenticated: [(&str, Option<String>); 4] = [
        ("no token", None),
        ("foreign token", Some(format!("Bearer {foreign}"))),
        ("garbage token", Some("Bearer not-a-token".into())),
        ("basic scheme", Some(format!("Basic {}", th.admin))),
    ];
    for (what, header) in &unauthenticated {
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
        for path in &gets {
            let r = request(&th, Method::GET, path, None, &headers, None).await;
            assert_error(
                &r,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("Authorization"),
                &format!("{what} GET {path}"),
            );
        }
        for (path, body) in &posts {
            let r = request(&th, Method::POST, path, None, &headers, Some(body.clone())).await;
            assert_error(
                &r,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("Authorization"),
                &format!("{what} POST {path}"),
            );
        }
        let r = request(&th, Method::POST, "/admin/v1/notifications", None, &headers, Some("{bad".into())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what} with a malformed body: {}", r.body);
    }

    // 403: an app token anywhere on the admin API.
    for path in &gets {
        let r = th.call(Method::GET, path, Some(&app), None).await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, &format!("app token GET {path}"));
    }
    for (path, body) in &posts {
        let r = th.raw(Method::POST, path, &app, body.clone()).await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, &format!("app token POST {path}"));
    }

    // A viewer reads...
    for path in &gets {
        let r = th.call(Method::GET, path, Some(&th.viewer), None).await;
        assert_eq!(r.status, StatusCode::OK, "viewer GET {path}: {}", r.body);
    }
    // ...and writes nothing, whatever the body.
    for (path, body) in &posts {
        for (what, body) in
            [("valid", body.clone()), ("malformed", "{oops".into()), ("invalid", "{\"title\": 1}".into())]
        {
            let r = th.raw(Method::POST, path, &th.viewer, body).await;
            assert_error(&r, StatusCode::FORBIDDEN, "forbidden", None, &format!("viewer POST {path} ({what} body)"));
        }
    }
    let huge = " ".repeat(4 * 1024 * 1024 + 10);
    let r = th.raw(Method::POST, "/admin/v1/notifications", &th.viewer, huge).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "viewer with an oversized body: {}", r.body);

    // Nothing the refused requests asked for happened.
    assert_eq!(th.notification_view(&id).await["status"], "draft", "a refused send/cancel moved the draft");
    let preview = th
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}}))
        .await;
    assert_eq!(preview.body["matched"], 1, "a refused batch stored w2: {}", preview.body);
    let (sent, _) = th.send_and_wait(&valid).await;
    assert_eq!(inbox_of(&th, "rider", "w1").await, vec![sent], "a refused create was delivered");
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Operations endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_and_readyz_report_ok() {
    let th = TestHerald::spawn().await;
    let health = th.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let ready = th.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let checks = ready.body["checks"].as_object().expect("checks");
    assert!(!checks.is_empty(), "{}", ready.body);
    for (name, result) in checks {
        assert_eq!(result, "ok", "check {name}: {}", ready.body);
    }
    th.stop().await;
}

/// After a send, `/metrics` has the request-latency histogram by route and the pages-published counter.
#[tokio::test]
async fn metrics_show_request_latency_and_published_pages_after_a_send() {
    let th = TestHerald::spawn().await;
    th.riders("mr", 30, &["shanghai", "beijing", "shenzhen"]).await;
    th.send_and_wait(&TestHerald::notification("metrics", json!({"all": true}), json!({}))).await;

    let resp = th.client.get(format!("{}/metrics", th.base)).send().await.expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.contains("herald_http_request_duration_seconds"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("herald_http_request_duration_seconds_count")
            && l.contains("route=\"/admin/v1/notifications\"")
            && l.contains("method=\"POST\"")),
        "no latency series for POST /admin/v1/notifications:\n{text}"
    );
    let pages: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("herald_pages_published_total "))
        .unwrap_or_else(|| panic!("no herald_pages_published_total:\n{text}"))
        .trim()
        .parse()
        .expect("a number");
    assert!(pages >= 3.0, "three cities need at least three pages, counted {pages}");
    th.stop().await;
}
