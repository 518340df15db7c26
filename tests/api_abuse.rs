//! Herald faces the internet through its app API: sockets that never finish, bodies that trickle,
//! bursts of garbage. None of it may take the API down for everyone else.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to close a socket before calling it a hang.
const HANG: Duration = Duration::from_secs(20);

async fn herald_with_short_deadlines() -> TestHerald {
    TestHerald::spawn_with(|s| {
        s.http.header_timeout = Duration::from_secs(2);
        s.http.request_timeout = Duration::from_secs(2);
    })
    .await
}

fn addr(h: &TestHerald) -> String {
    h.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the socket; returns what it sent.
async fn until_closed(socket: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(HANG, socket.read_to_end(&mut got)).await.expect("the server never closed the socket").ok();
    String::from_utf8_lossy(&got).into_owned()
}

/// A thousand sockets that never finish their headers: `/healthz` and a rider's inbox still answer
/// while they are held, and the server closes each of them once its header deadline passes.
#[tokio::test]
async fn a_slowloris_of_a_thousand_sockets_starves_nobody() {
    let h = herald_with_short_deadlines().await;
    h.receivers(&[("rider", "s1", "shanghai", &[])]).await;
    let (id, _) = h.send_and_wait(&TestHerald::notification("hello", json!({"all": true}), json!({}))).await;
    let rider = h.app_token("rider", "s1");

    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut socket = TcpStream::connect(addr(&h)).await.expect("connect");
        socket.write_all(b"GET /app/v1/inbox HTTP/1.1\r\nHost: herald\r\nX-Slow: ").await.unwrap();
        slow.push(socket);
    }
    let health = h.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{:?}", health.body);
    assert_eq!(h.inbox_ids(&rider).await, vec![id], "a rider reads while the slow sockets are held");

    for socket in slow.iter_mut().take(20) {
        until_closed(socket).await;
    }
    h.stop().await;
}

/// A connection left idle after a response is closed too (keep-alive does not keep it for ever).
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let h = herald_with_short_deadlines().await;
    let mut socket = TcpStream::connect(addr(&h)).await.unwrap();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n").await.unwrap();
    let answered = until_closed(&mut socket).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    h.stop().await;
}

/// A body that trickles in slower than the request deadline is answered 408 in the error shape,
/// and nothing of it is written.
#[tokio::test]
async fn a_trickling_body_is_408_and_writes_nothing() {
    let h = herald_with_short_deadlines().await;
    let mut socket = TcpStream::connect(addr(&h)).await.unwrap();
    let head = format!(
        "POST /admin/v1/receivers/batch HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n[{{\"kind\":",
        h.admin
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let answered = until_closed(&mut socket).await;
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(answered.contains(r#""code":"request_timeout""#), "{answered}");
    let preview =
        h.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": {"all": true}})).await;
    assert_eq!(preview.body["matched"], 0, "{}", preview.body);
    h.stop().await;
}

/// A burst of garbage (not HTTP, broken HTTP, huge headers) gets refused or closed, and the API
/// goes on answering.
#[tokio::test]
async fn a_burst_of_garbage_leaves_the_api_answering() {
    let h = herald_with_short_deadlines().await;
    let huge_header = format!("GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    let garbage: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\xff\xfe garbage\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST /admin/v1/notifications HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        huge_header.into_bytes(),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let (target, bytes) = (addr(&h), garbage[i % garbage.len()].clone());
        tasks.spawn(async move {
            let mut socket = TcpStream::connect(target).await.unwrap();
            let _ = socket.write_all(&bytes).await;
            until_closed(&mut socket).await
        });
    }
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "garbage got {answer:.80}");
    }
    let health = h.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    h.stop().await;
}

/// Made-up methods, paths and statuses cannot grow `/metrics`: every label comes from a fixed set.
#[tokio::test]
async fn requests_cannot_mint_metric_series() {
    let h = TestHerald::spawn().await;
    let series =
        |text: &str| text.lines().filter(|l| l.starts_with("herald_http_request_duration_seconds_count")).count();
    let before = reqwest::get(format!("{}/metrics", h.base)).await.unwrap().text().await.unwrap();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        let _ = h.client.request(method, format!("{}/nowhere/{i}", h.base)).send().await.unwrap();
        let _ = h.client.get(format!("{}/admin/v1/notifications/{i:032x}", h.base)).send().await.unwrap();
    }
    let after = reqwest::get(format!("{}/metrics", h.base)).await.unwrap().text().await.unwrap();
    assert!(
        series(&after) <= series(&before) + 4,
        "series grew from {} to {}:\n{after}",
        series(&before),
        series(&after)
    );
    assert!(after.lines().any(|l| l.contains(r#"method="other""#) && l.contains(r#"route="unmatched""#)), "{after}");
    assert!(after.lines().any(|l| l.contains(r#"status="4xx""#)), "statuses are classes: {after}");
    assert!(!after.contains("M17"), "a made-up method became a label");
    h.stop().await;
}
