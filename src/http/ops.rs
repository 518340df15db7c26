//! Health, readiness, metrics and the API description. The first three are served by every role:
//! on the API's listener, and on the ops listener (`HERALD_OPS_ADDR`) of any process that sets one.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use herald_app::Herald;
use herald_domain::ports::PortResult;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::telemetry::Telemetry;

/// What the operations endpoints read: this process's backends and its metrics.
#[derive(Clone)]
pub struct OpsState {
    pub herald: Herald,
    pub telemetry: Arc<Telemetry>,
}

impl FromRef<AppState> for OpsState {
    fn from_ref(state: &AppState) -> Self {
        Self { herald: state.herald.clone(), telemetry: state.telemetry.clone() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(value_type = String, pattern = "^(ready|unavailable)$")]
    status: &'static str,
    checks: Checks,
    /// Changes logged in SQL that the search mirror has not applied yet (null when unknown).
    search_lag: Option<u64>,
}

/// Each backend's answer: `ok` or why not.
#[derive(Serialize, ToSchema)]
pub struct Checks {
    sql: String,
    inbox: String,
    queue: String,
    /// Reported, but not part of `status`: with search down, everything else keeps working.
    search: String,
}

fn check(result: &PortResult<()>) -> String {
    result.as_ref().map_or_else(|e| e.to_string(), |_| "ok".to_string())
}

/// Ready when every backend the apps and the roles need answers (search is reported beside).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Every backend answers", body = Readiness),
    (status = 503, description = "A backend does not answer; `checks` says which", body = Readiness),
))]
pub async fn readyz(State(state): State<OpsState>) -> (StatusCode, Json<Readiness>) {
    let readiness = state.herald.readiness().await;
    let ready = readiness.ready();
    let checks = Checks {
        sql: check(&readiness.sql),
        inbox: check(&readiness.inbox),
        queue: check(&readiness.queue),
        search: check(&readiness.search),
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let search_lag = readiness.search_lag.ok();
    (status, Json(Readiness { status: if ready { "ready" } else { "unavailable" }, checks, search_lag }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
))]
pub async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    // Gauges of the backends' state are read at scrape time, by the one role that exports them.
    if let Some(gauges) = &state.telemetry.backlog {
        let subscription = herald_consumers::subscription();
        let backlog = state.herald.backlog(&subscription).await;
        if let Ok(lag) = backlog.queue_lag {
            gauges.queue_lag.with_label_values(&[subscription.group.as_str()]).set(lag as i64);
        }
        if let Ok(began) = backlog.oldest_open_send {
            let age = began.map_or(0.0, |t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
            gauges.oldest_open_send.set(age);
        }
        if let Ok(n) = backlog.outbox {
            gauges.outbox_len.set(n as i64);
        }
        if let Ok(n) = backlog.search_lag {
            gauges.search_lag.set(n as i64);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.telemetry.render())
}

/// This document (OpenAPI 3.1), generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses(
    (status = 200, description = "The OpenAPI document", body = Object),
))]
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: LazyLock<String> =
        LazyLock::new(|| super::openapi_document().to_pretty_json().expect("the API description serializes"));
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// The operations endpoints alone (`/metrics`, `/healthz`, `/readyz`): what the ops listener of
/// any role serves (`HERALD_OPS_ADDR`), with the same handlers as the API's, so with the paths and
/// answers `/openapi.json` documents for them (`tests/api_contract.rs` checks the paths).
pub fn ops_router(state: OpsState) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { super::error::ApiError::not_found("endpoint") })
        .with_state(state)
}
