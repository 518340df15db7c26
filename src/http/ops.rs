//! Health, readiness, metrics and the API description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when every backend answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let sql = state.ports.notifications.ping().await;
    let inbox = state.ports.inbox.ping().await;
    let queue = state.ports.queue.lag(&herald_consumers::subscription()).await.map(|_| ());
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for (name, result) in [("sql", sql), ("inbox", inbox), ("queue", queue)] {
        ready &= result.is_ok();
        checks.insert(name.into(), json!(result.map_or_else(|e| e.to_string(), |_| "ok".to_string())));
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks })))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges of other components' state are read at scrape time.
    if let Ok(lag) = state.ports.queue.lag(&herald_consumers::subscription()).await {
        state.telemetry.queue_lag.set(lag as i64);
    }
    if let Ok(n) = state.ports.ledger.outbox_len().await {
        state.telemetry.outbox_len.set(n as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.telemetry.render())
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
