//! Sends under changing conditions: receivers moving mid-send, roles starting in any order.

mod common;

use std::time::{Duration, Instant};

use common::{TestHerald, TestServers, test_settings};
use herald::startup::{Roles, Settings, open_ports, start, start_with};
use serde_json::json;

fn settings(dir: &std::path::Path, servers: &TestServers, pages_per_second: Option<u32>) -> Settings {
    let mut s = test_settings(dir, servers);
    s.scheduler.tick = Duration::from_millis(50);
    s.scheduler.max_pages_per_second = pages_per_second;
    s
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_receiver_moving_city_mid_send_gets_it_once_and_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    // Paced at 1 page/s: `a` pages at 0 s, then `b` at 1, 2 (up to r0999), 3 s (from r1005 on).
    let running = start(&settings(dir.path(), &servers, Some(1)), Roles::ALL).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    // r0000..r1999: r1000..r1009 live in `a`, everyone else in `b` (4 pages there).
    let batch: Vec<_> = (0..2000)
        .map(|i| json!({"kind": "rider", "id": format!("r{i:04}"), "city": if (1000..1010).contains(&i) { "a" } else { "b" }}))
        .collect();
    assert!(t.admin_post("/admin/v1/receivers/batch", &json!(batch)).await.status.is_success());
    let id = t.create(&TestHerald::notification("move", json!({"all": true}), json!({}))).await;
    let id = herald_domain::NotificationId::parse("", &id).unwrap();

    // Once `a` has paged r1005 (the ledger says so; its delivery may come later, in either order),
    // and before `b` pages past r0999, r1005 moves to `b`: `b` pages it again. Waiting on the ledger
    // rather than on `a`'s delivery keeps a broker's delivery latency out of the window.
    let city = |name: &'static str| {
        let ledger = running.ports.ledger.clone();
        let id = id.clone();
        async move { ledger.progress(&id).await.unwrap().into_iter().find(|p| p.city.as_str() == name) }
    };
    until("city a has paged", async || city("a").await.is_some_and(|a| a.pages_published == 1)).await;
    let b = city("b").await;
    assert!(
        b.as_ref().is_none_or(|b| b.pages_published <= 2),
        "b paged past r0999 before the move; the test proves nothing: {b:?}"
    );
    t.receivers(&[("rider", "r1005", "b", &[])]).await;

    let v = t.wait_status(id.as_str(), "sent").await;
    running.stop().await.unwrap();
    assert_eq!(v["stats"]["sent"], json!(2000), "{v}");
    assert_eq!(v["stats"]["matched"], json!(2000), "sent == matched, the mover counted once: {v}");
    for c in v["cities"].as_array().unwrap() {
        assert_eq!(c["matched"], c["sent"], "{c}");
    }
}

#[tokio::test]
async fn pages_wait_for_a_consumer_that_starts_after_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let s = settings(dir.path(), &servers, None);
    let ports = open_ports(&s).await.unwrap();
    let api_and_scheduler =
        start_with(&s, Roles { api: true, scheduler: true, consumer: false }, ports.clone()).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", api_and_scheduler.addr.unwrap()));
    t.riders("late", 1200, &["sh", "bj"]).await;
    let id = t.create(&TestHerald::notification("late consumer", json!({"all": true}), json!({}))).await;
    until("every page is published", async || {
        ports.ledger.outbox_len().await.unwrap() == 0
            && ports.queue.lag(&herald_consumers::subscription()).await.unwrap() == 4
    })
    .await;
    assert_eq!(t.notification_view(&id).await["status"], "sending");

    let consumer = start_with(&s, Roles { api: false, scheduler: false, consumer: true }, ports).await.unwrap();
    let v = t.wait_status(&id, "sent").await;
    assert_eq!((v["stats"]["matched"].clone(), v["stats"]["sent"].clone()), (json!(1200), json!(1200)));
    consumer.stop().await.unwrap();
    api_and_scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_point_to_point_message_overtakes_a_paced_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let running = start(&settings(dir.path(), &servers, Some(5)), Roles::ALL).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    t.riders("p", 20_000, &["sh", "bj", "gz", "sz"]).await;
    let broadcast = t.create(&TestHerald::notification("nationwide", json!({"all": true}), json!({}))).await;
    until("the broadcast is sending", async || t.notification_view(&broadcast).await["stats"]["sent"] != 0).await;

    let direct = t.create(&TestHerald::notification("for you", json!({"include": ["p000001"]}), json!({}))).await;
    t.wait_status(&direct, "sent").await;
    assert_eq!(
        t.notification_view(&broadcast).await["status"],
        "sending",
        "the direct message did not wait for the 40-page broadcast paced at 5 pages/s"
    );
    let inbox = t.inbox_ids(&t.app_token("rider", "p000001")).await;
    assert!(inbox.contains(&direct));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_later_broadcast_progresses_while_earlier_ones_hold_more_tasks_than_a_round_reads() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    // Paced at 2 pages/s, the first broadcast alone pages for 8 s: room for the second to be planned
    // and delivered on a loaded machine (at 20 pages/s CI once saw the first finish first).
    let mut s = settings(dir.path(), &servers, Some(2));
    s.scheduler.tasks_per_round = 2; // as if 1,000 tasks of earlier sends were open
    let running = start(&s, Roles::ALL).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    // Riders in cities a..d, 4 pages each: the first broadcast's 4 tasks outnumber a round.
    t.riders("w", 8_000, &["a", "b", "c", "d"]).await;
    let first = t.create(&TestHerald::notification("first", json!({"all": true}), json!({}))).await;
    until("the first broadcast is sending", async || t.notification_view(&first).await["stats"]["sent"] != 0).await;
    let second = t.create(&TestHerald::notification("second", json!({"all": true}), json!({}))).await;
    until("the second broadcast delivers something", async || t.notification_view(&second).await["stats"]["sent"] != 0)
        .await;
    let first_id = herald_domain::NotificationId::parse("", &first).unwrap();
    let open = running.ports.ledger.open_tasks(false, None, 100).await.unwrap();
    assert!(
        open.iter().any(|task| task.notification_id == first_id),
        "the second got pages only after the first finished paging: rounds do not rotate"
    );
    running.stop().await.unwrap();
}

/// `/metrics` as text.
async fn metrics(t: &TestHerald) -> String {
    t.client.get(format!("{}/metrics", t.base)).send().await.unwrap().text().await.unwrap()
}

/// Runs one statement on Herald's SQL truth by hand, as an outside tool or an old bug could: how
/// these tests plant a row that does not parse, a real cause of failure for one send only.
async fn by_hand(t: &TestHerald, sql: &'static str) {
    let db = t.servers.sql_by_hand(t.data_dir.path()).await;
    db.execute(sql).await;
    db.close().await;
}

/// The history entries of a notification that tell of a failure.
async fn failures(t: &TestHerald, id: &str) -> Vec<serde_json::Value> {
    let history = t.admin_get(&format!("/admin/v1/notifications/{id}/history")).await.body;
    let items = history["items"].as_array().unwrap();
    items.iter().filter(|h| h["detail"].as_str().unwrap().contains("failed")).cloned().collect()
}

/// Whether `herald_send_failures_total` counted a failure at `stage` (its series exist from the start, at 0).
fn counted(metrics: &str, stage: &str) -> bool {
    let series = format!("herald_send_failures_total{{stage=\"{stage}\"}} ");
    metrics.lines().filter_map(|l| l.strip_prefix(&series)).any(|v| v.trim().parse::<f64>().is_ok_and(|n| n > 0.0))
}

#[tokio::test]
async fn a_notification_that_cannot_be_planned_holds_back_no_later_one_and_says_why() {
    let t = TestHerald::spawn().await;
    t.riders("s", 10, &["sh"]).await;
    // Planning a notification that excludes this receiver fails, for that notification only.
    by_hand(
        &t,
        "INSERT INTO receivers (kind, id, city, `groups`, updated_at) VALUES ('rider', 'broken', 'no city', '', 0)",
    )
    .await;
    let failing = t
        .create(&TestHerald::notification("blocked", json!({"cities": ["sh"], "exclude": ["broken"]}), json!({})))
        .await;
    let (_, later) = t.send_and_wait(&TestHerald::notification("later", json!({"cities": ["sh"]}), json!({}))).await;
    assert_eq!((later["stats"]["matched"].clone(), later["stats"]["sent"].clone()), (json!(10), json!(10)));

    let seen = failures(&t, &failing).await;
    assert_eq!(seen.len(), 1, "the first failure of the streak is in the history: {seen:?}");
    assert_eq!(seen[0]["status"], "scheduled", "the status is unchanged: {seen:?}");
    assert!(seen[0]["detail"].as_str().unwrap().contains("does not parse"), "and it says why: {seen:?}");
    let text = metrics(&t).await;
    assert!(counted(&text, "plan"), "the failure is counted:\n{text}");

    // Repaired, the failing one is retried and goes out; its streak was recorded once.
    t.receivers(&[("rider", "broken", "bj", &[])]).await;
    let v = t.wait_status(&failing, "sent").await;
    assert_eq!((v["stats"]["matched"].clone(), v["stats"]["sent"].clone()), (json!(10), json!(10)), "{v}");
    assert_eq!(failures(&t, &failing).await.len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn a_city_that_cannot_be_paged_holds_back_no_other_city_or_send() {
    let t = TestHerald::spawn().await;
    t.riders("p", 20, &["sh", "bj"]).await;
    // An id that does not parse in bj: paging bj fails, for that task only.
    by_hand(&t, "INSERT INTO receivers (kind, id, city, `groups`, updated_at) VALUES ('rider', 'no id', 'bj', '', 0)")
        .await;
    let stuck = t.create(&TestHerald::notification("both", json!({"cities": ["bj", "sh"]}), json!({}))).await;
    let (_, later) = t.send_and_wait(&TestHerald::notification("later", json!({"cities": ["sh"]}), json!({}))).await;
    assert_eq!(later["stats"]["sent"], json!(10), "{later}");

    let seen = failures(&t, &stuck).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "sending", "{seen:?}");
    assert!(seen[0]["detail"].as_str().unwrap().starts_with("paging bj failed"), "{seen:?}");
    let text = metrics(&t).await;
    assert!(counted(&text, "page"), "the failure is counted:\n{text}");

    by_hand(&t, "DELETE FROM receivers WHERE id = 'no id'").await;
    let v = t.wait_status(&stuck, "sent").await;
    assert_eq!((v["stats"]["matched"].clone(), v["stats"]["sent"].clone()), (json!(20), json!(20)), "{v}");
    t.stop().await;
}
