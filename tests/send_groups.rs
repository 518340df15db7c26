//! Audiences that name as many groups as the domain allows (10,000) preview and send like small ones.

mod common;

use common::TestHerald;
use herald_domain::audience::MAX_LIST_LEN;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn ten_thousand_groups_preview_and_send_to_exactly_who_they_match() {
    let t = TestHerald::spawn().await;
    // r0000..r1999 over two cities; the even ones are in a listed group, the odd ones in another.
    let batch: Vec<Value> = (0..2000)
        .map(|i| {
            let group = if i % 2 == 0 { format!("g{:05}", i * 3 % MAX_LIST_LEN) } else { format!("other{i}") };
            let city = if i < 1000 { "sh" } else { "bj" };
            json!({"kind": "rider", "id": format!("r{i:04}"), "city": city, "groups": [group]})
        })
        .collect();
    assert_eq!(t.admin_post("/admin/v1/receivers/batch", &json!(batch)).await.status, StatusCode::OK);
    let groups: Vec<String> = (0..MAX_LIST_LEN).map(|g| format!("g{g:05}")).collect();
    let audience = json!({"groups": groups});

    let preview =
        t.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": audience})).await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(preview.body["matched"], json!(1000), "{}", preview.body);
    assert_eq!(
        preview.body["cities"],
        json!([{"city": "bj", "matched": 500, "opted_out": 0}, {"city": "sh", "matched": 500, "opted_out": 0}]),
        "{}",
        preview.body
    );

    let (id, view) = t.send_and_wait(&TestHerald::notification("many groups", audience, json!({}))).await;
    assert_eq!(view["stats"]["matched"], json!(1000), "{view}");
    assert_eq!(view["stats"]["sent"], json!(1000), "{view}");
    assert!(t.inbox_ids(&t.app_token("rider", "r0002")).await.contains(&id), "an even rider got it");
    assert!(!t.inbox_ids(&t.app_token("rider", "r0003")).await.contains(&id), "an odd one did not");
    t.stop().await;
}
