//! The rider and merchant apps' API: one inbox per token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_app::SyncNews;
use herald_domain::ports::ByCategory;
use herald_domain::{Action, ActionKind, Category, InboxCursor, InboxItem, Locale, NotificationId, SyncCursor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::App;
use super::error::{ApiError, ApiResult};
use super::openapi::{self as doc, Conflicts, NeedsToken, ReadsPath, ReadsQuery, UsesBackend};
use super::params::{self, PathParams, QueryParams};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 50;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// A `next_cursor` from an earlier page (of the same tab, or of the whole inbox).
    cursor: Option<String>,
    #[param(schema_with = page_limit)]
    limit: Option<String>,
    /// Only this category's messages (a tab); absent lists every category.
    #[param(schema_with = doc::category)]
    category: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CategoryParams {
    /// Only this category's messages; absent means every category.
    #[param(schema_with = doc::category)]
    category: Option<String>,
}

/// `category`, when given: one of the categories, else a 422 naming it.
fn category(raw: Option<&str>) -> ApiResult<Option<Category>> {
    Ok(raw.map(|c| Category::parse("category", c)).transpose()?)
}

fn page_limit() -> utoipa::openapi::schema::Schema {
    doc::limit(MAX_LIMIT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncParams {
    /// The `cursor` of the previous sync; absent starts from the beginning.
    since: Option<String>,
}

/// A button as an app shows it.
#[derive(Serialize, ToSchema)]
pub struct ActionView {
    /// `url` (an `https://` page) or `deep_link` (one of the app's own schemes).
    #[schema(schema_with = doc::action_kind)]
    kind: ActionKind,
    target: String,
    /// Absent when the operator gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

impl From<&Action> for ActionView {
    fn from(a: &Action) -> Self {
        Self { kind: a.kind(), target: a.target().to_owned(), label: a.label().map(|l| l.as_str().to_owned()) }
    }
}

/// A message as an app shows it.
#[derive(Serialize, ToSchema)]
pub struct Message {
    #[schema(value_type = String)]
    id: NotificationId,
    /// The title, its placeholders filled in for this receiver (plain text).
    title: String,
    /// The body, its placeholders filled in for this receiver (plain text, never markup).
    body: String,
    /// Absent when it has none: an `https://` URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    image: Option<String>,
    /// Up to two buttons, in order (empty when none).
    actions: Vec<ActionView>,
    /// The variant this receiver is shown (its place in the notification's `variants`, from 0), by
    /// its groups; null for the notification's own content.
    variant: Option<usize>,
    /// The translation this receiver reads, by its locale; null for the untranslated text.
    #[schema(value_type = Option<String>)]
    locale: Option<Locale>,
    #[schema(schema_with = doc::category)]
    category: Category,
    pinned: bool,
    force_read: bool,
    read: bool,
    /// Archived by this receiver: only sync reports such a message (so a device hides it); lists
    /// and counts leave it out.
    archived: bool,
    #[schema(format = DateTime)]
    sent_at: Option<String>,
    #[schema(format = DateTime)]
    valid_until: Option<String>,
}

impl From<&InboxItem> for Message {
    fn from(item: &InboxItem) -> Self {
        let n = &item.notification;
        Self {
            id: n.id.clone(),
            title: item.title.clone(),
            body: item.body.clone(),
            image: item.image().map(|i| i.as_str().to_owned()),
            actions: item.actions().as_slice().iter().map(ActionView::from).collect(),
            variant: item.variant,
            locale: item.locale.clone(),
            category: n.content.category,
            pinned: n.content.pinned,
            force_read: n.content.force_read,
            read: item.read,
            archived: item.archived,
            sent_at: n.sent_at.map(|t| t.to_rfc3339()),
            valid_until: n.content.validity.until().map(|t| t.to_rfc3339()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InboxPage {
    items: Vec<Message>,
    /// Null when nothing follows.
    next_cursor: Option<String>,
    has_more: bool,
}

/// The inbox: pinned unread first, then newest first; only visible, unrevoked messages; with
/// `category`, only that category's (a tab), in the same order.
#[utoipa::path(get, path = "/app/v1/inbox", tag = "app", security(("app_token" = [])), params(PageParams),
    responses((status = 200, body = InboxPage), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn list(
    State(state): State<AppState>,
    App(me): App,
    QueryParams(p): QueryParams<PageParams>,
) -> ApiResult<Json<InboxPage>> {
    let limit = params::limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = p.cursor.as_deref().map(|c| InboxCursor::decode("cursor", c)).transpose()?;
    let category = category(p.category.as_deref())?;
    let page = state.herald.inbox_page(&me, cursor.as_ref(), limit, category).await?;
    Ok(Json(InboxPage {
        items: page.items.iter().map(Message::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
        has_more: page.has_more,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UnreadCount {
    unread: u64,
    force_read_pending: u64,
    /// Of `unread`, how many in each category (every category present; they add up to `unread`).
    /// Exact, never capped.
    by_category: CategoryCounts,
    /// Of `unread`, how many arrived (or had their window open) since the app last called
    /// `POST /app/v1/inbox/seen`; all of them before the first call. The app icon's badge.
    unseen: u64,
}

/// A count for each category.
#[derive(Serialize, ToSchema)]
pub struct CategoryCounts {
    system: u64,
    activity: u64,
    announcement: u64,
}

impl From<&ByCategory> for CategoryCounts {
    fn from(c: &ByCategory) -> Self {
        Self {
            system: c.get(Category::System),
            activity: c.get(Category::Activity),
            announcement: c.get(Category::Announcement),
        }
    }
}

/// How many visible messages are unread, how many of them must be read, how many are in each
/// category (the tabs' badges), and how many are unseen (the app icon's badge).
#[utoipa::path(get, path = "/app/v1/inbox/unread-count", tag = "app", security(("app_token" = [])),
    responses((status = 200, body = UnreadCount), NeedsToken, UsesBackend))]
pub async fn unread_count(State(state): State<AppState>, App(me): App) -> ApiResult<Json<UnreadCount>> {
    let count = state.herald.unread_count(&me).await?;
    Ok(Json(UnreadCount {
        unread: count.unread,
        force_read_pending: count.force_read,
        by_category: CategoryCounts::from(&count.by_category),
        unseen: count.unseen,
    }))
}

/// The app opened the inbox: every message held now is seen, so `unseen` in `unread-count` counts
/// only those that arrive (or open their window) afterwards. Unread stays unread. Idempotent.
#[utoipa::path(post, path = "/app/v1/inbox/seen", tag = "app", security(("app_token" = [])),
    responses((status = 204, description = "Seen"), NeedsToken, UsesBackend))]
pub async fn seen(State(state): State<AppState>, App(me): App) -> ApiResult<StatusCode> {
    state.herald.mark_seen(&me).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Messages {
    items: Vec<Message>,
}

/// The unread force-read messages.
#[utoipa::path(get, path = "/app/v1/inbox/force-read", tag = "app", security(("app_token" = [])),
    responses((status = 200, body = Messages), NeedsToken, UsesBackend))]
pub async fn force_read(State(state): State<AppState>, App(me): App) -> ApiResult<Json<Messages>> {
    let pending = state.herald.force_read_pending(&me).await?;
    Ok(Json(Messages { items: pending.iter().map(Message::from).collect() }))
}

/// Marks one message read; idempotent.
#[utoipa::path(post, path = "/app/v1/inbox/{id}/read", tag = "app", security(("app_token" = [])),
    params(("id" = String, Path, description = "The message's (notification's) id")),
    responses((status = 204, description = "Read"), NeedsToken, ReadsPath, UsesBackend))]
pub async fn read_one(
    State(state): State<AppState>,
    App(me): App,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    state.herald.mark_read(&me, message_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Marked {
    /// Messages newly marked read.
    marked: usize,
}

/// Marks every visible message read; with `category`, only that category's.
#[utoipa::path(post, path = "/app/v1/inbox/read-all", tag = "app", security(("app_token" = [])),
    params(CategoryParams),
    responses((status = 200, body = Marked), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn read_all(
    State(state): State<AppState>,
    App(me): App,
    QueryParams(p): QueryParams<CategoryParams>,
) -> ApiResult<Json<Marked>> {
    let category = category(p.category.as_deref())?;
    let marked = state.herald.mark_all_read(&me, category).await?;
    Ok(Json(Marked { marked }))
}

/// The message's id from the path: one that cannot be an id names no message (404).
fn message_id(raw: &str) -> ApiResult<NotificationId> {
    NotificationId::parse("id", raw).map_err(|_| ApiError::not_found("message"))
}

/// Archives one message for this receiver: gone from its list and counts, reported by sync (so the
/// receiver's other devices hide it too); idempotent. An unread force-read message is a 409
/// `force_read_unread`: read it first.
#[utoipa::path(post, path = "/app/v1/inbox/{id}/archive", tag = "app", security(("app_token" = [])),
    params(("id" = String, Path, description = "The message's (notification's) id")),
    responses((status = 204, description = "Archived"), NeedsToken, ReadsPath, Conflicts, UsesBackend))]
pub async fn archive_one(
    State(state): State<AppState>,
    App(me): App,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    state.herald.set_archived(&me, message_id(&id)?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Un-archives one message: back in its place in the list, with its read flag; idempotent.
#[utoipa::path(delete, path = "/app/v1/inbox/{id}/archive", tag = "app", security(("app_token" = [])),
    params(("id" = String, Path, description = "The message's (notification's) id")),
    responses((status = 204, description = "Not archived"), NeedsToken, ReadsPath, UsesBackend))]
pub async fn unarchive_one(
    State(state): State<AppState>,
    App(me): App,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    state.herald.set_archived(&me, message_id(&id)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArchiveAllParams {
    /// `true`: only the read messages; `false` (the default): unread ones too.
    #[param(value_type = Option<bool>)]
    read_only: Option<String>,
    /// Only this category's messages; absent means every category.
    #[param(schema_with = doc::category)]
    category: Option<String>,
}

/// `read_only`, when given: `true` or `false`, else a 422 naming it.
fn read_only(raw: Option<&str>) -> ApiResult<bool> {
    match raw {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "must be true or false")
            .with_field("read_only")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Archived {
    /// Messages newly archived.
    archived: usize,
}

/// Archives every listed message (only the read ones with `read_only=true`; with `category`, only
/// that category's), skipping unread force-read ones, which must be read first.
#[utoipa::path(post, path = "/app/v1/inbox/archive-all", tag = "app", security(("app_token" = [])),
    params(ArchiveAllParams),
    responses((status = 200, body = Archived), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn archive_all(
    State(state): State<AppState>,
    App(me): App,
    QueryParams(p): QueryParams<ArchiveAllParams>,
) -> ApiResult<Json<Archived>> {
    let read_only = read_only(p.read_only.as_deref())?;
    let category = category(p.category.as_deref())?;
    let archived = state.herald.archive_all(&me, read_only, category).await?;
    Ok(Json(Archived { archived }))
}

/// A sync's news: a message that arrived, changed or became visible, or one revoked.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SyncItem {
    Message(Message),
    Revoked(Revoked),
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    #[schema(value_type = String)]
    id: NotificationId,
    /// Always true.
    revoked: bool,
}

impl SyncItem {
    fn revoked(id: NotificationId) -> Self {
        SyncItem::Revoked(Revoked { id, revoked: true })
    }
}

#[derive(Serialize, ToSchema)]
pub struct Sync {
    items: Vec<SyncItem>,
    /// Pass as `since` next time.
    cursor: String,
    has_more: bool,
}

/// What arrived, changed (read or archived elsewhere: each message says `read` and `archived`),
/// became visible (its window opened) or was revoked since the cursor. Without a cursor it starts
/// from the beginning, so a new device fetches the whole inbox in batches.
#[utoipa::path(get, path = "/app/v1/inbox/sync", tag = "app", security(("app_token" = [])), params(SyncParams),
    responses((status = 200, body = Sync), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn sync(
    State(state): State<AppState>,
    App(me): App,
    QueryParams(p): QueryParams<SyncParams>,
) -> ApiResult<Json<Sync>> {
    let given = p.since.as_deref().map(|s| SyncCursor::decode("since", s)).transpose()?;
    let batch = state.herald.sync(&me, given).await?;
    let items = batch
        .items
        .into_iter()
        .map(|news| match news {
            SyncNews::Message(item) => SyncItem::Message(Message::from(&item)),
            SyncNews::Revoked(id) => SyncItem::revoked(id),
        })
        .collect();
    Ok(Json(Sync { items, cursor: batch.cursor.encode(), has_more: batch.has_more }))
}
