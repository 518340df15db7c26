//! The contract's edges, against a real Herald: every rejection (path, query, body, headers) has
//! the JSON error shape naming the parameter at fault, and `/openapi.json` describes every route,
//! method and status the code answers.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A well-formed notification id that names nothing.
const UNKNOWN_ID: &str = "00000000000000000000000000000000";

/// Any request: raw path (sent as written), headers, optional raw body.
async fn send(th: &TestHerald, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
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
        (Method::POST, "/app/v1/inbox/%FF/archive", &app),
        (Method::DELETE, "/app/v1/inbox/%FF/archive", &app),
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
    let r = send(&th, Method::POST, "/admin/v1/notifications", &[auth], Some(Vec::new())).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None, "an empty body");
    let headers = [auth, ("content-type", "application/json"), ("idempotency-key", "")];
    let r = send(&th, Method::POST, "/admin/v1/notifications", &headers, Some(valid.into_bytes())).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("Idempotency-Key"), "a blank key");
    let not_text = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff").unwrap();
    let resp = th.client.get(format!("{}/admin/v1/notifications", th.base)).header("authorization", not_text);
    let resp = resp.send().await.expect("request sent");
    let r = Reply { status: resp.status(), body: resp.json().await.unwrap_or(Value::Null) };
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", Some("Authorization"), "a header that is not text");
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
    let r = send(&th, Method::GET, "/admin/v1/notifications", &[], None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", Some("Authorization"), "no token");
    for header in [format!("Bearer{}", th.admin), format!("Basic {}", th.admin), "bearer".to_string()] {
        let r = send(&th, Method::GET, "/admin/v1/notifications", &[("authorization", &header)], None).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", Some("Authorization"), &header);
    }
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// /openapi.json
// ---------------------------------------------------------------------------------------------

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(th: &TestHerald) -> Value {
    let r = th.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["paths"].is_object(), "no paths in /openapi.json: {}", r.body);
    r.body
}

/// Every operation of the document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in METHODS.into_iter().filter(|m| item.get(*m).is_some()) {
            out.push((path.clone(), method.to_string(), item[method].clone()));
        }
    }
    out
}

fn declared(op: &Value) -> Vec<String> {
    op["responses"].as_object().expect("responses").keys().cloned().collect()
}

fn params_in<'a>(op: &'a Value, place: &str) -> Vec<&'a str> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == place)
        .filter_map(|p| p["name"].as_str())
        .collect()
}

/// The path with every `{param}` replaced by `value`.
/// `path` with every parameter set to `value`, but a receiver `{kind}` to a kind (so `value` is what
/// decides: unknown, or undecodable).
fn fill(path: &str, value: &str) -> String {
    let param = |seg: &str| match seg {
        "{kind}" => "rider".to_string(),
        s if s.starts_with('{') => value.to_string(),
        s => s.to_string(),
    };
    path.split('/').map(param).collect::<Vec<_>>().join("/")
}

/// What is routed is what is documented: the router registers every route through `routes!`,
/// which takes each path and method from the handler's `#[utoipa::path]`; every documented method
/// is served, and every other method of a documented path is 405.
#[tokio::test]
async fn openapi_describes_every_route_and_method() {
    let th = TestHerald::spawn().await;
    let doc = document(&th).await;
    let source = include_str!("../src/http/mod.rs");
    for bypass in [".route(", ".route_service(", ".nest(", ".merge(", ".nest_service("] {
        assert!(!source.contains(bypass), "src/http/mod.rs registers a route with `{bypass}`, outside the document");
    }
    let registered = source.matches(".routes(routes!(").count();
    let paths = doc["paths"].as_object().expect("paths");
    // The ops listener of every role serves some of the same handlers on the same paths.
    let ops = include_str!("../src/http/ops.rs");
    for served in ops.split(".route(\"").skip(1).map(|rest| rest.split('"').next().unwrap()) {
        assert!(paths.contains_key(served), "the ops listener serves {served}, which is not documented");
    }
    assert_eq!(registered, paths.len(), "one `routes!` per documented path");
    assert!(paths.len() >= 18, "{paths:?}");
    let app = th.app_token("rider", "r1");
    for (path, item) in paths {
        let concrete = fill(path, UNKNOWN_ID);
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for token in [&th.admin, &app] {
                let r = th.call(m.clone(), &concrete, Some(token), None).await;
                if item.get(method).is_some() {
                    assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented, not served");
                    assert!(r.status != StatusCode::NOT_FOUND || r.code() == Some("not_found") && path.contains('{'));
                } else {
                    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None, &concrete);
                }
            }
        }
    }
    th.stop().await;
}

/// Each operation declares the errors its inputs can cause, each in the error shape: 401 and 403
/// with a token, 400 and 404 with a path id, 400 and 422 with a query, 400, 413 and 422 with a body,
/// 503 whenever it reaches a store.
#[tokio::test]
async fn every_operation_declares_the_errors_its_inputs_can_cause() {
    let th = TestHerald::spawn().await;
    let doc = document(&th).await;
    for (path, method, op) in operations(&doc) {
        let declared = declared(&op);
        let mut needed: Vec<&str> = Vec::new();
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            needed.extend(["401", "403"]);
        }
        if !params_in(&op, "path").is_empty() {
            needed.extend(["400", "404"]);
        }
        if !params_in(&op, "query").is_empty() {
            needed.extend(["400", "422"]);
        }
        if op.get("requestBody").is_some() || !params_in(&op, "header").is_empty() {
            needed.extend(["400", "413", "422"]);
        }
        // The apps' hint stream reads the in-process hub only, no store; the reindex state is the
        // process's own (the rebuild it starts runs in the background).
        let reaches_store = path != "/app/v1/inbox/events" && path != "/admin/v1/search/reindex";
        if (path.starts_with("/admin/") || path.starts_with("/app/")) && reaches_store || path == "/readyz" {
            needed.push("503");
        }
        for status in needed {
            assert!(declared.iter().any(|d| d == status), "{method} {path} does not declare {status}: {declared:?}");
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}: {response}");
            }
        }
    }
    th.stop().await;
}

/// One request of the table: path and query, headers, body, the status it must get.
type Provocation<'a> = (String, Vec<(&'a str, &'a str)>, Option<Vec<u8>>, StatusCode);

/// Provokes every error each operation's inputs allow (the table: no token, the wrong token, an
/// undecodable or unknown id, a repeated or invalid query parameter, a malformed, invalid or
/// oversized body) and checks the answer is the expected one, in the error shape, and declared.
#[tokio::test]
async fn every_error_a_request_provokes_is_declared() {
    let th = TestHerald::spawn().await;
    let doc = document(&th).await;
    let app = format!("Bearer {}", th.app_token("rider", "r1"));
    let admin = format!("Bearer {}", th.admin);
    let huge = " ".repeat(4 * 1024 * 1024 + 1);
    let mut provoked = 0;
    for (path, method, op) in operations(&doc) {
        let Some(scheme) = op["security"][0].as_object().and_then(|s| s.keys().next().cloned()) else { continue };
        let (right, wrong) = if scheme == "admin_token" { (&admin, &app) } else { (&app, &admin) };
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let ok_path = fill(&path, UNKNOWN_ID);
        let json = ("content-type", "application/json");
        let mut table: Vec<Provocation> = vec![
            (ok_path.clone(), vec![], None, StatusCode::UNAUTHORIZED),
            (ok_path.clone(), vec![("authorization", wrong)], None, StatusCode::FORBIDDEN),
        ];
        let auth = ("authorization", right.as_str());
        if !params_in(&op, "path").is_empty() {
            table.push((fill(&path, "%FF"), vec![auth], None, StatusCode::BAD_REQUEST));
            table.push((ok_path.clone(), vec![auth], None, StatusCode::NOT_FOUND));
        }
        let query = params_in(&op, "query");
        if let Some(first) = query.first() {
            table.push((format!("{ok_path}?{first}=a&{first}=b"), vec![auth], None, StatusCode::BAD_REQUEST));
            let invalid = if query.contains(&"limit") {
                "limit=0"
            } else if query.contains(&"category") {
                "category=promo"
            } else {
                "since=not-a-cursor"
            };
            table.push((format!("{ok_path}?{invalid}"), vec![auth], None, StatusCode::UNPROCESSABLE_ENTITY));
        }
        if op["requestBody"]["content"].get("text/csv").is_some() {
            // A CSV upload: another media type, a file that is not UTF-8, one over its own limit.
            let csv = ("content-type", "text/csv");
            table.push((ok_path.clone(), vec![auth, json], Some(b"[]".to_vec()), StatusCode::UNSUPPORTED_MEDIA_TYPE));
            let not_utf8 = b"rider,r\xff,shanghai,\n".to_vec();
            table.push((ok_path.clone(), vec![auth, csv], Some(not_utf8), StatusCode::UNPROCESSABLE_ENTITY));
            let over = vec![b'\n'; 64 * 1024 * 1024 + 1];
            table.push((ok_path.clone(), vec![auth, csv], Some(over), StatusCode::PAYLOAD_TOO_LARGE));
        } else if op.get("requestBody").is_some() {
            table.push((ok_path.clone(), vec![auth, json], Some(b"oops".to_vec()), StatusCode::BAD_REQUEST));
            table.push((
                ok_path.clone(),
                vec![auth, json],
                Some(b"{\"x\": 1}".to_vec()),
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
            table.push((
                ok_path.clone(),
                vec![auth, json],
                Some(huge.clone().into_bytes()),
                StatusCode::PAYLOAD_TOO_LARGE,
            ));
        }
        for (target, headers, body, expected) in table {
            let r = send(&th, m.clone(), &target, &headers, body).await;
            let what = format!("{method} {target}");
            assert_eq!(r.status, expected, "{what}: {}", r.body);
            assert!(r.code().is_some() && r.body["error"]["message"].is_string(), "{what}: not the error shape");
            assert!(declared(&op).contains(&r.status.as_str().to_string()), "{what}: {} is not declared", r.status);
            provoked += 1;
        }
    }
    assert!(provoked >= 40, "only {provoked} errors provoked");
    th.stop().await;
}

/// The documented bounds of `limit` are the ones the code applies: the maximum is served, one more
/// is a 422 naming `limit`.
#[tokio::test]
async fn documented_limits_are_the_enforced_ones() {
    let th = TestHerald::spawn().await;
    let doc = document(&th).await;
    let app = th.app_token("rider", "r1");
    let mut checked = 0;
    for (path, _, op) in operations(&doc) {
        let Some(limit) = op["parameters"].as_array().into_iter().flatten().find(|p| p["name"] == "limit") else {
            continue;
        };
        let max = limit["schema"]["maximum"].as_u64().unwrap_or_else(|| panic!("{path}: limit has no maximum"));
        let token = if path.starts_with("/admin/") { &th.admin } else { &app };
        let r = th.app_get(token, &format!("{path}?limit={max}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}?limit={max}: {}", r.body);
        let r = th.app_get(token, &format!("{path}?limit={}", max + 1)).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("limit"), &path);
        checked += 1;
    }
    assert_eq!(checked, 3, "the console's lists of notifications and receivers, and the inbox, take a limit");
    th.stop().await;
}
