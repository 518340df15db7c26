//! The ops console's API: receivers, notifications, their progress and history, audience preview.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use herald_domain::audience::{AudienceSpec, Target};
use herald_domain::listing::{ListCursor, NotificationFilter};
use herald_domain::ports::{CityProgress, Counters, CreateOutcome, Idempotency, TransitionOutcome};
use herald_domain::{
    Audience, Body, Category, City, Group, NewNotification, Notification, NotificationId, Receiver, ReceiverId,
    ReceiverKind, Status, Title, ValidityWindow,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::auth::{Admin, Operator};
use super::error::{ApiError, ApiResult, ValidJson};
use super::{AppState, params};

/// Receivers per batch call; more go through `herald receivers import`.
pub const MAX_BATCH: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverIn {
    kind: ReceiverKind,
    id: ReceiverId,
    city: City,
    #[serde(default)]
    groups: Vec<Group>,
}

pub async fn upsert_receivers(
    State(state): State<AppState>,
    _: Operator,
    ValidJson(batch, _): ValidJson<Vec<ReceiverIn>>,
) -> ApiResult<Json<Value>> {
    if batch.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "batch_too_large",
            format!("at most {MAX_BATCH} receivers per call; use `herald receivers import` for more"),
        ));
    }
    // A receiver named twice is upserted once, as its last entry says, and counted once.
    let mut distinct = BTreeMap::new();
    for (i, r) in batch.into_iter().enumerate() {
        let receiver = Receiver::new(r.kind, r.id, r.city, r.groups).map_err(|e| e.within(&format!("[{i}]")))?;
        distinct.insert((receiver.kind, receiver.id.clone()), receiver);
    }
    let receivers: Vec<Receiver> = distinct.into_values().collect();
    state.ports.receivers.upsert_receivers(&receivers).await?;
    Ok(Json(json!({ "upserted": receivers.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationIn {
    title: Title,
    body: Body,
    category: Category,
    receiver_kind: ReceiverKind,
    audience: AudienceSpec,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    force_read: bool,
    #[serde(default)]
    valid_from: Option<DateTime<Utc>>,
    #[serde(default)]
    valid_until: Option<DateTime<Utc>>,
    #[serde(default)]
    send_at: Option<DateTime<Utc>>,
    #[serde(default)]
    draft: bool,
}

fn parse_audience(spec: AudienceSpec) -> ApiResult<Audience> {
    Audience::try_from(spec).map_err(|e| e.within("audience").into())
}

impl NotificationIn {
    fn into_domain(self) -> ApiResult<NewNotification> {
        Ok(NewNotification {
            title: self.title,
            body: self.body,
            category: self.category,
            receiver_kind: self.receiver_kind,
            audience: parse_audience(self.audience)?,
            pinned: self.pinned,
            force_read: self.force_read,
            validity: ValidityWindow::new(self.valid_from, self.valid_until)?,
            send_at: self.send_at.map(herald_domain::notification::to_millis),
            draft: self.draft,
        })
    }
}

/// Refuses an include list naming receivers that do not exist: their messages could never arrive.
async fn check_include(state: &AppState, kind: ReceiverKind, audience: &Audience) -> ApiResult<()> {
    if !matches!(audience.target, Target::Include(_)) {
        return Ok(());
    }
    let plan = herald_domain::plan::plan_audience(state.ports.receivers.as_ref(), kind, audience).await?;
    if plan.unknown.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = plan.unknown.iter().take(10).map(ReceiverId::as_str).collect();
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_receivers",
        format!("{} unknown {} ids, such as: {}", plan.unknown.len(), kind, shown.join(", ")),
    )
    .with_field("audience.include"))
}

fn idempotency(headers: &HeaderMap, body: &[u8]) -> ApiResult<Option<Idempotency>> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let key = raw.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= 255).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "1 to 255 visible ASCII characters")
            .with_field("Idempotency-Key")
    })?;
    // The same body means the same JSON value, whatever its spacing or key order.
    let canonical: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let digest = Sha256::digest(serde_json::to_vec(&canonical).unwrap_or_default());
    let fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(Idempotency { key: key.to_string(), fingerprint }))
}

pub async fn create_notification(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ValidJson(req, raw): ValidJson<NotificationIn>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let idem = idempotency(&headers, &raw)?;
    let content = req.into_domain()?;
    // A replay answers what the first request got, whatever has changed since (time, receivers).
    if let Some(idem) = &idem
        && let Some(seen) = state.ports.notifications.replay(idem).await?
    {
        return created_reply(seen);
    }
    content.check_visible_some_time(Utc::now())?;
    check_include(&state, content.receiver_kind, &content.audience).await?;
    let outcome = state.ports.notifications.create_notification(&content, idem.as_ref(), Utc::now()).await?;
    state.wake_scheduler.notify_one();
    created_reply(outcome)
}

/// `201` for a new notification, `200` for a replay, `409` for a key reused with another body.
fn created_reply(outcome: CreateOutcome) -> ApiResult<(StatusCode, Json<Value>)> {
    let (status, n) = match outcome {
        CreateOutcome::Created(n) => (StatusCode::CREATED, n),
        CreateOutcome::Replayed(n) => (StatusCode::OK, n),
        CreateOutcome::KeyReused => {
            return Err(ApiError::conflict(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ));
        }
    };
    Ok((status, Json(json!({ "id": n.id, "status": n.status }))))
}

fn parse_id(raw: &str) -> ApiResult<NotificationId> {
    NotificationId::parse("id", raw).map_err(|_| ApiError::not_found("notification"))
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

/// The console's view of a notification, with its progress and counters read now.
async fn view_of(state: &AppState, n: &Notification) -> ApiResult<Value> {
    let progress = state.ports.ledger.progress(&n.id).await?;
    let counters = state.ports.inbox.counters(&n.id).await?;
    Ok(notification_json(n, &progress, &counters))
}

/// The console's view of a notification: content, status, stats and per-city progress.
fn notification_json(n: &Notification, progress: &[CityProgress], counters: &Counters) -> Value {
    let c = &n.content;
    let matched: u64 = progress.iter().map(|p| p.matched).sum();
    let read_rate = if counters.sent == 0 { 0.0 } else { counters.read as f64 / counters.sent as f64 };
    let cities: Vec<Value> = progress
        .iter()
        .map(|p| {
            json!({
                "city": p.city,
                "matched": p.matched,
                "sent": counters.sent_by_city.get(p.city.as_str()).copied().unwrap_or(0),
                "done": p.done,
            })
        })
        .collect();
    json!({
        "id": n.id,
        "title": c.title,
        "body": c.body,
        "category": c.category,
        "receiver_kind": c.receiver_kind,
        "audience": c.audience,
        "pinned": c.pinned,
        "force_read": c.force_read,
        "valid_from": time(c.validity.from()),
        "valid_until": time(c.validity.until()),
        "send_at": time(c.send_at),
        // As submitted, like the other content fields; `status` says where it is now.
        "draft": c.draft,
        "status": n.status,
        "created_at": n.created_at.to_rfc3339(),
        "sent_at": time(n.sent_at),
        "revoked_at": time(n.revoked_at),
        "stats": { "matched": matched, "sent": counters.sent, "read": counters.read, "read_rate": read_rate },
        "cities": cities,
    })
}

pub async fn get_notification(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let n = state.ports.notifications.notification(&id).await?.ok_or_else(|| ApiError::not_found("notification"))?;
    Ok(Json(view_of(&state, &n).await?))
}

#[derive(Deserialize)]
pub struct ListParams {
    q: Option<String>,
    city: Option<String>,
    status: Option<String>,
    category: Option<String>,
    receiver_kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// An RFC 3339 time from a query string, where an unescaped `+08:00` arrives as ` 08:00`.
fn instant(field: &str, raw: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    raw.map(|r| {
        DateTime::parse_from_rfc3339(&r.replace(' ', "+"))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::from(herald_domain::InvalidInput::new(field, "must be an RFC 3339 time")))
    })
    .transpose()
}

impl ListParams {
    fn filter(&self) -> ApiResult<NotificationFilter> {
        Ok(NotificationFilter {
            text: self.q.as_deref().map(|q| NotificationFilter::parse_text("q", q)).transpose()?.flatten(),
            city: self.city.as_deref().map(|c| City::parse("city", c)).transpose()?,
            status: self.status.as_deref().map(|s| Status::parse("status", s)).transpose()?,
            category: self.category.as_deref().map(|c| Category::parse("category", c)).transpose()?,
            receiver_kind: self
                .receiver_kind
                .as_deref()
                .map(|k| ReceiverKind::parse("receiver_kind", k))
                .transpose()?,
            from: instant("from", self.from.as_deref())?,
            to: instant("to", self.to.as_deref())?,
        })
    }
}

/// Notifications newest first, filtered; each with its stats. `q` is a substring match on title
/// and body until the search mirror serves it.
pub async fn list_notifications(
    State(state): State<AppState>,
    _: Admin,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let p = params::query(q)?;
    let filter = p.filter()?;
    let limit = params::limit(p.limit.as_deref(), 20, 100)?;
    let after = p.cursor.as_deref().map(|c| ListCursor::decode("cursor", c)).transpose()?;
    let (found, total) = state.ports.notifications.list(&filter, after.as_ref(), limit).await?;
    // Two reads for the whole page, whatever its length: progress from SQL, counters from the inbox store.
    let ids: Vec<NotificationId> = found.iter().map(|n| n.id.clone()).collect();
    let mut progress = state.ports.ledger.progress_of(&ids).await?;
    let mut counters = state.ports.inbox.counters_of(&ids).await?;
    let items: Vec<Value> = found
        .iter()
        .map(|n| {
            let p = progress.remove(&n.id).unwrap_or_default();
            notification_json(n, &p, &counters.remove(&n.id).unwrap_or_default())
        })
        .collect();
    let next = (found.len() == limit)
        .then(|| found.last().map(|n| ListCursor { created_ms: n.created_at.timestamp_millis(), id: n.id.clone() }))
        .flatten();
    Ok(Json(json!({ "items": items, "total": total, "next_cursor": next.as_ref().map(ListCursor::encode) })))
}

pub async fn history(State(state): State<AppState>, _: Admin, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let items = state.ports.notifications.history(&id).await?;
    if items.is_empty() {
        return Err(ApiError::not_found("notification"));
    }
    let items: Vec<Value> =
        items.iter().map(|h| json!({ "at": h.at.to_rfc3339(), "status": h.status, "detail": h.detail })).collect();
    Ok(Json(json!({ "items": items })))
}

async fn move_to(state: &AppState, id: NotificationId, to: Status, verb: &str, detail: &str) -> ApiResult<Json<Value>> {
    match state.ports.notifications.transition(&id, to, detail, Utc::now()).await? {
        TransitionOutcome::NotFound => Err(ApiError::not_found("notification")),
        TransitionOutcome::Refused(current) => Err(ApiError::conflict(
            "invalid_transition",
            format!("cannot {verb} a notification that is {}", current.as_str()),
        )),
        TransitionOutcome::Moved(n) => {
            if to == Status::Revoked {
                // Closes the gap between a consumer's status check and its inbox write.
                state.ports.inbox.withhold(&id).await?;
            }
            state.catalog.forget(&id);
            state.wake_scheduler.notify_one();
            Ok(Json(view_of(state, &n).await?))
        }
    }
}

/// Releases a draft, unless its window closed while it waited: nobody could ever see it.
pub async fn send(State(state): State<AppState>, _: Operator, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    if let Some(n) = state.ports.notifications.notification(&id).await?
        && n.status == Status::Draft
    {
        n.content.check_visible_some_time(Utc::now())?;
    }
    move_to(&state, id, Status::Scheduled, "send", "released from draft").await
}

pub async fn cancel(State(state): State<AppState>, _: Operator, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    move_to(&state, parse_id(&id)?, Status::Cancelled, "cancel", "cancelled before sending").await
}

pub async fn revoke(State(state): State<AppState>, _: Operator, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    move_to(&state, parse_id(&id)?, Status::Revoked, "revoke", "revoked: removed from every inbox").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    receiver_kind: ReceiverKind,
    audience: AudienceSpec,
}

pub async fn preview(
    State(state): State<AppState>,
    _: Operator,
    ValidJson(req, _): ValidJson<PreviewIn>,
) -> ApiResult<Json<Value>> {
    let audience = parse_audience(req.audience)?;
    let plan = herald_domain::plan::plan_audience(state.ports.receivers.as_ref(), req.receiver_kind, &audience).await?;
    let cities: Vec<Value> = plan.cities.iter().map(|c| json!({ "city": c.city, "matched": c.matched })).collect();
    let unknown: Vec<&str> = plan.unknown.iter().map(ReceiverId::as_str).collect();
    Ok(Json(json!({ "matched": plan.matched(), "cities": cities, "unknown": unknown })))
}
