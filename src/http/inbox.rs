//! The rider and merchant apps' API: one inbox per token.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use herald_domain::{
    InboxCursor, InboxEntry, InboxItem, InboxView, Notification, NotificationId, ReceiverRef, Status, SyncCursor,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::App;
use super::error::{ApiError, ApiResult};
use super::{AppState, params};

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 50;
/// Entries per sync response.
const SYNC_BATCH: usize = 100;
/// Revocations read per sync call.
const REVOCATION_BATCH: usize = 1000;

#[derive(Deserialize)]
pub struct Params {
    cursor: Option<String>,
    limit: Option<String>,
    since: Option<String>,
}

/// The receiver's visible inbox now.
async fn view(state: &AppState, me: &ReceiverRef) -> ApiResult<InboxView> {
    let entries = state.ports.inbox.entries(me).await?;
    let ids: Vec<NotificationId> = entries.iter().map(|e| e.notification_id.clone()).collect();
    let notifications = state.catalog.get_many(&ids).await?;
    let items = entries.into_iter().filter_map(|e| {
        let notification = notifications.get(&e.notification_id)?.clone();
        Some(InboxItem { notification, read: e.read, version: e.version })
    });
    Ok(InboxView::new(items, Utc::now()))
}

fn item_json(item: &InboxItem) -> Value {
    let n = &item.notification;
    json!({
        "id": n.id,
        "title": n.content.title,
        "body": n.content.body,
        "category": n.content.category,
        "pinned": n.content.pinned,
        "force_read": n.content.force_read,
        "read": item.read,
        "sent_at": n.sent_at.map(|t| t.to_rfc3339()),
        "valid_until": n.content.validity.until().map(|t| t.to_rfc3339()),
    })
}

pub async fn list(
    State(state): State<AppState>,
    App(me): App,
    q: Result<Query<Params>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let p = params::query(q)?;
    let limit = params::limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = p.cursor.as_deref().map(|c| InboxCursor::decode("cursor", c)).transpose()?;
    let view = view(&state, &me).await?;
    let (items, next) = view.page(cursor.as_ref(), limit);
    Ok(Json(json!({
        "items": items.iter().map(item_json).collect::<Vec<_>>(),
        "next_cursor": next.as_ref().map(InboxCursor::encode),
        "has_more": next.is_some(),
    })))
}

pub async fn unread_count(State(state): State<AppState>, App(me): App) -> ApiResult<Json<Value>> {
    let view = view(&state, &me).await?;
    Ok(Json(json!({
        "unread": view.unread().count(),
        "force_read_pending": view.force_read_pending().count(),
    })))
}

pub async fn force_read(State(state): State<AppState>, App(me): App) -> ApiResult<Json<Value>> {
    let view = view(&state, &me).await?;
    Ok(Json(json!({ "items": view.force_read_pending().map(item_json).collect::<Vec<_>>() })))
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

pub async fn read_one(State(state): State<AppState>, App(me): App, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = NotificationId::parse("id", &id).map_err(|_| ApiError::not_found("message"))?;
    let view = view(&state, &me).await?;
    let item = view.get(&id).ok_or_else(|| ApiError::not_found("message"))?;
    if !item.read {
        mark(&state, &me, &[id]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn read_all(State(state): State<AppState>, App(me): App) -> ApiResult<Json<Value>> {
    let view = view(&state, &me).await?;
    let unread: Vec<NotificationId> = view.unread().map(|i| i.notification.id.clone()).collect();
    let marked = mark(&state, &me, &unread).await?;
    Ok(Json(json!({ "marked": marked })))
}

/// What arrived, changed (read elsewhere), became visible (its window opened) or was revoked since
/// the cursor. Without a cursor it starts from the beginning, so a new device fetches the whole
/// inbox in batches.
pub async fn sync(
    State(state): State<AppState>,
    App(me): App,
    q: Result<Query<Params>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let p = params::query(q)?;
    let given = p.since.as_deref().map(|s| SyncCursor::decode("since", s)).transpose()?;
    let now = Utc::now();
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
    // The whole inbox is needed for window openings and for "was the revoked one mine".
    let entries = state.ports.inbox.entries(&me).await?;
    let ids: Vec<NotificationId> = entries.iter().map(|e| e.notification_id.clone()).collect();
    let notifications = if given.is_some() {
        state.catalog.get_many(&ids).await?
    } else {
        // The cursor starts past every revocation logged so far, so statuses must be read after
        // that point, from the store: a cached copy from before a revoke would hide it for good.
        let fresh = state.ports.notifications.notifications(&ids).await?;
        fresh.into_iter().map(|n| (n.id.clone(), std::sync::Arc::new(n))).collect()
    };

    let mut cursor = SyncCursor { at_ms: now.timestamp_millis(), ..since };
    let mut out: BTreeMap<NotificationId, Value> = BTreeMap::new();
    let report = |entry: &InboxEntry, out: &mut BTreeMap<NotificationId, Value>| {
        let Some(n) = notifications.get(&entry.notification_id) else { return };
        if n.status == Status::Revoked {
            out.insert(n.id.clone(), json!({ "id": n.id, "revoked": true }));
        } else if n.visible_at(now) {
            let item = InboxItem { notification: n.clone(), read: entry.read, version: entry.version };
            out.insert(n.id.clone(), item_json(&item));
        }
    };
    for entry in &changed {
        cursor.version = cursor.version.max(entry.version);
        report(entry, &mut out);
    }
    // Entries that arrived earlier but whose window opened since the last sync are news now.
    if given.is_some() {
        let opened = |n: &Notification| n.content.validity.from().is_some_and(|f| f.timestamp_millis() > since.at_ms);
        for entry in entries.iter().filter(|e| e.version <= since.version) {
            if notifications.get(&entry.notification_id).is_some_and(|n| opened(n)) {
                report(entry, &mut out);
            }
        }
    }
    let mine: HashSet<&NotificationId> = ids.iter().collect();
    for (seq, id) in &revocations {
        cursor.revocation = cursor.revocation.max(*seq);
        if mine.contains(id) {
            out.insert(id.clone(), json!({ "id": id, "revoked": true }));
        }
    }
    let has_more = more_changes || revocations.len() == REVOCATION_BATCH;
    Ok(Json(json!({
        "items": out.into_values().collect::<Vec<_>>(),
        "cursor": cursor.encode(),
        "has_more": has_more,
    })))
}
