//! The API's one error shape, `{"error": {"code", "message", "field"}}`; the one place a use case's
//! refusal (`AppError`) becomes a status and a code; and the JSON extractor that turns every
//! malformed or invalid body into that shape, naming the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_app::AppError;
use herald_domain::InvalidInput;
use herald_domain::ports::{Failure, PortError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty() && field != ".").then_some(field);
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// `unauthorized` or `token_expired`; the `Authorization` header is what is at fault.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message).with_field("Authorization")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", e.message).with_field(e.field)
    }
}

/// The details (queries, paths) go to the log, not to the client.
impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        let (code, message) = match e.failure {
            Failure::Unavailable => {
                tracing::error!(error = %e, "backend failed");
                ("backend_unavailable", format!("the {} backend is unavailable; try again", e.backend))
            }
            Failure::Busy => {
                tracing::warn!(error = %e, "console queries waited too long for a connection");
                (
                    "console_busy",
                    "too many console queries at once (HERALD_CONSOLE_CONNECTIONS, HERALD_CONSOLE_WAIT); try again"
                        .to_string(),
                )
            }
            Failure::TimedOut => {
                tracing::warn!(error = %e, "a console query ran past its time limit");
                (
                    "console_query_timeout",
                    "the query ran past the console's time limit (HERALD_CONSOLE_STATEMENT_TIMEOUT) and was stopped; \
                     narrow it"
                        .to_string(),
                )
            }
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::Invalid(invalid) => invalid.into(),
            AppError::Backend(failed) => failed.into(),
            AppError::NotFound(what) => ApiError::not_found(what),
            AppError::UnknownReceivers { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_receivers", message)
                    .with_field("audience.include")
            }
            AppError::IdempotencyKeyReused => ApiError::conflict("idempotency_key_reused", message),
            AppError::InvalidTransition { .. } => ApiError::conflict("invalid_transition", message),
            AppError::ForceReadUnread => ApiError::conflict("force_read_unread", message),
            AppError::BatchTooLarge { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "batch_too_large", message)
            }
        }
    }
}

/// Every error response: `{"error": {"code", "message", "field"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetail {
    /// What went wrong, in snake_case (`invalid_field`, `not_found`, …).
    code: &'static str,
    /// For people: what to change.
    message: String,
    /// The parameter, header or body field at fault (`audience.cities[2]`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = ErrorDetail { code: self.code, message: self.message, field: self.field };
        (self.status, axum::Json(ErrorBody { error })).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body parsed straight into domain types; errors name the field (`audience.cities[2]`).
pub struct ValidJson<T>(pub T, pub Bytes);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large")
            } else {
                ApiError::new(rejection.status(), "bad_body", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(|v| ValidJson(v, bytes))
    }
}

/// Parses JSON, mapping syntax errors to 400 and content errors to 422 with the field's path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        if inner.is_data() {
            let field = named_field(&path, &message);
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", message).with_field(path)
        }
    })?;
    de.end().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", strip_position(&e.to_string())))?;
    Ok(value)
}

/// serde says "missing field `title`" at the parent's path: point at the field itself.
fn named_field(path: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.split('`').next()
    {
        return if path == "." || path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    }
    path.to_string()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        title: herald_domain::Title,
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        cities: Vec<herald_domain::City>,
    }

    #[test]
    fn names_fields() {
        let e = parse_json::<Probe>(br#"{"title": "x", "inner": {"cities": ["ok", "no way"]}}"#).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("inner.cities[1]")));
        let e = parse_json::<Probe>(br#"{"inner": null}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("title"));
        let e = parse_json::<Probe>(br#"{"title": "x", "colour": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"));
        let e = parse_json::<Probe>(br#"{"title": "#).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "malformed_json"));
        let e = parse_json::<Probe>(br#"{"title": "x"} trailing"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
