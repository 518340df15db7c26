//! The ops console's API: receivers, notifications, their progress and history, audience preview.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use herald_app::{Creation, NotificationDetails, Reindex};
use herald_domain::audience::AudienceSpec;
use herald_domain::listing::NotificationFilter;
use herald_domain::ports::{Idempotency, Tally};
use herald_domain::search::SearchCursor;
use herald_domain::{
    Action, Actions, AppSchemes, Attributes, Audience, Body, Category, City, Group, ImageUrl, InvalidInput, Locale,
    Locales, LocalizedText, NewNotification, NotificationId, Receiver, ReceiverId, ReceiverKind, ShownVariant, Status,
    Title, ValidityWindow, Variant, Variants,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Admin, Operator};
use super::error::{ApiError, ApiResult, ValidJson};
use super::inbox::ActionView;
use super::openapi::{
    self as doc, Conflicts, NeedsToken, ReadsBody, ReadsPath, ReadsQuery, RefusesContent, UsesBackend,
};
use super::params::{self, PathParams, QueryParams};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverIn {
    #[schema(schema_with = doc::receiver_kind)]
    kind: ReceiverKind,
    #[schema(schema_with = doc::ident)]
    id: ReceiverId,
    #[schema(schema_with = doc::ident)]
    city: City,
    #[serde(default)]
    #[schema(schema_with = doc::groups)]
    groups: Vec<Group>,
    /// Named fields that notifications' `{{receiver.attr.NAME}}` placeholders fill in; replaces
    /// what the receiver had (absent: none).
    #[serde(default)]
    #[schema(schema_with = doc::attributes)]
    attributes: Attributes,
    /// The language it reads notifications in (`zh-CN`); replaces what the receiver had (absent: none).
    #[serde(default)]
    #[schema(schema_with = doc::locale)]
    locale: Option<Locale>,
}

#[derive(Serialize, ToSchema)]
pub struct Upserted {
    upserted: usize,
}

/// Adds or updates receivers (at most 10,000 per call).
#[utoipa::path(post, path = "/admin/v1/receivers/batch", tag = "admin", security(("admin_token" = [])),
    request_body(content = Vec<ReceiverIn>, description = "At most 10,000 receivers"),
    responses((status = 200, body = Upserted), NeedsToken, ReadsBody, UsesBackend))]
pub async fn upsert_receivers(
    State(state): State<AppState>,
    _: Operator,
    ValidJson(batch, _): ValidJson<Vec<ReceiverIn>>,
) -> ApiResult<Json<Upserted>> {
    let receivers = batch.into_iter().enumerate().map(|(i, r)| {
        let receiver = Receiver::new(r.kind, r.id, r.city, r.groups).map_err(|e| e.within(&format!("[{i}]")))?;
        Ok(receiver.with_attributes(r.attributes).with_locale(r.locale))
    });
    let upserted = state.herald.upsert_receivers(receivers).await?;
    Ok(Json(Upserted { upserted }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationIn {
    #[schema(schema_with = doc::title)]
    title: Title,
    #[schema(schema_with = doc::body)]
    body: Body,
    #[schema(schema_with = doc::category)]
    category: Category,
    #[schema(schema_with = doc::receiver_kind)]
    receiver_kind: ReceiverKind,
    #[schema(schema_with = doc::audience)]
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
    /// An image the apps show with it: an `https://` URL.
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    image: Option<String>,
    /// Up to two buttons.
    #[serde(default)]
    #[schema(max_items = 2)]
    actions: Vec<ActionIn>,
    /// Title and body per locale, read by receivers whose imported `locale` is one of them.
    #[serde(default)]
    #[schema(schema_with = doc::locales)]
    locales: BTreeMap<String, LocalizedText>,
    /// Content per user group, tried in order: a receiver is shown the first variant naming one of
    /// its groups, else this notification's own content. At most 10; title and body text in all
    /// (translations and variants included) at most 100,000 characters.
    #[serde(default)]
    #[schema(max_items = 10)]
    variants: Vec<VariantIn>,
}

/// The content receivers in some groups are shown instead of the notification's own.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantIn {
    /// Receivers in any of these groups are shown this variant (unless an earlier one names one of theirs).
    #[schema(schema_with = doc::variant_groups)]
    groups: Vec<Group>,
    #[schema(schema_with = doc::title)]
    title: Title,
    #[schema(schema_with = doc::body)]
    body: Body,
    /// Its own image (the notification's is not inherited): an `https://` URL.
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    image: Option<String>,
    /// Its own buttons (the notification's are not inherited).
    #[serde(default)]
    #[schema(max_items = 2)]
    actions: Vec<ActionIn>,
    /// Its title and body per locale.
    #[serde(default)]
    #[schema(schema_with = doc::locales)]
    locales: BTreeMap<String, LocalizedText>,
}

impl VariantIn {
    fn into_domain(self, schemes: &AppSchemes) -> Result<Variant, InvalidInput> {
        let image = parse_image(self.image.as_deref())?;
        let actions = parse_actions(self.actions, schemes)?;
        Variant::new(self.groups, self.title, self.body, image, actions, Locales::new("locales", self.locales)?)
    }
}

/// A button of a notification.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionIn {
    /// `url`: a web page, `https://` only; `deep_link`: a screen of the app, one of its own schemes
    /// (`HERALD_APP_SCHEMES`, default `herald`). `javascript:`, `data:`, `http:` and the like are refused.
    #[schema(schema_with = doc::action_kind)]
    kind: String,
    /// The link it opens.
    #[schema(max_length = 2048)]
    target: String,
    /// The button's text, one line of at most 40 characters; absent lets the app choose.
    #[serde(default)]
    #[schema(max_length = 40)]
    label: Option<String>,
}

fn parse_image(raw: Option<&str>) -> Result<Option<ImageUrl>, InvalidInput> {
    raw.map(|raw| ImageUrl::parse("image", raw)).transpose()
}

fn parse_actions(actions: Vec<ActionIn>, schemes: &AppSchemes) -> Result<Actions, InvalidInput> {
    let actions = actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Action::parse(&a.kind, &a.target, a.label.as_deref(), schemes)
                .map_err(|e| e.within(&format!("actions[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Actions::new("actions", actions)
}

fn parse_audience(spec: AudienceSpec) -> ApiResult<Audience> {
    Audience::try_from(spec).map_err(|e| e.within("audience").into())
}

impl NotificationIn {
    fn into_domain(self, schemes: &AppSchemes) -> ApiResult<NewNotification> {
        let variants = self
            .variants
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.into_domain(schemes).map_err(|e| e.within(&format!("variants[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let notification = NewNotification {
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
            image: parse_image(self.image.as_deref())?,
            actions: parse_actions(self.actions, schemes)?,
            locales: Locales::new("locales", self.locales)?,
            variants: Variants::new("variants", variants)?,
        };
        notification.check_total_text()?;
        Ok(notification)
    }
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

#[derive(Serialize, ToSchema)]
pub struct Created {
    #[schema(value_type = String)]
    id: NotificationId,
    #[schema(schema_with = doc::status)]
    status: Status,
}

/// Creates a notification; it sends at `send_at` (now when null) unless it is a draft.
#[utoipa::path(post, path = "/admin/v1/notifications", tag = "admin", security(("admin_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255,
        description = "Replays the first answer for the same body; 409 for another body")),
    request_body = NotificationIn,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 200, description = "Replayed: this key was used with this body", body = Created),
        NeedsToken, ReadsBody, Conflicts, UsesBackend))]
pub async fn create_notification(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ValidJson(req, raw): ValidJson<NotificationIn>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let idem = idempotency(&headers, &raw)?;
    let Creation { notification: n, replayed } =
        state.herald.create_notification(req.into_domain(&state.app_schemes)?, idem).await?;
    // `201` for a new notification, `200` for a replay.
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(Created { id: n.id, status: n.status })))
}

pub(super) fn parse_id(raw: &str) -> ApiResult<NotificationId> {
    NotificationId::parse("id", raw).map_err(|_| ApiError::not_found("notification"))
}

fn time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

/// The console's view of a notification: content, status, stats and per-city progress.
#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    #[schema(value_type = String)]
    id: NotificationId,
    #[schema(schema_with = doc::title)]
    title: Title,
    #[schema(schema_with = doc::body)]
    body: Body,
    #[schema(schema_with = doc::category)]
    category: Category,
    #[schema(schema_with = doc::receiver_kind)]
    receiver_kind: ReceiverKind,
    #[schema(schema_with = doc::audience)]
    audience: Audience,
    pinned: bool,
    force_read: bool,
    #[schema(format = DateTime)]
    valid_from: Option<String>,
    #[schema(format = DateTime)]
    valid_until: Option<String>,
    #[schema(format = DateTime)]
    send_at: Option<String>,
    draft: bool,
    /// Absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    image: Option<String>,
    actions: Vec<ActionView>,
    /// Title and body per locale (empty when none).
    #[schema(schema_with = doc::locales)]
    locales: Locales,
    /// Content per user group, in the order tried (empty when none).
    variants: Vec<VariantView>,
    #[schema(schema_with = doc::status)]
    status: Status,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    sent_at: Option<String>,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    stats: Stats,
    cities: Vec<CityView>,
}

/// A variant as submitted.
#[derive(Serialize, ToSchema)]
pub struct VariantView {
    #[schema(schema_with = doc::variant_groups)]
    groups: Vec<Group>,
    #[schema(schema_with = doc::title)]
    title: Title,
    #[schema(schema_with = doc::body)]
    body: Body,
    /// Absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    image: Option<String>,
    actions: Vec<ActionView>,
    #[schema(schema_with = doc::locales)]
    locales: Locales,
}

impl From<&Variant> for VariantView {
    fn from(v: &Variant) -> Self {
        Self {
            groups: v.groups().iter().cloned().collect(),
            title: v.title.clone(),
            body: v.body.clone(),
            image: v.image.as_ref().map(|i| i.as_str().to_owned()),
            actions: v.actions.as_slice().iter().map(ActionView::from).collect(),
            locales: v.locales.clone(),
        }
    }
}

/// `read_rate` is `read / sent` (0 before anything is sent).
#[derive(Serialize, ToSchema)]
pub struct Stats {
    matched: u64,
    sent: u64,
    read: u64,
    read_rate: f64,
    /// Receivers of the audience left out because they opted out of its category (never in
    /// `matched`): an include list's at the start, a selection's as its pages skip them.
    opted_out: u64,
    /// For a notification with variants, `sent` and `read` split by the content each receiver was
    /// shown: per variant in order (one for each, zeros before any is sent; empty without
    /// variants). A receiver's send counts for the variant its groups chose when its page was
    /// delivered, its read for the one its groups choose when it reads.
    variants: Vec<ShownStats>,
    /// The part shown the default content (in no variant's groups); null without variants.
    default: Option<ShownStats>,
}

/// `sent` and `read` of the receivers shown one content; `read_rate` is `read / sent` (0 before
/// anything is sent).
#[derive(Serialize, ToSchema)]
pub struct ShownStats {
    sent: u64,
    read: u64,
    read_rate: f64,
}

impl ShownStats {
    fn of(tally: Tally) -> Self {
        Self { sent: tally.sent, read: tally.read, read_rate: rate(tally.read, tally.sent) }
    }
}

/// `read / sent`, 0 before anything is sent.
fn rate(read: u64, sent: u64) -> f64 {
    if sent == 0 { 0.0 } else { read as f64 / sent as f64 }
}

#[derive(Serialize, ToSchema)]
pub struct CityView {
    #[schema(schema_with = doc::ident)]
    city: City,
    matched: u64,
    sent: u64,
    done: bool,
    opted_out: u64,
}

impl From<NotificationDetails> for NotificationView {
    fn from(NotificationDetails { notification: n, progress, counters }: NotificationDetails) -> Self {
        let c = &n.content;
        let matched: u64 = progress.iter().map(|p| p.matched).sum();
        let opted_out: u64 = progress.iter().map(|p| p.opted_out).sum();
        let read_rate = rate(counters.read, counters.sent);
        let shown = |shown| ShownStats::of(counters.variants.get(&shown).copied().unwrap_or_default());
        let variants = (0..c.variants.as_slice().len() as u8).map(|i| shown(ShownVariant::Variant(i))).collect();
        let default = (!c.variants.is_empty()).then(|| shown(ShownVariant::Default));
        let cities = progress
            .iter()
            .map(|p| CityView {
                city: p.city.clone(),
                matched: p.matched,
                sent: counters.sent_by_city.get(p.city.as_str()).copied().unwrap_or(0),
                done: p.done,
                opted_out: p.opted_out,
            })
            .collect();
        Self {
            id: n.id.clone(),
            title: c.title.clone(),
            body: c.body.clone(),
            category: c.category,
            receiver_kind: c.receiver_kind,
            audience: c.audience.clone(),
            pinned: c.pinned,
            force_read: c.force_read,
            valid_from: time(c.validity.from()),
            valid_until: time(c.validity.until()),
            send_at: time(c.send_at),
            // As submitted, like the other content fields; `status` says where it is now.
            draft: c.draft,
            image: c.image.as_ref().map(|i| i.as_str().to_owned()),
            actions: c.actions.as_slice().iter().map(ActionView::from).collect(),
            locales: c.locales.clone(),
            variants: c.variants.as_slice().iter().map(VariantView::from).collect(),
            status: n.status,
            created_at: n.created_at.to_rfc3339(),
            sent_at: time(n.sent_at),
            revoked_at: time(n.revoked_at),
            stats: Stats { matched, sent: counters.sent, read: counters.read, read_rate, opted_out, variants, default },
            cities,
        }
    }
}

impl NotificationView {
    /// What the live-update stream names this state by: it changes whenever the status, a count or
    /// a city's completion does.
    pub(super) fn version(&self) -> String {
        let done = self.cities.iter().filter(|c| c.done).count();
        let Stats { matched, sent, read, opted_out, .. } = self.stats;
        format!("{}.{matched}.{sent}.{read}.{done}.{opted_out}", self.status.as_str())
    }
}

/// One notification, with its stats and per-city progress.
#[utoipa::path(get, path = "/admin/v1/notifications/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses((status = 200, body = NotificationView), NeedsToken, ReadsPath, UsesBackend))]
pub async fn get_notification(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<NotificationView>> {
    Ok(Json(state.herald.notification(&parse_id(&id)?).await?.into()))
}

/// Each given at most once. Kept as text here so that a bad value is a 422 naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(schema_with = doc::search_text)]
    q: Option<String>,
    /// Named by the audience, or reached by a send.
    #[param(schema_with = doc::ident)]
    city: Option<String>,
    #[param(schema_with = doc::status)]
    status: Option<String>,
    #[param(schema_with = doc::category)]
    category: Option<String>,
    #[param(schema_with = doc::receiver_kind)]
    receiver_kind: Option<String>,
    /// `created_at` at or after this time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// `created_at` before this time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// A `next_cursor` from an earlier page.
    cursor: Option<String>,
    #[param(schema_with = list_limit)]
    limit: Option<String>,
}

/// Notifications per page of the console's list: `LIST_LIMIT` unless asked, at most `MAX_LIST_LIMIT`.
const LIST_LIMIT: usize = 20;
const MAX_LIST_LIMIT: usize = 100;

fn list_limit() -> utoipa::openapi::schema::Schema {
    doc::limit(MAX_LIST_LIMIT)
}

/// A page of the console's list.
#[derive(Serialize, ToSchema)]
pub struct NotificationPage {
    items: Vec<NotificationView>,
    /// Every match, on every page.
    total: u64,
    /// Null when nothing follows.
    next_cursor: Option<String>,
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

/// Admin search over the search mirror: by relevance then newest first with `q` (title and body,
/// Chinese words as words), newest first without; every filter combinable; each with its stats,
/// read from the truth.
#[utoipa::path(get, path = "/admin/v1/notifications", tag = "admin", security(("admin_token" = [])),
    params(ListParams),
    responses((status = 200, body = NotificationPage), NeedsToken, ReadsQuery, UsesBackend))]
pub async fn list_notifications(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(p): QueryParams<ListParams>,
) -> ApiResult<Json<NotificationPage>> {
    let filter = p.filter()?;
    let limit = params::limit(p.limit.as_deref(), LIST_LIMIT, MAX_LIST_LIMIT)?;
    let after = p.cursor.as_deref().map(|c| SearchCursor::decode("cursor", c)).transpose()?;
    let page = state.herald.list(&filter, after.as_ref(), limit).await?;
    let items = page.items.into_iter().map(NotificationView::from).collect();
    Ok(Json(NotificationPage { items, total: page.total, next_cursor: page.next.as_ref().map(SearchCursor::encode) }))
}

#[derive(Serialize, ToSchema)]
pub struct History {
    items: Vec<HistoryItem>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryItem {
    #[schema(format = DateTime)]
    at: String,
    #[schema(schema_with = doc::status)]
    status: Status,
    detail: String,
}

/// A notification's status flow, oldest first.
#[utoipa::path(get, path = "/admin/v1/notifications/{id}/history", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses((status = 200, body = History), NeedsToken, ReadsPath, UsesBackend))]
pub async fn history(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<History>> {
    let items = state.herald.history(&parse_id(&id)?).await?;
    let items =
        items.into_iter().map(|h| HistoryItem { at: h.at.to_rfc3339(), status: h.status, detail: h.detail }).collect();
    Ok(Json(History { items }))
}

/// Releases a draft, unless its window closed while it waited: nobody could ever see it.
#[utoipa::path(post, path = "/admin/v1/notifications/{id}/send", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses((status = 200, body = NotificationView), NeedsToken, ReadsPath, Conflicts, RefusesContent, UsesBackend))]
pub async fn send(
    State(state): State<AppState>,
    _: Operator,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<NotificationView>> {
    let details = state.herald.send(parse_id(&id)?).await?;
    Ok(Json(details.into()))
}

/// Cancels a draft or a scheduled notification before it sends.
#[utoipa::path(post, path = "/admin/v1/notifications/{id}/cancel", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses((status = 200, body = NotificationView), NeedsToken, ReadsPath, Conflicts, UsesBackend))]
pub async fn cancel(
    State(state): State<AppState>,
    _: Operator,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<NotificationView>> {
    let details = state.herald.cancel(parse_id(&id)?).await?;
    Ok(Json(details.into()))
}

/// Takes back a sending or sent notification: gone from every inbox, stats kept. Idempotent: revoking a
/// revoked notification answers 200 again and finishes a revoke that was interrupted.
#[utoipa::path(post, path = "/admin/v1/notifications/{id}/revoke", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses((status = 200, body = NotificationView), NeedsToken, ReadsPath, Conflicts, UsesBackend))]
pub async fn revoke(
    State(state): State<AppState>,
    _: Operator,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<NotificationView>> {
    let details = state.herald.revoke(parse_id(&id)?).await?;
    Ok(Json(details.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    #[schema(schema_with = doc::receiver_kind)]
    receiver_kind: ReceiverKind,
    #[schema(schema_with = doc::audience)]
    audience: AudienceSpec,
    /// The message's category: receivers who opted out of it are counted apart (`opted_out`).
    /// Absent, or `system`, counts nobody apart.
    #[schema(schema_with = doc::category)]
    category: Option<Category>,
    /// A force-read notice reaches everyone, whatever they opted out of.
    #[serde(default)]
    force_read: bool,
    /// The groups of the message's variants, in order: the answer splits `matched` by the variant
    /// each receiver would be shown (`variants`, then `default_matched`).
    #[serde(default)]
    #[schema(max_items = 10)]
    variants: Vec<VariantGroupsIn>,
}

/// A variant as the preview needs it: its groups.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantGroupsIn {
    #[schema(schema_with = doc::variant_groups)]
    groups: Vec<Group>,
}

/// How many of `matched` a variant would be shown to.
#[derive(Serialize, ToSchema)]
pub struct VariantMatch {
    matched: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// Receivers it would reach: the opted out are not among them.
    matched: u64,
    cities: Vec<CityMatch>,
    /// Include-list ids that are not receivers.
    unknown: Vec<String>,
    /// Receivers of the audience who opted out of `category`.
    opted_out: u64,
    /// Per variant asked about, in order, how many of `matched` it would be shown to (empty when
    /// none was asked about).
    variants: Vec<VariantMatch>,
    /// How many of `matched` would be shown the default content (in no variant's groups).
    default_matched: u64,
}

#[derive(Serialize, ToSchema)]
pub struct CityMatch {
    #[schema(schema_with = doc::ident)]
    city: City,
    matched: u64,
    opted_out: u64,
}

/// Who an audience would reach now, per city.
#[utoipa::path(post, path = "/admin/v1/audience/preview", tag = "admin", security(("admin_token" = [])),
    request_body = PreviewIn,
    responses((status = 200, body = Preview), NeedsToken, ReadsBody, UsesBackend))]
pub async fn preview(
    State(state): State<AppState>,
    _: Operator,
    ValidJson(req, _): ValidJson<PreviewIn>,
) -> ApiResult<Json<Preview>> {
    let audience = parse_audience(req.audience)?;
    let opt_out = req.category.and_then(|c| herald_domain::preferences::opt_out_category(c, req.force_read));
    let plan = state.herald.preview(req.receiver_kind, &audience, opt_out).await?;
    let cities = plan
        .cities
        .iter()
        .map(|c| CityMatch { city: c.city.clone(), matched: c.matched, opted_out: c.opted_out })
        .collect();
    let unknown = plan.unknown.iter().map(|id| id.as_str().to_string()).collect();
    let (variants, default_matched) = if req.variants.is_empty() {
        (Vec::new(), plan.matched())
    } else {
        Variants::check_count("variants", req.variants.len())?;
        let groups = req
            .variants
            .into_iter()
            .enumerate()
            .map(|(i, v)| Variant::parse_groups(v.groups).map_err(|e| e.within(&format!("variants[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut split = state.herald.preview_by_variant(req.receiver_kind, &audience, opt_out, &groups).await?;
        let default_matched = split.pop().unwrap_or_default();
        (split.into_iter().map(|matched| VariantMatch { matched }).collect(), default_matched)
    };
    Ok(Json(Preview {
        matched: plan.matched(),
        cities,
        unknown,
        opted_out: plan.opted_out(),
        variants,
        default_matched,
    }))
}

/// The rebuild of the admin search mirror that this api process runs (`POST` starts it).
#[derive(Serialize, ToSchema)]
pub struct ReindexView {
    /// `never_run` (since this process started), `running`, `done` or `failed`.
    state: &'static str,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// Notifications written into the new index (so far, while it runs).
    indexed: u64,
    /// The change-log position the rebuilt index has applied (once done); the feed applies what
    /// changed after it.
    applied: Option<u64>,
    /// Why it failed; the index in use stays.
    error: Option<String>,
}

impl From<Reindex> for ReindexView {
    fn from(r: Reindex) -> Self {
        let at = |t: DateTime<Utc>| Some(t.to_rfc3339());
        let never = ReindexView {
            state: "never_run",
            started_at: None,
            finished_at: None,
            indexed: 0,
            applied: None,
            error: None,
        };
        match r {
            Reindex::NeverRun => never,
            Reindex::Running { started_at, indexed } => {
                ReindexView { state: "running", started_at: at(started_at), indexed, ..never }
            }
            Reindex::Done { started_at, finished_at, fed } => ReindexView {
                state: "done",
                started_at: at(started_at),
                finished_at: at(finished_at),
                indexed: fed.indexed,
                applied: Some(fed.applied),
                ..never
            },
            Reindex::Failed { started_at, finished_at, error } => ReindexView {
                state: "failed",
                started_at: at(started_at),
                finished_at: at(finished_at),
                error: Some(error),
                ..never
            },
        }
    }
}

/// Rebuilds the admin search mirror from SQL beside the one in use, in the background: searches
/// keep answering from the old one, which keeps being fed, until the rebuilt one takes over. A
/// rebuild already running is not started twice (its state is returned).
#[utoipa::path(post, path = "/admin/v1/search/reindex", tag = "admin", security(("admin_token" = [])),
    responses((status = 202, description = "Started, or running already", body = ReindexView), NeedsToken))]
pub async fn start_reindex(State(state): State<AppState>, _: Operator) -> (StatusCode, Json<ReindexView>) {
    (StatusCode::ACCEPTED, Json(state.herald.search_feed().start_rebuild().into()))
}

/// How the rebuild of the search mirror that this api process runs stands.
#[utoipa::path(get, path = "/admin/v1/search/reindex", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = ReindexView), NeedsToken))]
pub async fn reindex_status(State(state): State<AppState>, _: Admin) -> Json<ReindexView> {
    Json(state.herald.search_feed().reindex().into())
}
