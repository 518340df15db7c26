//! Inbox hints across API processes, on Redis pub/sub: two Heralds that share only their servers
//! (the SQL truth and one Redis, under one prefix) — the first runs every role, the second only
//! the API — and an app streaming `/app/v1/inbox/events` from one learns of a page the other's
//! consumer delivered, of a read made through the other, and of a revoke made there. Needs
//! `--features redis` and `HERALD_TEST_REDIS_URL`; unset, it says why it skips, except with
//! `CI=true`, where it fails.

mod common;

use std::time::Duration;

use common::*;
use herald::config::Origin;
use reqwest::StatusCode;
use serde_json::json;

const INBOX_EVENTS: &str = "/app/v1/inbox/events";
const SOON: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(600);

/// The Redis both Heralds share, and a prefix of this test's own.
fn shared_redis() -> Option<(String, String)> {
    let Some(url) = std::env::var("HERALD_TEST_REDIS_URL").ok().filter(|u| !u.trim().is_empty()) else {
        assert!(
            std::env::var("CI").ok().is_none_or(|ci| ci != "true"),
            "HERALD_TEST_REDIS_URL is unset and CI=true: a Redis is required"
        );
        eprintln!("skipped: HERALD_TEST_REDIS_URL is unset");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    Some((url, format!("herald-xproc:{nanos:x}:{}", std::process::id())))
}

/// Two Heralds on the same truth and the same Redis: `(every role, its second API, the second's
/// handle to stop)`.
async fn two_apis(url: &str, prefix: &str) -> (TestHerald, TestHerald, herald::startup::Running) {
    let on_redis = |s: &mut herald::startup::Settings| {
        s.servers.redis = Some((url.to_string(), Origin::Env("HERALD_TEST_REDIS_URL")));
        s.servers.redis_prefix = prefix.to_string();
        s.streams.max_age = Duration::from_secs(60);
    };
    let first = TestHerald::spawn_with(on_redis).await;
    first.receivers(&[("rider", "r1", "shanghai", &[]), ("rider", "r2", "shanghai", &[])]).await;
    let (running, second) = first.second_api_with(on_redis).await;
    (first, second, running)
}

async fn listening(h: &TestHerald, token: &str) -> EventStream {
    let mut stream = h.events(INBOX_EVENTS, token, None).await.expect("stream opens");
    assert_eq!(stream.next_within(SOON).await.expect("ready").event, "ready");
    stream
}

#[tokio::test]
async fn a_page_delivered_behind_one_api_hints_the_app_streaming_from_another() {
    let Some((url, prefix)) = shared_redis() else { return };
    let (first, second, running) = two_apis(&url, &prefix).await;
    let (r1, r2) = (first.app_token("rider", "r1"), first.app_token("rider", "r2"));
    let mut app = listening(&second, &r1).await;
    let mut other = listening(&second, &r2).await;

    first.send_and_wait(&TestHerald::notification("across", json!({"include": ["r1"]}), json!({}))).await;
    assert_eq!(app.next_within(SOON).await.expect("the first's delivery reaches the second's app").event, "hint");
    assert_eq!(second.inbox_ids(&r1).await.len(), 1, "and its fetch there finds the message");
    assert_eq!(other.next_within(QUIET).await, None, "r2's inbox did not change");

    running.stop().await.expect("second stops");
    first.stop().await;
    herald_redis::erase_prefix(&url, &prefix).expect("this test's keys erased");
}

#[tokio::test]
async fn a_read_or_a_revoke_through_one_api_hints_the_apps_on_the_other() {
    let Some((url, prefix)) = shared_redis() else { return };
    let (first, second, running) = two_apis(&url, &prefix).await;
    let (r1, r2) = (first.app_token("rider", "r1"), first.app_token("rider", "r2"));
    let (id, _) = first.send_and_wait(&TestHerald::notification("to all", json!({"all": true}), json!({}))).await;
    let mut phone = listening(&first, &r1).await;
    let mut tablet = listening(&second, &r1).await;

    assert_eq!(second.app_post(&r1, &format!("/app/v1/inbox/{id}/read")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.next_within(SOON).await.expect("a read on the second reaches the first").event, "hint");
    assert_eq!(tablet.next_within(SOON).await.expect("and the second's own").event, "hint");
    assert_eq!(phone.next_within(QUIET).await, None, "once");

    let mut elsewhere = listening(&second, &r2).await;
    let revoked = first.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK);
    for app in [&mut tablet, &mut elsewhere] {
        assert_eq!(app.next_within(SOON).await.expect("the revoke reaches every rider on the second").event, "hint");
    }
    assert!(second.inbox_ids(&r2).await.is_empty(), "the fetch there finds it gone");

    running.stop().await.expect("second stops");
    first.stop().await;
    herald_redis::erase_prefix(&url, &prefix).expect("this test's keys erased");
}
