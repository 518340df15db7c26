//! The HTTP API (axum): admin console, apps, operations. Handlers parse requests into domain
//! types, call a use case of `herald_app::Herald`, and render its answer; none of them waits on a
//! fan-out.

mod admin;
mod auth;
mod console;
mod error;
mod events;
mod inbox;
mod openapi;
mod ops;
mod params;
mod preferences;
mod receivers;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use events::{StreamLimits, Streams};
pub use ops::{OpsState, ops_router};

use herald_app::Herald;
use herald_domain::AppSchemes;

use crate::auth::TokenSigner;
use crate::telemetry::Telemetry;

/// Largest request body: a 10,000-receiver batch or a notification with two 10,000-id lists fits.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub herald: Herald,
    pub tokens: TokenSigner,
    pub telemetry: Arc<Telemetry>,
    /// The live-update streams open in this process.
    pub streams: Arc<Streams>,
    /// The schemes a notification's deep links may use (`HERALD_APP_SCHEMES`).
    pub app_schemes: Arc<AppSchemes>,
}

impl AppState {
    pub fn new(
        herald: Herald,
        tokens: TokenSigner,
        telemetry: Arc<Telemetry>,
        streams: Streams,
        app_schemes: AppSchemes,
    ) -> Self {
        Self { herald, tokens, telemetry, streams: Arc::new(streams), app_schemes: Arc::new(app_schemes) }
    }
}

/// Every operation, each registered with its description: what is routed is what is documented.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(console::console_root))
        .routes(routes!(console::index))
        .routes(routes!(console::asset))
        .routes(routes!(admin::upsert_receivers))
        .routes(routes!(receivers::list_receivers))
        .routes(routes!(receivers::import_receivers))
        .routes(routes!(receivers::get_receiver, receivers::delete_receiver))
        .routes(routes!(admin::create_notification, admin::list_notifications))
        .routes(routes!(admin::get_notification))
        .routes(routes!(admin::history))
        .routes(routes!(admin::send))
        .routes(routes!(admin::cancel))
        .routes(routes!(admin::revoke))
        .routes(routes!(admin::preview))
        .routes(routes!(admin::start_reindex, admin::reindex_status))
        .routes(routes!(events::notification_events))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::unread_count))
        .routes(routes!(inbox::seen))
        .routes(routes!(inbox::force_read))
        .routes(routes!(inbox::sync))
        .routes(routes!(inbox::read_all))
        .routes(routes!(inbox::read_one))
        .routes(routes!(inbox::archive_all))
        .routes(routes!(inbox::archive_one, inbox::unarchive_one))
        .routes(routes!(events::inbox_events))
        .routes(routes!(preferences::get_preferences, preferences::put_preferences))
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    routes
        .fallback(|| async { ApiError::not_found("endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Runs every request in a span and records its latency by route template (not raw path, to keep
/// series bounded).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let started = Instant::now();
    let method = request.method().clone();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("http", method = %method, route = %route);
    let method = method_label(&method);
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), elapsed_ms = elapsed.as_millis() as u64));
    state
        .telemetry
        .http_duration
        .with_label_values(&[method, &route, status_class(response.status())])
        .observe(elapsed.as_secs_f64());
    response
}

/// A method as a metric label: the standard ones by name, anything a client made up as `other`,
/// so no request can add series. (Routes are templates or `unmatched`, statuses classes.)
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("other", |(_, name)| name)
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
