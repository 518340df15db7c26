//! Extractors that admit a request only with the right bearer token.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use herald_domain::ReceiverRef;

use super::AppState;
use super::error::ApiError;
use crate::auth::{AdminRole, Claims, TokenError};

fn claims(parts: &Parts, state: &AppState) -> Result<Claims, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
    state.tokens.verify(token.trim()).map_err(|e| match e {
        TokenError::Expired(_) => ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", e.to_string()),
        _ => ApiError::unauthorized(e.to_string()),
    })
}

/// An admin (operator or viewer).
pub struct Admin {
    pub role: AdminRole,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match claims(parts, state)? {
            Claims::Admin { role } => Ok(Admin { role }),
            Claims::App { .. } => Err(ApiError::forbidden("this endpoint needs an admin token")),
        }
    }
}

/// An admin allowed to write: an operator. Rejects a viewer before the body is even read.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Admin::from_request_parts(parts, state).await?.role {
            AdminRole::Operator => Ok(Operator),
            AdminRole::Viewer => Err(ApiError::forbidden("a viewer token may only read")),
        }
    }
}

/// A rider or merchant app: sees only its own inbox.
pub struct App(pub ReceiverRef);

impl FromRequestParts<AppState> for App {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        claims(parts, state)?.receiver().map(App).ok_or_else(|| ApiError::forbidden("this endpoint needs an app token"))
    }
}
