//! The ops console at `/console/`: static files compiled into the binary (`console/`), so
//! `herald serve` and `herald api` carry the whole console with no other server, CDN or build
//! step. Every answer has a strict Content-Security-Policy: scripts, styles and API calls only
//! from this origin, no inline code, no frames; images from this origin or any `https:` one, the
//! only scheme a notification's image may have (the composer previews it).

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::ApiError;
use super::openapi::ReadsPath;
use super::params::PathParams;

pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' https:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The console's files: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../console/index.html")),
    ("console.css", "text/css; charset=utf-8", include_str!("../../console/console.css")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("../../console/api.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("../../console/dom.js")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../console/console.js")),
];

/// The console lives under `/console/`, where its files' relative paths resolve.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 308, description = "To `/console/`")))]
pub async fn console_root() -> Redirect {
    Redirect::permanent("/console/")
}

/// The ops console's page: sign in with an admin token (operator or viewer).
#[utoipa::path(get, path = "/console/", tag = "console",
    responses((status = 200, description = "The console", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    file("index.html")
}

/// One of the console's files (its scripts and styles).
#[utoipa::path(get, path = "/console/{name}", tag = "console",
    params(("name" = String, Path, description = "A file of the console")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html"))),
        ReadsPath))]
pub async fn asset(PathParams(name): PathParams<String>) -> Response {
    file(&name)
}

fn file(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found("console file").into_response();
    };
    let headers: [(HeaderName, HeaderValue); 5] = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // The files change with the binary; a browser asks again rather than run an old console.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, *body).into_response()
}
