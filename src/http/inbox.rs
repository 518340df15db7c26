//! The rider and merchant apps' API: one inbox per token.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use herald_domain::{
    Body, Category, InboxCursor, InboxEntry, InboxItem, Notification, NotificationId, ReceiverRef, Status, SyncCursor,
    Title,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::App;
use super::error::{ApiError, ApiResult};
use super::openapi::{self as doc, NeedsToken, ReadsPath, ReadsQuery, UsesBackend};
use super::params::{self, PathParams, QueryParams};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 50;
/// Entries per sync response.
const SYNC_BATCH: usize = 100;
/// Revocations read per sync call.
const REVOCATION_BATCH: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// A `next_cursor` from an earlier page.
    cursor: Option<String>,
    #[param(schema_with = page_limit)]
    limit: Option<String>,
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

/// The instant a read answers for, after every revocation logged so far is withheld in the inbox
/// store (which then filters by itself).
async fn now_caught_up(state: &AppState) -> ApiResult<DateTime<Utc>> {
    state.catalog.catch_up().await?;
    Ok(Utc::now())
}

/// The entries with their notifications, in the entries' order.
async fn items(state: &AppState, entries: &[InboxEntry]) -> ApiResult<Vec<InboxItem>> {
    let ids: Vec<NotificationId> = entries.iter().map(|e| e.notification_id.clone()).collect();
    let notifications = state.catalog.get_many(&ids).await?;
    Ok(entries
        .iter()
        .filter_map(|e| {
            let notification = notifications.get(&e.notification_id)?.clone();
            Some(InboxItem { notification, read: e.read, version: e.version })
        })
        .collect())
}

/// A message as an app shows it.
#[derive(Serialize, ToSchema)]
pub struct Message {
    #[schema(value_type = String)]
    id: NotificationId,
    #[schema(schema_with = doc::title)]
    title: Title,
    #[schema(schema_with = doc::body)]
    body: Body,
    #[schema(schema_with = doc::category)]
    category: Category,
    pinned: bool,
    force_read: bool,
    read: bool,
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
            title: n.content.title.clone(),
            body: n.content.body.clone(),
            category: n.content.category,
            pinned: n.content.pinned,
            force_read: n.content.force_read,
            read: item.read,
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

/// The inbox: pinned unread first, then newest first; only visible, unrevoked messages.
#[utoipa::path(get, path = "/app/v1/inbox", tag = "app", security(("app_token" = [])), params(PageParams),
    responses((status = 200, body = InboxPage), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn list(
    State(state): State<AppState>,
    App(me): App,
    QueryParams(p): QueryParams<PageParams>,
) -> ApiResult<Json<InboxPage>> {
    let limit = params::limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = p.cursor.as_deref().map(|c| InboxCursor::decode("cursor", c)).transpose()?;
    let now = now_caught_up(&state).await?;
    // One more than a page tells whether anything follows, so `has_more` is never a false promise.
    let mut entries = state.ports.inbox.page(&me, now, cursor.as_ref(), limit + 1).await?;
    let has_more = entries.len() > limit;
    entries.truncate(limit);
    let next = if has_more { entries.last().map(|e| e.position.encode()) } else { None };
    Ok(Json(InboxPage {
        items: items(&state, &entries).await?.iter().map(Message::from).collect(),
        next_cursor: next,
        has_more,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UnreadCount {
    unread: u64,
    force_read_pending: u64,
}

/// How many visible messages are unread, and how many of them must be read.
#[utoipa::path(get, path = "/app/v1/inbox/unread-count", tag = "app", security(("app_token" = [])),
    responses((status = 200, body = UnreadCount), NeedsToken, UsesBackend))]
pub async fn unread_count(State(state): State<AppState>, App(me): App) -> ApiResult<Json<UnreadCount>> {
    let now = now_caught_up(&state).await?;
    let count = state.ports.inbox.unread_count(&me, now).await?;
    Ok(Json(UnreadCount { unread: count.unread, force_read_pending: count.force_read }))
}

#[derive(Serialize, ToSchema)]
pub struct Messages {
    items: Vec<Message>,
}

/// The unread force-read messages.
#[utoipa::path(get, path = "/app/v1/inbox/force-read", tag = "app", security(("app_token" = [])),
    responses((status = 200, body = Messages), NeedsToken, UsesBackend))]
pub async fn force_read(State(state): State<AppState>, App(me): App) -> ApiResult<Json<Messages>> {
    let now = now_caught_up(&state).await?;
    let pending = state.ports.inbox.unread(&me, now, true).await?;
    Ok(Json(Messages { items: items(&state, &pending).await?.iter().map(Message::from).collect() }))
}

/// Records the reads in SQL (the truth), then in the inbox store, whose counters move only for
/// entries that were unread: so the read count moves once per receiver, however often apps retry.
async fn mark(state: &AppState, me: &ReceiverRef, ids: &[NotificationId]) -> ApiResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    state.ports.notifications.record_reads(me, ids, Utc::now()).await?;
    Ok(state.ports.inbox.mark_read(me, ids).await?.len())
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
    let id = NotificationId::parse("id", &id).map_err(|_| ApiError::not_found("message"))?;
    let now = now_caught_up(&state).await?;
    let entry = state.ports.inbox.entries_of(&me, std::slice::from_ref(&id)).await?.pop();
    let entry = entry.ok_or_else(|| ApiError::not_found("message"))?;
    let shown = items(&state, std::slice::from_ref(&entry)).await?.pop().filter(|i| i.notification.visible_at(now));
    if shown.is_none() {
        return Err(ApiError::not_found("message"));
    }
    if !entry.read {
        mark(&state, &me, &[id]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Marked {
    /// Messages newly marked read.
    marked: usize,
}

/// Marks every visible message read.
#[utoipa::path(post, path = "/app/v1/inbox/read-all", tag = "app", security(("app_token" = [])),
    responses((status = 200, body = Marked), NeedsToken, UsesBackend))]
pub async fn read_all(State(state): State<AppState>, App(me): App) -> ApiResult<Json<Marked>> {
    let now = now_caught_up(&state).await?;
    let unread: Vec<NotificationId> =
        state.ports.inbox.unread(&me, now, false).await?.into_iter().map(|e| e.notification_id).collect();
    let marked = mark(&state, &me, &unread).await?;
    Ok(Json(Marked { marked }))
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

/// What arrived, changed (read elsewhere), became visible (its window opened) or was revoked since
/// the cursor. Without a cursor it starts from the beginning, so a new device fetches the whole
/// inbox in batches.
#[utoipa::path(get, path = "/app/v1/inbox/sync", tag = "app", security(("app_token" = [])), params(SyncParams),
    responses((status = 200, body = Sync), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn sync(
    State(state): State<AppState>,
    App(me): App,
    QueryParams(p): QueryParams<SyncParams>,
) -> ApiResult<Json<Sync>> {
    let given = p.since.as_deref().map(|s| SyncCursor::decode("since", s)).transpose()?;
    let now = now_caught_up(&state).await?;
    // One more than a batch tells whether anything follows, so `has_more` is never a false promise.
    let mut changed = state.ports.inbox.changed_since(&me, given.unwrap_or_default().version, SYNC_BATCH + 1).await?;
    let more_changes = changed.len() > SYNC_BATCH;
    changed.truncate(SYNC_BATCH);
    // A new device learns revoked messages from its entries; the revocation log is for deltas only.
    let (since, revocations) = match given {
        Some(since) => (since, state.ports.notifications.revocations_since(since.revocation, REVOCATION_BATCH).await?),
        None => {
            let head = state.ports.notifications.revocation_head().await?;
            (SyncCursor { revocation: head, ..SyncCursor::default() }, Vec::new())
        }
    };
    // Entries that arrived earlier but whose window opened since the last sync are news now.
    let opened: Vec<InboxEntry> = match given {
        Some(since) => {
            let last_sync = DateTime::from_timestamp_millis(since.at_ms).unwrap_or_default();
            let opened = state.ports.inbox.opened_between(&me, last_sync, now).await?;
            opened.into_iter().filter(|e| e.version <= since.version).collect()
        }
        None => Vec::new(),
    };
    let revoked_ids: Vec<NotificationId> = revocations.iter().map(|(_, id)| id.clone()).collect();
    let held = state.ports.inbox.entries_of(&me, &revoked_ids).await?;
    let mine: HashSet<&NotificationId> = held.iter().map(|e| &e.notification_id).collect();

    let ids: Vec<NotificationId> = changed.iter().chain(&opened).map(|e| e.notification_id.clone()).collect();
    let notifications: HashMap<NotificationId, Arc<Notification>> = if given.is_some() {
        state.catalog.get_many(&ids).await?
    } else {
        // The cursor starts past every revocation logged so far, so statuses must be read after
        // that point, from the store: a cached copy from before a revoke would hide it for good.
        let fresh = state.ports.notifications.notifications(&ids).await?;
        fresh.into_iter().map(|n| (n.id.clone(), Arc::new(n))).collect()
    };

    let mut cursor = SyncCursor { at_ms: now.timestamp_millis(), ..since };
    let mut out: BTreeMap<NotificationId, SyncItem> = BTreeMap::new();
    let report = |entry: &InboxEntry, out: &mut BTreeMap<NotificationId, SyncItem>| {
        let Some(n) = notifications.get(&entry.notification_id) else { return };
        if n.status == Status::Revoked {
            out.insert(n.id.clone(), SyncItem::revoked(n.id.clone()));
        } else if n.visible_at(now) {
            let item = InboxItem { notification: n.clone(), read: entry.read, version: entry.version };
            out.insert(n.id.clone(), SyncItem::Message(Message::from(&item)));
        }
    };
    for entry in &changed {
        cursor.version = cursor.version.max(entry.version);
        report(entry, &mut out);
    }
    for entry in &opened {
        report(entry, &mut out);
    }
    for (seq, id) in &revocations {
        cursor.revocation = cursor.revocation.max(*seq);
        if mine.contains(id) {
            out.insert(id.clone(), SyncItem::revoked(id.clone()));
        }
    }
    let has_more = more_changes || revocations.len() == REVOCATION_BATCH;
    Ok(Json(Sync { items: out.into_values().collect(), cursor: cursor.encode(), has_more }))
}
