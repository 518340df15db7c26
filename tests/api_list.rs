//! `GET /admin/v1/notifications`: the console's list over the search mirror, filtered, newest first
//! (by relevance with `q`), paged.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

async fn list(h: &TestHerald, query: &str) -> Reply {
    h.admin_get(&format!("/admin/v1/notifications?{query}")).await
}

#[tokio::test]
async fn filters_combine_and_the_newest_come_first() {
    let h = TestHerald::spawn().await;
    h.receivers(&[("rider", "r1", "上海", &[]), ("rider", "r2", "beijing", &[]), ("merchant", "m1", "上海", &[])])
        .await;
    let (maintenance, _) = h
        .send_and_wait(&TestHerald::notification("系统维护通知", json!({"all": true}), json!({"category": "system"})))
        .await;
    let promo = h
        .create(&TestHerald::notification(
            "周末活动",
            json!({"cities": ["上海"]}),
            json!({"category": "activity", "draft": true}),
        ))
        .await;
    let (merchants, _) = h
        .send_and_wait(&TestHerald::notification(
            "商家公告",
            json!({"all": true}),
            json!({"category": "announcement", "receiver_kind": "merchant", "body": "骑手也要看维护安排"}),
        ))
        .await;

    assert_eq!(ids(&list(&h, "").await), vec![merchants.clone(), promo.clone(), maintenance.clone()]);
    assert_eq!(list(&h, "").await.body["total"], json!(3));
    // q matches title or body, Chinese included; by relevance: found in the title ranks above
    // found in the body, however newer.
    assert_eq!(ids(&list(&h, "q=维护").await), vec![maintenance.clone(), merchants.clone()]);
    assert_eq!(ids(&list(&h, "q=维护&receiver_kind=rider").await), vec![maintenance.clone()]);
    assert_eq!(ids(&list(&h, "status=draft").await), vec![promo.clone()]);
    assert_eq!(ids(&list(&h, "category=announcement").await), vec![merchants.clone()]);
    // A city: named by the audience (the draft) or reached by a send (both `all` sends reached 上海).
    assert_eq!(ids(&list(&h, "city=上海").await), vec![merchants.clone(), promo.clone(), maintenance.clone()]);
    assert_eq!(ids(&list(&h, "city=beijing").await), vec![maintenance.clone()]);
    let created = h.notification_view(&promo).await["created_at"].as_str().unwrap().to_string();
    let from = format!("from={}", urlencode(&created));
    assert_eq!(ids(&list(&h, &from).await), vec![merchants.clone(), promo.clone()]);
    let to = format!("to={}", urlencode(&created));
    assert_eq!(ids(&list(&h, &to).await), vec![maintenance.clone()]);
    let sent = list(&h, "status=sent&category=system").await;
    assert_eq!(sent.body["items"][0]["stats"]["sent"], json!(2), "items carry their stats: {}", sent.body);
    assert_eq!(
        h.call(reqwest::Method::GET, "/admin/v1/notifications", Some(&h.viewer), None).await.status,
        StatusCode::OK
    );
    h.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn cursor_pages_through_everything_once() {
    let h = TestHerald::spawn().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            h.create(&TestHerald::notification(&format!("n{i}"), json!({"all": true}), json!({"draft": true}))).await,
        );
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut query = "limit=3".to_string();
    loop {
        let page = list(&h, &query).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        assert_eq!(page.body["total"], json!(7));
        seen.extend(ids(&page));
        match page.body["next_cursor"].as_str() {
            Some(c) => query = format!("limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "newest first, each once");
    h.stop().await;
}

/// Ranked pages (with `q`) hold every hit once, by relevance: title matches before body matches.
#[tokio::test]
async fn ranked_pages_hold_every_hit_once() {
    let h = TestHerald::spawn().await;
    let mut in_title = Vec::new();
    let mut in_body = Vec::new();
    for i in 0..4 {
        in_title.push(
            h.create(&TestHerald::notification(
                &format!("停电通知{i}"),
                json!({"all": true}),
                json!({"draft": true, "body": "见附件"}),
            ))
            .await,
        );
        in_body.push(
            h.create(&TestHerald::notification(
                &format!("公告{i}"),
                json!({"all": true}),
                json!({"draft": true, "body": "明日停电"}),
            ))
            .await,
        );
    }
    h.create(&TestHerald::notification("无关", json!({"all": true}), json!({"draft": true}))).await;
    let mut seen = Vec::new();
    let mut query = "q=停电&limit=3".to_string();
    loop {
        let page = list(&h, &query).await;
        assert_eq!((page.status, page.body["total"].clone()), (StatusCode::OK, json!(8)), "{}", page.body);
        seen.extend(ids(&page));
        let Some(next) = page.body["next_cursor"].as_str() else { break };
        query = format!("q=停电&limit=3&cursor={next}");
    }
    in_title.reverse();
    in_body.reverse();
    assert_eq!(seen, [in_title, in_body].concat(), "relevance, then newest first; no repeat, no gap");
    h.stop().await;
}

#[tokio::test]
async fn bad_parameters_name_the_field() {
    let h = TestHerald::spawn().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=done", "status"),
        ("category=promo", "category"),
        ("receiver_kind=driver", "receiver_kind"),
        ("city=a%20b", "city"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("cursor=nope", "cursor"),
        ("cursor=rzz.1.x", "cursor"),
        ("cursor=r40500000", "cursor"),
    ] {
        let r = list(&h, query).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {:?}", r.body);
        assert_eq!(r.field(), Some(field), "{query}: {:?}", r.body);
    }
    let long = format!("q={}", "x".repeat(101));
    assert_eq!(list(&h, &long).await.field(), Some("q"));
    let anonymous = h.call(reqwest::Method::GET, "/admin/v1/notifications", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let app = h.app_token("rider", "r1");
    assert_eq!(h.app_get(&app, "/admin/v1/notifications").await.status, StatusCode::FORBIDDEN);
    let blank = list(&h, "q=%20").await;
    assert_eq!((blank.status, blank.body["total"].clone()), (StatusCode::OK, json!(0)), "a blank q is no filter");
    h.stop().await;
}

/// A last page that is exactly full has no `next_cursor`: nothing follows it.
#[tokio::test]
async fn an_exactly_full_last_page_has_no_next_cursor() {
    let h = TestHerald::spawn().await;
    for i in 0..4 {
        h.create(&TestHerald::notification(&format!("n{i}"), json!({"all": true}), json!({"draft": true}))).await;
    }
    let first = list(&h, "limit=2").await;
    let cursor = first.body["next_cursor"].as_str().expect("a second page follows").to_string();
    let last = list(&h, &format!("limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&last).len(), 2, "{}", last.body);
    assert_eq!(last.body["next_cursor"], json!(null), "nothing follows the last page: {}", last.body);
    let all = list(&h, "limit=4").await;
    assert_eq!((ids(&all).len(), all.body["next_cursor"].clone()), (4, json!(null)), "{}", all.body);
    h.stop().await;
}
