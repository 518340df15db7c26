//! Query-string values shared by the list endpoints.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use super::error::{ApiError, ApiResult};

/// The query string, or a 400 when it does not decode.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(p)| p).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))
}

/// `limit`: 1 to `max`, `default` when absent.
pub fn limit(raw: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    let Some(raw) = raw else { return Ok(default) };
    raw.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("must be 1 to {max}"))
            .with_field("limit")
    })
}
