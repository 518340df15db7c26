//! Live updates over server-sent events against a real Herald: the apps' inbox hints (a page
//! delivered, a read elsewhere), reconnection by `Last-Event-ID`, the per-token cap, heartbeats
//! that outlive the request deadline, and a notification's progress stream for the console.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const INBOX_EVENTS: &str = "/app/v1/inbox/events";
const SOON: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(600);

fn include(ids: &[&str]) -> Value {
    json!({"include": ids})
}

async fn with_riders(ids: &[&str], configure: impl FnOnce(&mut herald::startup::Settings)) -> TestHerald {
    let h = TestHerald::spawn_with(|s| {
        s.streams.max_age = Duration::from_secs(60);
        configure(s)
    })
    .await;
    let list: Vec<(&str, &str, &str, &[&str])> = ids.iter().map(|id| ("rider", *id, "shanghai", &[][..])).collect();
    h.receivers(&list).await;
    h
}

#[tokio::test]
async fn a_delivered_page_hints_the_connected_app_and_no_other() {
    let h = with_riders(&["r1", "r2"], |_| {}).await;
    let (r1, r2) = (h.app_token("rider", "r1"), h.app_token("rider", "r2"));
    let mut mine = h.events(INBOX_EVENTS, &r1, None).await.expect("stream opens");
    let mut other = h.events(INBOX_EVENTS, &r2, None).await.expect("stream opens");
    for stream in [&mut mine, &mut other] {
        let ready = stream.next_within(SOON).await.expect("ready first");
        assert_eq!(ready.event, "ready");
        assert!(ready.id.is_some(), "ready carries an id to reconnect from");
    }
    h.send_and_wait(&TestHerald::notification("for r1", include(&["r1"]), json!({}))).await;
    let hint = mine.next_within(SOON).await.expect("a hint after delivery");
    assert_eq!((hint.event.as_str(), hint.data.as_str()), ("hint", "{}"), "a hint, not the data");
    assert_eq!(h.inbox_ids(&r1).await.len(), 1, "the app then fetches what changed");
    assert_eq!(other.next_within(QUIET).await, None, "r2's inbox did not change");
    h.stop().await;
}

#[tokio::test]
async fn a_read_hints_the_receivers_other_devices() {
    let h = with_riders(&["r1"], |_| {}).await;
    let r1 = h.app_token("rider", "r1");
    let (id, _) = h.send_and_wait(&TestHerald::notification("read me", include(&["r1"]), json!({}))).await;
    let mut phone = h.events(INBOX_EVENTS, &r1, None).await.expect("stream opens");
    assert_eq!(phone.next_within(SOON).await.expect("ready").event, "ready");
    assert_eq!(h.app_post(&r1, &format!("/app/v1/inbox/{id}/read")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.next_within(SOON).await.expect("hint").event, "hint", "the unread count changed");
    assert_eq!(h.app_post(&r1, &format!("/app/v1/inbox/{id}/read")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.next_within(QUIET).await, None, "reading it again changes nothing");
    h.stop().await;
}

#[tokio::test]
async fn a_reconnection_with_last_event_id_learns_what_it_missed() {
    let h = with_riders(&["r1"], |_| {}).await;
    let r1 = h.app_token("rider", "r1");
    let mut first = h.events(INBOX_EVENTS, &r1, None).await.expect("stream opens");
    let seen = first.next_within(SOON).await.expect("ready").id.expect("id");
    drop(first);

    let mut back = h.events(INBOX_EVENTS, &r1, Some(&seen)).await.expect("stream opens");
    assert_eq!(back.next_within(SOON).await.expect("ready").event, "ready");
    assert_eq!(back.next_within(QUIET).await, None, "nothing happened while away");
    drop(back);

    h.send_and_wait(&TestHerald::notification("while away", include(&["r1"]), json!({}))).await;
    let mut back = h.events(INBOX_EVENTS, &r1, Some(&seen)).await.expect("stream opens");
    let ready = back.next_within(SOON).await.expect("ready");
    let missed = back.next_within(SOON).await.expect("the missed change is hinted at once");
    assert_eq!(missed.event, "hint");
    drop(back);

    let mut caught_up = h.events(INBOX_EVENTS, &r1, Some(&missed.id.expect("id"))).await.expect("opens");
    assert_eq!(caught_up.next_within(SOON).await.expect("ready").event, "ready");
    assert_eq!(caught_up.next_within(QUIET).await, None, "it had seen that change");
    let mut stranger = h.events(INBOX_EVENTS, &r1, Some("42-1")).await.expect("opens");
    stranger.next_within(SOON).await.expect("ready");
    assert_eq!(stranger.next_within(SOON).await.map(|e| e.event), Some("hint".into()), "an unknown id: fetch");
    assert_ne!(ready.id, None);
    h.stop().await;
}

#[tokio::test]
async fn a_token_holds_only_so_many_streams() {
    let h = with_riders(&["r1"], |s| {
        s.streams.per_token = 2;
        s.streams.heartbeat = Duration::from_millis(100);
    })
    .await;
    let r1 = h.app_token("rider", "r1");
    let a = h.events(INBOX_EVENTS, &r1, None).await.expect("first");
    let _b = h.events(INBOX_EVENTS, &r1, None).await.expect("second");
    let refused = h.events(INBOX_EVENTS, &r1, None).await.err().expect("third refused");
    assert_eq!((refused.status, refused.code()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_streams")));
    let admin = h.events(&format!("/admin/v1/notifications/{}/events", "0".repeat(32)), &h.admin, None).await;
    assert_eq!(admin.err().expect("unknown id").status, StatusCode::NOT_FOUND, "refused before taking a slot");
    let other = h.app_token("rider", "r2");
    assert!(h.events(INBOX_EVENTS, &other, None).await.is_ok(), "the cap is per token");

    drop(a);
    // The server notices the closed connection at its next heartbeat and frees the slot.
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        match h.events(INBOX_EVENTS, &r1, None).await {
            Ok(_) => break,
            Err(r) => assert!(tokio::time::Instant::now() < deadline, "slot never freed: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn streams_outlive_the_request_deadline_with_heartbeats_and_end_at_their_max_age() {
    let h = with_riders(&["r1"], |s| {
        s.http.request_timeout = Duration::from_millis(300);
        s.streams.heartbeat = Duration::from_millis(100);
        s.streams.max_age = Duration::from_secs(2);
    })
    .await;
    let r1 = h.app_token("rider", "r1");
    let mut stream = h.events(INBOX_EVENTS, &r1, None).await.expect("opens");
    assert_eq!(stream.next_within(SOON).await.expect("ready").event, "ready");
    assert_eq!(stream.next_within(Duration::from_millis(1200)).await, None);
    assert!(!stream.ended, "alive past the 300 ms request deadline");
    assert!(stream.comments >= 5, "heartbeats every 100 ms: {}", stream.comments);
    assert!(stream.ends_within(SOON).await, "ends at its max age, for the client to reconnect");
    h.stop().await;
}

#[tokio::test]
async fn the_console_watches_a_send_until_it_is_final() {
    let h = with_riders(&[], |_| {}).await;
    h.riders("w", 1_200, &["shanghai", "beijing"]).await;
    let id = h.create(&TestHerald::notification("watched", json!({"all": true}), json!({}))).await;
    let mut stream = h.events(&format!("/admin/v1/notifications/{id}/events"), &h.viewer, None).await.expect("opens");
    let mut last = None;
    while let Some(event) = stream.next_within(Duration::from_secs(60)).await {
        let view: Value = serde_json::from_str(&event.data).expect("JSON data");
        assert_eq!(view["id"], json!(id));
        assert!(event.id.is_some());
        last = Some((event.event, view));
    }
    assert!(stream.ended, "the stream ends once the notification is final");
    let (kind, view) = last.expect("events came");
    assert_eq!(kind, "done");
    assert_eq!(view["status"], "sent");
    assert_eq!((view["stats"]["sent"].clone(), view["stats"]["matched"].clone()), (json!(1_200), json!(1_200)));

    // Reconnecting to a final notification gets its last state and the end again.
    let mut again = h.events(&format!("/admin/v1/notifications/{id}/events"), &h.admin, None).await.expect("opens");
    assert_eq!(again.next_within(SOON).await.expect("done").event, "done");
    assert!(again.ends_within(SOON).await);
    h.stop().await;
}

/// Opens `token`'s inbox stream and takes its `ready`.
async fn listening(h: &TestHerald, token: &str) -> EventStream {
    let mut stream = h.events(INBOX_EVENTS, token, None).await.expect("stream opens");
    assert_eq!(stream.next_within(SOON).await.expect("ready").event, "ready");
    stream
}

#[tokio::test]
async fn a_revoke_hints_the_apps_of_the_include_list_it_was_sent_to() {
    let h = with_riders(&["r1", "r2"], |_| {}).await;
    let (r1, r2) = (h.app_token("rider", "r1"), h.app_token("rider", "r2"));
    let (id, _) = h.send_and_wait(&TestHerald::notification("to r1", include(&["r1"]), json!({}))).await;
    let (mut held, mut not_held) = (listening(&h, &r1).await, listening(&h, &r2).await);
    assert_eq!(h.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await.status, StatusCode::OK);
    assert_eq!(held.next_within(SOON).await.expect("a hint after the revoke").event, "hint");
    assert!(h.inbox_ids(&r1).await.is_empty(), "the fetch it prompts finds the message gone");
    assert_eq!(not_held.next_within(QUIET).await, None, "r2 was never sent it");
    h.stop().await;
}

#[tokio::test]
async fn a_revoked_broadcast_hints_every_app_of_its_kind_and_no_other() {
    let h = with_riders(&["r1", "r2"], |_| {}).await;
    h.receivers(&[("merchant", "m1", "shanghai", &[])]).await;
    let (r1, r2, m1) = (h.app_token("rider", "r1"), h.app_token("rider", "r2"), h.app_token("merchant", "m1"));
    let (id, _) = h.send_and_wait(&TestHerald::notification("to all riders", json!({"all": true}), json!({}))).await;
    let mut riders = [listening(&h, &r1).await, listening(&h, &r2).await];
    let mut merchant = listening(&h, &m1).await;
    assert_eq!(h.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await.status, StatusCode::OK);
    for rider in &mut riders {
        assert_eq!(rider.next_within(SOON).await.expect("every rider listening is hinted").event, "hint");
        assert_eq!(rider.next_within(QUIET).await, None, "one revoke, one hint");
    }
    assert_eq!(merchant.next_within(QUIET).await, None, "a rider broadcast is no merchant's");
    h.stop().await;
}

#[tokio::test]
async fn a_window_opening_and_closing_hints_the_apps_that_hold_it() {
    let h = with_riders(&["r1"], |_| {}).await;
    let r1 = h.app_token("rider", "r1");
    let mut app = listening(&h, &r1).await;
    let at = |s| (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339();
    let window = json!({"valid_from": at(3), "valid_until": at(6)});
    h.create(&TestHerald::notification("soon, briefly", include(&["r1"]), window)).await;
    // Each hint prompts a fetch: they see the message appear when its window opens (delivered
    // before, or at once if the delivery came late), then vanish when it closes.
    let mut shown = Vec::new();
    while !(shown.contains(&1) && shown.last() == Some(&0)) {
        let hint = app.next_within(SOON).await.expect("a hint for each change: delivered, opened, closed");
        assert_eq!(hint.event, "hint");
        let count = h.inbox_ids(&r1).await.len();
        if shown.last() != Some(&count) {
            shown.push(count);
        }
    }
    assert_eq!(app.next_within(QUIET).await, None, "nothing more changes");
    h.stop().await;
}
