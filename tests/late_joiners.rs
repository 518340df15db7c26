//! Receivers who join, move city or change groups after a broadcast started get every still-valid
//! broadcast they now match, and the counts stay exact (`sent == matched`, in total and per city).

mod common;

use std::time::{Duration, Instant};

use common::{TestHerald, city};
use herald_domain::NotificationId;
use serde_json::json;

/// Pages written for a notification so far (every city's), straight from the ledger.
async fn pages(t: &TestHerald, id: &str) -> u32 {
    let progress = t.ports().ledger.progress(&NotificationId::parse("", id).unwrap()).await.unwrap();
    progress.iter().map(|p| p.pages_published).sum()
}

#[tokio::test]
async fn a_receiver_created_after_a_broadcast_was_sent_gets_it_and_is_counted() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "a1", "sh", &[]), ("rider", "a2", "sh", &[])]).await;
    let (id, _) = t.send_and_wait(&TestHerald::notification("for all", json!({"all": true}), json!({}))).await;

    t.receivers(&[("rider", "n1", "bj", &[])]).await;
    let v = t.settled(&id, 3).await;
    assert_eq!(v["status"], "sent", "a sent notification stays sent: {v}");
    assert_eq!((city(&v, "bj")["matched"].clone(), city(&v, "bj")["sent"].clone()), (json!(1), json!(1)), "{v}");
    assert!(t.inbox_ids(&t.app_token("rider", "n1")).await.contains(&id));

    let before = pages(&t, &id).await;
    t.receivers(&[("rider", "n1", "bj", &[]), ("rider", "a1", "sh", &[])]).await;
    assert_eq!(pages(&t, &id).await, before, "re-upserting unchanged receivers writes no page");
    t.settled(&id, 3).await;
    t.stop().await;
}

#[tokio::test]
async fn a_receiver_moving_into_a_targeted_city_or_joining_a_group_gets_it() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "b1", "bj", &[]), ("rider", "m1", "sh", &[]), ("rider", "g1", "sh", &[])]).await;
    let (in_bj, _) = t.send_and_wait(&TestHerald::notification("bj only", json!({"cities": ["bj"]}), json!({}))).await;
    let (vip, v) = t.send_and_wait(&TestHerald::notification("vip only", json!({"groups": ["vip"]}), json!({}))).await;
    assert_eq!(v["stats"]["matched"], json!(0), "nobody was vip: {v}");

    t.receivers(&[("rider", "m1", "bj", &[])]).await;
    let v = t.settled(&in_bj, 2).await;
    assert_eq!(city(&v, "bj")["sent"], json!(2), "{v}");
    assert!(t.inbox_ids(&t.app_token("rider", "m1")).await.contains(&in_bj));

    t.receivers(&[("rider", "g1", "sh", &["vip"])]).await;
    t.settled(&vip, 1).await;
    let g1 = t.app_token("rider", "g1");
    assert!(t.inbox_ids(&g1).await.contains(&vip));
    assert!(!t.inbox_ids(&g1).await.contains(&in_bj), "g1 is not in bj");

    // Leaving the group keeps what they already got; nothing moves.
    let before = pages(&t, &vip).await;
    t.receivers(&[("rider", "g1", "sh", &[])]).await;
    assert_eq!(pages(&t, &vip).await, before);
    assert!(t.inbox_ids(&g1).await.contains(&vip));
    t.settled(&vip, 1).await;
    t.stop().await;
}

#[tokio::test]
async fn expired_revoked_and_include_list_notifications_are_not_delivered_late() {
    let t = TestHerald::spawn().await;
    t.receivers(&[("rider", "x1", "sh", &[])]).await;
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let extra = json!({"valid_until": until.to_rfc3339()});
    let (expired, _) = t.send_and_wait(&TestHerald::notification("expiring", json!({"all": true}), extra)).await;
    let (revoked, _) = t.send_and_wait(&TestHerald::notification("revoked", json!({"all": true}), json!({}))).await;
    let r = t.admin_post(&format!("/admin/v1/notifications/{revoked}/revoke"), &json!({})).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let (direct, _) = t.send_and_wait(&TestHerald::notification("for x1", json!({"include": ["x1"]}), json!({}))).await;
    let (valid, _) = t.send_and_wait(&TestHerald::notification("valid", json!({"all": true}), json!({}))).await;
    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;

    let ids = [&expired, &revoked, &direct, &valid];
    let mut before = Vec::new();
    for id in ids {
        before.push(pages(&t, id).await);
    }
    // A new receiver, and x1 moving city: both match all four audiences as far as city goes.
    t.receivers(&[("rider", "y1", "sh", &[]), ("rider", "x1", "bj", &[])]).await;
    for (id, pages_before) in ids.iter().zip(&before).take(3) {
        assert_eq!(pages(&t, id).await, *pages_before, "no late page for {id}");
    }
    assert!(pages(&t, &valid).await > before[3], "the valid broadcast is paged to them");
    let v = t.settled(&valid, 2).await;
    assert_eq!((city(&v, "sh")["sent"].clone(), city(&v, "bj")["sent"].clone()), (json!(2), json!(0)), "{v}");
    let inbox = t.inbox_ids(&t.app_token("rider", "y1")).await;
    assert_eq!(inbox, vec![valid.clone()]);
    let r = t.notification_view(&revoked).await;
    assert_eq!((r["status"].clone(), r["stats"]["sent"].clone()), (json!("revoked"), json!(1)), "{r}");
    t.stop().await;
}

#[tokio::test]
async fn a_receiver_joining_behind_the_cursor_of_a_send_in_progress_gets_it() {
    // b's 4 pages take about a second
    let t = TestHerald::spawn_with(|settings| settings.scheduler.max_pages_per_second = Some(4)).await;
    t.riders("r", 2000, &["b"]).await;
    let id = t.create(&TestHerald::notification("in progress", json!({"all": true}), json!({}))).await;
    let nid = NotificationId::parse("", &id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.ports().ledger.progress(&nid).await.unwrap().iter().all(|p| p.pages_published == 0) {
        assert!(Instant::now() < deadline, "b never paged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Behind b's cursor (r000000 < r000000a < r000001), and in a city the send has no task for.
    t.receivers(&[("rider", "r000000a", "b", &[]), ("rider", "z1", "c", &[])]).await;
    let v = t.settled(&id, 2002).await;
    assert_eq!((city(&v, "b")["sent"].clone(), city(&v, "c")["sent"].clone()), (json!(2001), json!(1)), "{v}");
    t.stop().await;
}
