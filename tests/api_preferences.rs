//! Receiver preferences (`GET/PUT /app/v1/preferences`): a receiver opts out of categories; a
//! broadcast leaves it out at send time and counts it apart (`opted_out`) in preview and stats,
//! `system` and force-read messages reach it anyway, and opting back in brings the category's
//! still-valid broadcasts back as a late joiner gets them. Counts stay exact (`sent == matched`).

mod common;

use std::time::Duration;

use common::{Reply, TestHerald, city};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn put(t: &TestHerald, token: &str, body: &Value) -> Reply {
    t.call(Method::PUT, "/app/v1/preferences", Some(token), Some(body)).await
}

/// Opts the rider out of `categories`, checking the answer.
async fn opt_out(t: &TestHerald, id: &str, categories: &[&str]) {
    let r = put(t, &t.app_token("rider", id), &json!({"opted_out": categories})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"opted_out": categories}));
}

fn activity(title: &str, audience: Value, extra: Value) -> Value {
    let mut body = TestHerald::notification(title, audience, extra);
    if body["category"] == "system" {
        body["category"] = json!("activity");
    }
    body
}

#[tokio::test]
async fn preferences_start_empty_and_a_put_replaces_them() {
    let t = TestHerald::spawn().await;
    let me = t.app_token("rider", "p1");
    let r = t.app_get(&me, "/app/v1/preferences").await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({"opted_out": []})));
    opt_out(&t, "p1", &["activity", "announcement"]).await;
    assert_eq!(t.app_get(&me, "/app/v1/preferences").await.body, json!({"opted_out": ["activity", "announcement"]}));
    opt_out(&t, "p1", &["announcement"]).await;
    assert_eq!(t.app_get(&me, "/app/v1/preferences").await.body, json!({"opted_out": ["announcement"]}));
    let other = t.app_get(&t.app_token("merchant", "p1"), "/app/v1/preferences").await;
    assert_eq!(other.body, json!({"opted_out": []}), "a merchant p1 is another receiver");
    opt_out(&t, "p1", &[]).await;
    assert_eq!(t.app_get(&me, "/app/v1/preferences").await.body, json!({"opted_out": []}));
    t.stop().await;
}

#[tokio::test]
async fn opting_out_of_system_is_refused_naming_the_field() {
    let t = TestHerald::spawn().await;
    let me = t.app_token("rider", "p1");
    let r = put(&t, &me, &json!({"opted_out": ["activity", "system"]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.field(), Some("opted_out[1]"), "{:?}", r.body);
    assert_eq!(t.app_get(&me, "/app/v1/preferences").await.body, json!({"opted_out": []}), "nothing stored");
    t.stop().await;
}

#[tokio::test]
async fn bad_preferences_are_refused_naming_the_field() {
    let t = TestHerald::spawn().await;
    let me = t.app_token("rider", "p1");
    for (body, status, field) in [
        (json!({"opted_out": ["activity", "promo"]}), StatusCode::UNPROCESSABLE_ENTITY, "opted_out[1]"),
        (json!({"opted_out": ["activity", "activity"]}), StatusCode::UNPROCESSABLE_ENTITY, "opted_out[1]"),
        (json!({"opted_out": "activity"}), StatusCode::UNPROCESSABLE_ENTITY, "opted_out"),
        (json!({"opted_out": [7]}), StatusCode::UNPROCESSABLE_ENTITY, "opted_out[0]"),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "opted_out"),
    ] {
        let r = put(&t, &me, &body).await;
        assert_eq!((r.status, r.field()), (status, Some(field)), "{body}: {:?}", r.body);
    }
    let r = put(&t, &me, &json!({"opted_out": [], "extra": 1})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = t.raw(Method::PUT, "/app/v1/preferences", &me, "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = t.call(Method::GET, "/app/v1/preferences", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    t.stop().await;
}

#[tokio::test]
async fn opted_out_receivers_are_left_out_of_a_broadcast_and_counted_apart() {
    let t = TestHerald::spawn().await;
    t.receivers(&[
        ("rider", "s1", "sh", &[]),
        ("rider", "s2", "sh", &[]),
        ("rider", "s3", "sh", &[]),
        ("rider", "b1", "bj", &[]),
        ("rider", "b2", "bj", &[]),
    ])
    .await;
    opt_out(&t, "s2", &["activity"]).await;
    opt_out(&t, "b1", &["activity", "announcement"]).await;
    opt_out(&t, "b2", &["announcement"]).await;

    let preview = |category: &str, force_read: bool| json!({"receiver_kind": "rider", "audience": {"all": true}, "category": category, "force_read": force_read});
    let p = t.admin_post("/admin/v1/audience/preview", &preview("activity", false)).await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    assert_eq!((p.body["matched"].clone(), p.body["opted_out"].clone()), (json!(3), json!(2)), "{:?}", p.body);
    assert_eq!(
        p.body["cities"],
        json!([
            {"city": "bj", "matched": 1, "opted_out": 1},
            {"city": "sh", "matched": 2, "opted_out": 1},
        ])
    );
    let p = t
        .admin_post(
            "/admin/v1/audience/preview",
            &json!({"receiver_kind": "rider", "audience": {"all": true, "exclude": ["s2"]}, "category": "activity"}),
        )
        .await;
    assert_eq!(
        (p.body["matched"].clone(), p.body["opted_out"].clone()),
        (json!(3), json!(1)),
        "excluded: {:?}",
        p.body
    );
    let p =
        t.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}})).await;
    assert_eq!(
        (p.body["matched"].clone(), p.body["opted_out"].clone()),
        (json!(5), json!(0)),
        "no category: {:?}",
        p.body
    );

    let (id, _) = t.send_and_wait(&activity("promo", json!({"all": true}), json!({}))).await;
    let v = t.settled(&id, 3).await;
    assert_eq!(v["stats"]["opted_out"], json!(2), "{v}");
    assert_eq!((city(&v, "sh")["opted_out"].clone(), city(&v, "bj")["opted_out"].clone()), (json!(1), json!(1)), "{v}");
    for (rider, holds) in [("s1", true), ("s2", false), ("s3", true), ("b1", false), ("b2", true)] {
        assert_eq!(t.inbox_ids(&t.app_token("rider", rider)).await.contains(&id), holds, "{rider}");
    }
    t.stop().await;
}

#[tokio::test]
async fn system_and_force_read_messages_reach_the_opted_out_too() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "a1", "sh", &[]), ("rider", "a2", "sh", &[])]).await;
    opt_out(&t, "a1", &["activity", "announcement"]).await;
    let p = t
        .admin_post(
            "/admin/v1/audience/preview",
            &json!({"receiver_kind": "rider", "audience": {"all": true}, "category": "activity", "force_read": true}),
        )
        .await;
    assert_eq!((p.body["matched"].clone(), p.body["opted_out"].clone()), (json!(2), json!(0)), "{:?}", p.body);

    let (system, _) = t.send_and_wait(&TestHerald::notification("system", json!({"all": true}), json!({}))).await;
    let (forced, _) = t.send_and_wait(&activity("must read", json!({"all": true}), json!({"force_read": true}))).await;
    for id in [&system, &forced] {
        let v = t.settled(id, 2).await;
        assert_eq!(v["stats"]["opted_out"], json!(0), "{v}");
    }
    let inbox = t.inbox_ids(&t.app_token("rider", "a1")).await;
    assert!(inbox.contains(&system) && inbox.contains(&forced), "{inbox:?}");
    t.stop().await;
}

#[tokio::test]
async fn an_include_list_leaves_the_opted_out_out_and_counts_them() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "d1", "sh", &[]), ("rider", "d2", "sh", &[]), ("rider", "d3", "bj", &[])]).await;
    opt_out(&t, "d2", &["announcement"]).await;
    let body = TestHerald::notification(
        "for three",
        json!({"include": ["d1", "d2", "d3"]}),
        json!({"category": "announcement"}),
    );
    let (id, _) = t.send_and_wait(&body).await;
    let v = t.settled(&id, 2).await;
    assert_eq!(v["stats"]["opted_out"], json!(1), "{v}");
    assert_eq!(city(&v, "sh")["opted_out"], json!(1), "{v}");
    assert!(!t.inbox_ids(&t.app_token("rider", "d2")).await.contains(&id));
    t.stop().await;
}

#[tokio::test]
async fn paging_many_pages_skips_the_opted_out_and_stays_exact() {
    let t = TestHerald::spawn().await;
    t.riders("m", 1_100, &["sh"]).await;
    // Every eleventh rider, spread over all three pages of 500.
    for i in (0..1_100).step_by(11) {
        opt_out(&t, &format!("m{i:06}"), &["activity"]).await;
    }
    let (id, _) = t.send_and_wait(&activity("wide", json!({"all": true}), json!({}))).await;
    let v = t.settled(&id, 1_000).await;
    assert_eq!(v["stats"]["opted_out"], json!(100), "{v}");
    assert!(!t.inbox_ids(&t.app_token("rider", "m000011")).await.contains(&id));
    assert!(t.inbox_ids(&t.app_token("rider", "m000012")).await.contains(&id));
    t.stop().await;
}

#[tokio::test]
async fn opting_back_in_brings_still_valid_messages_of_that_category_back_like_a_late_joiner() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "o1", "sh", &[]), ("rider", "o2", "sh", &[])]).await;
    opt_out(&t, "o1", &["activity", "announcement"]).await;
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let (expiring, _) =
        t.send_and_wait(&activity("expiring", json!({"all": true}), json!({"valid_until": until.to_rfc3339()}))).await;
    let (promo, _) = t.send_and_wait(&activity("promo", json!({"all": true}), json!({}))).await;
    let (news, _) = t
        .send_and_wait(&TestHerald::notification("news", json!({"all": true}), json!({"category": "announcement"})))
        .await;
    for id in [&expiring, &promo, &news] {
        t.settled(id, 1).await;
    }
    tokio::time::sleep((until - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(50)).await;

    opt_out(&t, "o1", &["announcement"]).await;
    let v = t.settled(&promo, 2).await;
    assert_eq!(v["stats"]["opted_out"], json!(1), "opted_out is what the send left out: {v}");
    let inbox = t.inbox_ids(&t.app_token("rider", "o1")).await;
    assert_eq!(inbox, vec![promo.clone()], "only the still-valid activity message comes back");
    t.settled(&news, 1).await;
    let e = t.notification_view(&expiring).await;
    assert_eq!(e["stats"]["sent"], json!(1), "{e}");

    // Opting in again to what it already holds adds nothing and counts nothing twice.
    opt_out(&t, "o1", &["activity"]).await;
    opt_out(&t, "o1", &[]).await;
    t.settled(&promo, 2).await;
    t.settled(&news, 2).await;
    t.stop().await;
}

#[tokio::test]
async fn a_late_joiner_who_opted_out_does_not_get_that_category_late() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "l1", "sh", &[])]).await;
    let (promo, _) = t.send_and_wait(&activity("promo", json!({"cities": ["bj"]}), json!({}))).await;
    let (system, _) = t.send_and_wait(&TestHerald::notification("system", json!({"cities": ["bj"]}), json!({}))).await;
    opt_out(&t, "l1", &["activity"]).await;
    t.receivers(&[("rider", "l1", "bj", &[])]).await;
    t.settled(&system, 1).await;
    t.settled(&promo, 0).await;
    assert_eq!(t.inbox_ids(&t.app_token("rider", "l1")).await, vec![system.clone()]);
    t.stop().await;
}
