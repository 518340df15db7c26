//! The contract's edges, against a real Herald: every rejection (path, query, body, headers) has
//! the JSON error shape naming the parameter at fault, and `/openapi.json` describes every route,
//! method and status the code answers.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Any request: raw path (sent as written), headers, optional raw body.
async fn send(th: &TestHerald, method: Method, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Reply {
    let mut req = th.client.request(method, format!("{}{path}", th.base));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let json = resp.headers().get("content-type").is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(json || status.is_success(), "{path}: a {status} must be JSON, got {text:?}");
    Reply { status, body }
}

/// Asserts the contract's error shape: status, code, field, a message.
#[track_caller]
fn assert_error(r: &Reply, status: StatusCode, code: &str, field: Option<&str>, what: &str) {
    assert_eq!(r.status, status, "{what}: status; body {}", r.body);
    assert_eq!(r.code(), Some(code), "{what}: error.code; body {}", r.body);
    assert_eq!(r.field(), field, "{what}: error.field; body {}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message: {}", r.body);
}

/// A path parameter that is not UTF-8 once percent-decoded is a 400 naming the parameter.
#[tokio::test]
async fn undecodable_path_parameters_are_400_naming_the_parameter() {
    let th = TestHerald::spawn().await;
    let admin = format!("Bearer {}", th.admin);
    let app = format!("Bearer {}", th.app_token("rider", "r1"));
    for (method, path, token) in [
        (Method::GET, "/admin/v1/notifications/%FF", &admin),
        (Method::GET, "/admin/v1/notifications/%FF/history", &admin),
        (Method::POST, "/admin/v1/notifications/%FF/send", &admin),
        (Method::POST, "/admin/v1/notifications/%C3%28/cancel", &admin),
        (Method::POST, "/admin/v1/notifications/%FF/revoke", &admin),
        (Method::POST, "/app/v1/inbox/%FF/read", &app),
    ] {
        let r = send(&th, method, path, &[("authorization", token)], None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_path", Some("id"), path);
    }
    th.stop().await;
}

/// A query parameter given twice is ambiguous: 400 `bad_query` naming it, on every endpoint that
/// reads the query.
#[tokio::test]
async fn repeated_query_parameters_are_400_naming_the_parameter() {
    let th = TestHerald::spawn().await;
    let admin = format!("Bearer {}", th.admin);
    let app = format!("Bearer {}", th.app_token("rider", "r1"));
    for (path, token, field) in [
        ("/admin/v1/notifications?to=null&to=null", &admin, "to"),
        ("/admin/v1/notifications?limit=null&limit=null", &admin, "limit"),
        ("/admin/v1/notifications?q=a&status=sent&q=b", &admin, "q"),
        ("/app/v1/inbox?limit=1&limit=2", &app, "limit"),
        ("/app/v1/inbox?cursor=&cursor=", &app, "cursor"),
        ("/app/v1/inbox/sync?since=a&since=b", &app, "since"),
    ] {
        let r = send(&th, Method::GET, path, &[("authorization", token)], None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_query", Some(field), path);
    }
    th.stop().await;
}

/// Bodies: whatever the content type says, a body that is not JSON is 400 `malformed_json`, a
/// wrong value 422 naming it; headers at fault are named too.
#[tokio::test]
async fn body_and_header_rejections_have_the_error_shape() {
    let th = TestHerald::spawn().await;
    let admin = format!("Bearer {}", th.admin);
    let auth = ("authorization", admin.as_str());
    let valid = TestHerald::notification("shape", json!({"all": true}), json!({})).to_string();
    for content_type in ["application/json", "text/plain", "application/x-www-form-urlencoded"] {
        let headers = [auth, ("content-type", content_type)];
        let r = send(&th, Method::POST, "/admin/v1/notifications", &headers, Some("title=x".into())).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, content_type);
        let r = send(&th, Method::POST, "/admin/v1/audience/preview", &headers, Some("{\"audience\": 1}".into())).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("audience"), content_type);
    }
    let r = send(&th, Method::POST, "/admin/v1/notifications", &[auth], Some(String::new())).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, "an empty body");
    let headers = [auth, ("content-type", "application/json"), ("idempotency-key", "")];
    let r = send(&th, Method::POST, "/admin/v1/notifications", &headers, Some(valid)).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("Idempotency-Key"), "a blank key");
    let not_text = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff").unwrap();
    let resp = th.client.get(format!("{}/admin/v1/notifications", th.base)).header("authorization", not_text);
    let resp = resp.send().await.expect("request sent");
    let r = Reply { status: resp.status(), body: resp.json().await.unwrap_or(Value::Null) };
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, "a header that is not text");
    th.stop().await;
}

/// The authentication scheme is case-insensitive (RFC 7235): `bearer` and `BEARER` are `Bearer`.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let th = TestHerald::spawn().await;
    let app = th.app_token("rider", "r1");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let admin = format!("{scheme} {}", th.admin);
        let r = send(&th, Method::GET, "/admin/v1/notifications", &[("authorization", &admin)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.body);
        let app = format!("{scheme} {app}");
        let r = send(&th, Method::GET, "/app/v1/inbox/unread-count", &[("authorization", &app)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.body);
    }
    for header in [format!("Bearer{}", th.admin), format!("Basic {}", th.admin), "bearer".to_string()] {
        let r = send(&th, Method::GET, "/admin/v1/notifications", &[("authorization", &header)], None).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None, &header);
    }
    th.stop().await;
}
