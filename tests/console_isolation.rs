//! The console's queries (admin search, audience preview) run on connections of their own, few and
//! each statement time-limited: whatever the console asks, app reads and `/readyz` keep answering.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const RIDERS: usize = 100_000;

/// A Herald holding `RIDERS` riders over 50 cities, one of whom has a message in their inbox.
async fn herald_with_riders(configure: impl FnOnce(&mut herald::startup::Settings)) -> (TestHerald, String) {
    let h = TestHerald::spawn_with(configure).await;
    let cities: Vec<String> = (0..50).map(|c| format!("city{c:02}")).collect();
    let cities: Vec<&str> = cities.iter().map(String::as_str).collect();
    for chunk in (0..RIDERS).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let groups = [format!("g{}", i % 7), format!("g{}", 7 + i % 11), format!("g{}", 18 + i % 13)];
                json!({"kind": "rider", "id": format!("r{i:06}"), "city": cities[i % cities.len()], "groups": groups})
            })
            .collect();
        let r = h.admin_post("/admin/v1/receivers/batch", &json!(batch)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let include = json!({"include": ["r000007"]});
    h.create(&TestHerald::notification("for one rider", include, json!({}))).await;
    let rider = h.app_token("rider", "r000007");
    // Waited for in the inbox, not on the notification's page: that is a console read, which a
    // limit of a millisecond may stop (a server's statement clock counts its whole round).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while h.inbox_ids(&rider).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the message never reached r000007");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (h, rider)
}

/// A preview that reads every rider and their groups: each city's count of riders in any of 31 groups.
fn heavy_preview() -> Value {
    let groups: Vec<String> = (0..31).map(|g| format!("g{g}")).collect();
    json!({"receiver_kind": "rider", "audience": {"groups": groups}})
}

#[tokio::test]
async fn a_console_query_past_its_time_limit_answers_503_and_app_reads_go_on() {
    let (h, rider) = herald_with_riders(|s| s.console.statement_timeout = Duration::from_millis(1)).await;

    let preview = h.admin_post("/admin/v1/audience/preview", &heavy_preview()).await;
    assert_eq!(preview.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", preview.body);
    assert_eq!(preview.code(), Some("console_query_timeout"), "{:?}", preview.body);
    assert!(
        preview.body["error"]["message"].as_str().unwrap().contains("HERALD_CONSOLE_STATEMENT_TIMEOUT"),
        "names the limit: {:?}",
        preview.body
    );

    assert_eq!(h.inbox_ids(&rider).await.len(), 1, "the rider's inbox answers");
    let ready = h.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    h.stop().await;
}

/// Console queries beyond the console's connections wait their turn (up to the time limit): they
/// never take a connection the apps read with. An inbox read made while eight full-directory
/// previews are queued on one console connection answers while most of them still wait: one
/// queued behind them would come after all eight. (Not "before the first": on a loaded machine
/// the first preview may finish while the read is on its way.)
#[tokio::test]
async fn app_reads_answer_while_the_console_is_saturated() {
    let (h, rider) = herald_with_riders(|s| s.console.connections = 1).await;

    let previews: Vec<_> = (0..8)
        .map(|_| {
            let (client, base, admin) = (h.client.clone(), h.base.clone(), h.admin.clone());
            tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/admin/v1/audience/preview"))
                    .bearer_auth(admin)
                    .json(&heavy_preview())
                    .send()
                    .await
                    .expect("preview sent");
                r.status()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let inbox = h.app_get(&rider, "/app/v1/inbox").await;
    let count = h.app_get(&rider, "/app/v1/inbox/unread-count").await;
    let finished_first = previews.iter().filter(|p| p.is_finished()).count();
    assert_eq!((inbox.status, count.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(inbox.body["items"].as_array().map(Vec::len), Some(1), "{:?}", inbox.body);
    assert!(
        finished_first < previews.len() / 2,
        "the inbox read waited behind the console's queue: {finished_first} done"
    );

    for p in previews {
        assert_eq!(p.await.unwrap(), StatusCode::OK, "every queued preview is answered in turn");
    }
    h.stop().await;
}

/// More console queries than can wait: those that would wait past the limit (here 50 ms, a third of
/// one preview) are told the console is busy, and nothing else is.
#[tokio::test]
async fn console_queries_that_cannot_get_a_connection_in_time_answer_503_console_busy() {
    let (h, rider) = herald_with_riders(|s| {
        s.console.connections = 1;
        s.console.wait = Duration::from_millis(50);
    })
    .await;

    let preview = heavy_preview();
    let previews: Vec<_> = (0..8).map(|_| h.admin_post("/admin/v1/audience/preview", &preview)).collect();
    let replies = futures::future::join_all(previews).await;
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!busy.is_empty(), "eight previews at once on one connection with no wait: some are refused");
    assert!(busy.iter().all(|r| r.code() == Some("console_busy")), "{busy:?}");
    assert!(replies.iter().all(|r| r.status == StatusCode::OK || r.code() == Some("console_busy")));
    assert_eq!(h.inbox_ids(&rider).await.len(), 1);
    h.stop().await;
}
