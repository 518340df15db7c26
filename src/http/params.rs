//! Path and query-string extractors whose every rejection is the API's error shape, naming the
//! parameter at fault, and the `limit` every list endpoint reads.

use std::collections::HashSet;

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

/// The path's parameters; one that does not decode (not UTF-8 once percent-decoded) is a 400
/// `bad_path` naming it.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(p)| PathParams(p)).map_err(|rejection| {
            let field = match &rejection {
                PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            ApiError::new(StatusCode::BAD_REQUEST, "bad_path", rejection.body_text()).with_field(field)
        })
    }
}

/// The query string. A parameter given twice is ambiguous, so it is a 400 `bad_query` naming it
/// rather than a silent pick of one value.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let bad_query = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message);
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|e| bad_query(e.body_text()))?;
        let mut seen = HashSet::with_capacity(pairs.len());
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
            return Err(bad_query(format!("`{name}` is given more than once")).with_field(name.as_str()));
        }
        Query::try_from_uri(&parts.uri).map(|Query(p)| QueryParams(p)).map_err(|e| bad_query(e.body_text()))
    }
}

/// `limit`: 1 to `max`, `default` when absent.
pub fn limit(raw: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    let Some(raw) = raw else { return Ok(default) };
    raw.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("must be 1 to {max}"))
            .with_field("limit")
    })
}
