//! The console's receiver directory: look a receiver up, page through them, delete one with its
//! inbox and read state while every notification's stats stay what was delivered and read.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_receiver_is_looked_up_and_receivers_are_paged_by_id() {
    let h = TestHerald::spawn().await;
    h.receivers(&[
        ("rider", "r3", "shanghai", &["vip", "new"]),
        ("rider", "r1", "beijing", &[]),
        ("rider", "r2", "shanghai", &[]),
        ("merchant", "r1", "shanghai", &[]),
    ])
    .await;

    let one = h.call(Method::GET, "/admin/v1/receivers/rider/r3", Some(&h.viewer), None).await;
    assert_eq!(one.status, StatusCode::OK, "a viewer may look: {:?}", one.body);
    assert_eq!(
        one.body,
        json!({"kind": "rider", "id": "r3", "city": "shanghai", "groups": ["new", "vip"], "attributes": {}})
    );
    let missing = h.admin_get("/admin/v1/receivers/rider/nobody").await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, Some("not_found")), "{:?}", missing.body);
    let bad = h.admin_get("/admin/v1/receivers/driver/r1").await;
    assert_eq!((bad.status, bad.field()), (StatusCode::UNPROCESSABLE_ENTITY, Some("kind")), "{:?}", bad.body);

    let first = h.admin_get("/admin/v1/receivers?kind=rider&limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let ids = |r: &Reply| r.body["items"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), [json!("r1"), json!("r2")]);
    let cursor = first.body["next_cursor"].as_str().expect("a page follows").to_string();
    let rest = h.admin_get(&format!("/admin/v1/receivers?kind=rider&limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest), [json!("r3")]);
    assert_eq!(rest.body["next_cursor"], json!(null), "nothing follows the last page");
    let shanghai = h.admin_get("/admin/v1/receivers?kind=rider&city=shanghai").await;
    assert_eq!(ids(&shanghai), [json!("r2"), json!("r3")]);

    let every_kind = h.admin_get("/admin/v1/receivers?city=shanghai").await;
    let keys: Vec<String> = every_kind.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}:{}", i["kind"].as_str().unwrap(), i["id"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, ["merchant:r1", "rider:r2", "rider:r3"], "every kind when none is asked");
    let bad_kind = h.admin_get("/admin/v1/receivers?kind=driver").await;
    assert_eq!((bad_kind.status, bad_kind.field()), (StatusCode::UNPROCESSABLE_ENTITY, Some("kind")));
    for forged in ["r1", "driver:r1", "rider:%00", "rider:"] {
        let r = h.admin_get(&format!("/admin/v1/receivers?cursor={forged}")).await;
        assert_eq!((r.status, r.field()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cursor")), "{forged}: {:?}", r.body);
    }
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_receiver_removes_its_inbox_and_read_state_and_the_stats_keep_history() {
    let h = TestHerald::spawn().await;
    h.receivers(&[("rider", "gone", "shanghai", &["vip"]), ("rider", "stays", "shanghai", &["vip"])]).await;
    let (id, _) = h.send_and_wait(&TestHerald::notification("hello", json!({"all": true}), json!({}))).await;
    let gone = h.app_token("rider", "gone");
    assert_eq!(h.app_post(&gone, &format!("/app/v1/inbox/{id}/read")).await.status, StatusCode::NO_CONTENT);

    let viewer = h.call(Method::DELETE, "/admin/v1/receivers/rider/gone", Some(&h.viewer), None).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN, "a viewer changes nothing");
    let deleted = h.call(Method::DELETE, "/admin/v1/receivers/rider/gone", Some(&h.admin), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let again = h.call(Method::DELETE, "/admin/v1/receivers/rider/gone", Some(&h.admin), None).await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, Some("not_found")), "nothing left to delete");

    assert_eq!(h.admin_get("/admin/v1/receivers/rider/gone").await.status, StatusCode::NOT_FOUND);
    assert!(h.inbox_ids(&gone).await.is_empty(), "its inbox went with it");
    let count = h.app_get(&gone, "/app/v1/inbox/unread-count").await;
    assert_eq!(count.body["unread"], json!(0));
    let sync = h.app_get(&gone, "/app/v1/inbox/sync").await;
    assert_eq!(sync.body["items"], json!([]), "nothing to sync: {:?}", sync.body);
    assert_eq!(h.inbox_ids(&h.app_token("rider", "stays")).await, vec![id.clone()], "the other keeps theirs");

    let stats = &h.notification_view(&id).await["stats"];
    assert_eq!((stats["sent"].clone(), stats["read"].clone()), (json!(2), json!(1)), "stats are history: {stats}");
    let preview = h
        .admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"groups": ["vip"]}}))
        .await;
    assert_eq!(preview.body["matched"], json!(1), "no audience reaches it any more: {:?}", preview.body);
    let (later, view) =
        h.send_and_wait(&TestHerald::notification("later", json!({"groups": ["vip"]}), json!({}))).await;
    assert_eq!(view["stats"]["sent"], json!(1), "{view}");
    assert!(!h.inbox_ids(&gone).await.contains(&later));
    h.stop().await;
}
