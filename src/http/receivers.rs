//! The console's receiver directory: look one up, page through them, delete one (with its inbox).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_domain::{Attributes, City, Group, Locale, Receiver, ReceiverId, ReceiverKind, ReceiverRef};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Admin, Operator};
use super::error::{ApiError, ApiResult};
use super::openapi::{self as doc, NeedsToken, ParsesPath, ReadsCsv, ReadsQuery, UsesBackend};
use super::params::{self, PathParams, QueryParams};

/// One receiver as the directory holds it.
#[derive(Serialize, ToSchema)]
pub struct ReceiverView {
    #[schema(schema_with = doc::receiver_kind)]
    kind: ReceiverKind,
    #[schema(schema_with = doc::ident)]
    id: ReceiverId,
    #[schema(schema_with = doc::ident)]
    city: City,
    #[schema(schema_with = doc::groups)]
    groups: Vec<Group>,
    #[schema(schema_with = doc::attributes)]
    attributes: Attributes,
    /// The language it reads notifications in; absent when the import gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = doc::locale)]
    locale: Option<Locale>,
}

impl From<&Receiver> for ReceiverView {
    fn from(r: &Receiver) -> Self {
        Self {
            kind: r.kind,
            id: r.id.clone(),
            city: r.city.clone(),
            groups: r.groups().to_vec(),
            attributes: r.attributes.clone(),
            locale: r.locale.clone(),
        }
    }
}

/// `{kind}/{id}` of a receiver; a kind or id that cannot be one is a 422 naming it.
#[derive(Deserialize)]
pub struct ReceiverPath {
    kind: String,
    id: String,
}

impl ReceiverPath {
    fn parse(&self) -> ApiResult<ReceiverRef> {
        Ok(ReceiverRef { kind: ReceiverKind::parse("kind", &self.kind)?, id: ReceiverId::parse("id", &self.id)? })
    }
}

/// One receiver: its city, groups and attributes.
#[utoipa::path(get, path = "/admin/v1/receivers/{kind}/{id}", tag = "admin", security(("admin_token" = [])),
    params(("kind" = String, Path, description = "`rider` or `merchant`"), ("id" = String, Path, description = "The receiver's id")),
    responses((status = 200, body = ReceiverView), NeedsToken, ParsesPath, UsesBackend))]
pub async fn get_receiver(
    State(state): State<AppState>,
    _: Admin,
    PathParams(path): PathParams<ReceiverPath>,
) -> ApiResult<Json<ReceiverView>> {
    Ok(Json(ReceiverView::from(&state.herald.receiver(&path.parse()?).await?)))
}

/// Each given at most once; kept as text so that a bad value is a 422 naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiverListParams {
    /// Only receivers of this kind.
    #[param(schema_with = doc::receiver_kind)]
    kind: Option<String>,
    /// Only receivers in this city.
    #[param(schema_with = doc::ident)]
    city: Option<String>,
    /// A `next_cursor` from an earlier page.
    cursor: Option<String>,
    #[param(schema_with = list_limit)]
    limit: Option<String>,
}

const LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 500;

fn list_limit() -> utoipa::openapi::schema::Schema {
    doc::limit(MAX_LIST_LIMIT)
}

/// The cursor is the `kind:id` key of the last receiver of the page before: any receiver's key is a
/// valid place to start after.
fn decode_cursor(raw: &str) -> ApiResult<ReceiverRef> {
    let bad = || herald_domain::InvalidInput::new("cursor", "not a cursor this API returned");
    let (kind, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok(ReceiverRef {
        kind: ReceiverKind::parse("cursor", kind).map_err(|_| bad())?,
        id: ReceiverId::parse("cursor", id).map_err(|_| bad())?,
    })
}

/// A page of receivers, by kind and id.
#[derive(Serialize, ToSchema)]
pub struct ReceiverPage {
    items: Vec<ReceiverView>,
    /// Null when nothing follows.
    next_cursor: Option<String>,
}

/// Receivers (of one kind, in one city, when given) by kind and id; `next_cursor` pages on.
#[utoipa::path(get, path = "/admin/v1/receivers", tag = "admin", security(("admin_token" = [])),
    params(ReceiverListParams),
    responses((status = 200, body = ReceiverPage), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn list_receivers(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(p): QueryParams<ReceiverListParams>,
) -> ApiResult<Json<ReceiverPage>> {
    let kind = p.kind.as_deref().map(|k| ReceiverKind::parse("kind", k)).transpose()?;
    let city = p.city.as_deref().map(|c| City::parse("city", c)).transpose()?;
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = params::limit(p.limit.as_deref(), LIST_LIMIT, MAX_LIST_LIMIT)?;
    let (found, more) = state.herald.receivers(kind, city.as_ref(), after.as_ref(), limit).await?;
    let next_cursor = found.last().filter(|_| more).map(|r| ReceiverRef::key_of(r.kind, &r.id));
    Ok(Json(ReceiverPage { items: found.iter().map(ReceiverView::from).collect(), next_cursor }))
}

/// Deletes a receiver with its inbox and read state. Notifications' stats keep what was delivered
/// and read. A retry after a failure finishes the job (204 while anything was left to remove); a
/// receiver with nothing left anywhere is a 404.
#[utoipa::path(delete, path = "/admin/v1/receivers/{kind}/{id}", tag = "admin", security(("admin_token" = [])),
    params(("kind" = String, Path, description = "`rider` or `merchant`"), ("id" = String, Path, description = "The receiver's id")),
    responses((status = 204, description = "Deleted"), NeedsToken, ParsesPath, UsesBackend))]
pub async fn delete_receiver(
    State(state): State<AppState>,
    _: Operator,
    PathParams(path): PathParams<ReceiverPath>,
) -> ApiResult<StatusCode> {
    let who = path.parse()?;
    state.herald.delete_receiver(&who).await?;
    tracing::info!(receiver = %who.key(), "receiver deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Largest CSV the console may upload at once (about a million rows); the CLI's
/// `herald receivers import` streams files of any size.
pub const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    /// Receivers written.
    imported: u64,
    /// The first rows refused, in file order; the others were imported.
    rejected: Vec<RejectedRow>,
    /// Rows refused beyond those listed.
    more_rejected: u64,
}

#[derive(Serialize, ToSchema)]
pub struct RejectedRow {
    /// The row's line in the file, from 1.
    line: u64,
    reason: String,
}

/// Imports a CSV of receivers (`kind,id,city,groups[,attributes[,locale]]`, groups
/// `;`-separated, attributes a JSON object of strings, locale a language tag, an optional header line), as `herald receivers import` does: bad rows are reported by line, the others upserted.
#[utoipa::path(post, path = "/admin/v1/receivers/import", tag = "admin", security(("admin_token" = [])),
    request_body(content = String, content_type = "text/csv", description = "At most 64 MiB"),
    responses((status = 200, body = ImportReport), NeedsToken, ReadsCsv, UsesBackend))]
pub async fn import_receivers(
    State(state): State<AppState>,
    _: Operator,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Json<ImportReport>> {
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv")));
    if !csv {
        let message = "send the receivers as `Content-Type: text/csv`";
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
            .with_field("Content-Type"));
    }
    // Its own limit, above the JSON endpoints' one.
    let body = axum::body::to_bytes(body, IMPORT_LIMIT).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the CSV is over 64 MiB; use the CLI")
    })?;
    let report = crate::import::import_from(std::io::Cursor::new(body), &state.herald, |_| {}).await.map_err(|e| {
        match e.downcast::<herald_app::AppError>() {
            Ok(failed) => ApiError::from(failed),
            Err(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_csv", format!("{e:#}")).with_field("body"),
        }
    })?;
    let rejected = report.rejected.into_iter().map(|r| RejectedRow { line: r.line, reason: r.reason }).collect();
    Ok(Json(ImportReport { imported: report.imported, rejected, more_rejected: report.more_rejected }))
}
