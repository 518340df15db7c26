//! Live updates over server-sent events: a notification's progress for the console, and "your
//! inbox changed" hints for the apps (which then fetch with the ordinary endpoints). Each stream
//! sends heartbeats, honours `Last-Event-ID`, ends after `max_age` (the client reconnects) or at
//! shutdown, and holds one of its token's few slots while open. The server's request deadline
//! covers a handler's answer, not a streamed body, so it never cuts a stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt as _};
use herald_app::HintId;
use herald_domain::{NotificationId, Status};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::AppState;
use super::admin::{NotificationView, parse_id};
use super::auth::{Admin, App};
use super::error::{ApiError, ApiResult};
use super::openapi::{NeedsToken, OpensStream, ReadsPath, UsesBackend};
use super::params::PathParams;

/// How often a notification's stream looks at its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The streams' settings (`HERALD_EVENTS_*`).
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub heartbeat: Duration,
    pub max_age: Duration,
    pub per_token: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self { heartbeat: Duration::from_secs(15), max_age: Duration::from_secs(600), per_token: 4 }
    }
}

/// The open streams of this process, counted per token.
pub struct Streams {
    limits: StreamLimits,
    shutdown: CancellationToken,
    open: Mutex<HashMap<String, usize>>,
}

impl Streams {
    pub fn new(limits: StreamLimits, shutdown: CancellationToken) -> Self {
        Self { limits, shutdown, open: Mutex::new(HashMap::new()) }
    }

    /// A slot for one more stream of the request's token, or 429.
    fn slot(self: &Arc<Self>, headers: &HeaderMap) -> ApiResult<Slot> {
        // The extractor already verified this header; it is the token's identity here.
        let token = headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(token.clone()).or_default();
        if *count >= self.limits.per_token {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "this token already holds {} live-update streams (HERALD_EVENTS_PER_TOKEN); close one",
                    self.limits.per_token
                ),
            ));
        }
        *count += 1;
        Ok(Slot { streams: self.clone(), token })
    }

    /// `events` as an SSE response with heartbeats, ending at `max_age` or shutdown; `slot` is
    /// given back when the stream ends or the client goes away.
    fn respond<S>(&self, slot: Slot, events: S) -> Response
    where
        S: Stream<Item = Event> + Send + 'static,
    {
        let ends = {
            let (shutdown, max_age) = (self.shutdown.clone(), self.limits.max_age);
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(max_age) => {}
                }
            }
        };
        let events = events.take_until(ends).map(move |event| {
            let _held = &slot;
            Ok::<_, Infallible>(event)
        });
        Sse::new(events).keep_alive(KeepAlive::new().interval(self.limits.heartbeat).text("heartbeat")).into_response()
    }
}

/// One open stream of a token.
struct Slot {
    streams: Arc<Streams>,
    token: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.token);
            }
        }
    }
}

/// One event of a stream, as the description documents it (per event, as `text/event-stream`
/// schemas are read).
#[derive(ToSchema)]
pub struct StreamEvent {
    /// `ready` or `hint` (the apps' stream); `progress` or `done` (a notification's).
    #[schema(schema_with = event_names)]
    event: &'static str,
    /// What to send as `Last-Event-ID` when reconnecting.
    id: String,
    /// `{}` for the apps' hints; the notification's JSON view for its progress.
    data: String,
}

fn event_names() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["ready", "hint", "progress", "done"]))
        .into()
}

impl From<StreamEvent> for Event {
    fn from(e: StreamEvent) -> Self {
        Event::default().event(e.event).id(e.id).data(e.data)
    }
}

fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok())
}

/// Hints that this app's inbox or unread count changed: first `ready` (fetch now), then `hint`
/// after each change (changes in quick succession collapse into one). The data is never in the
/// stream: fetch it with `GET /app/v1/inbox`, `/unread-count` or `/sync`. With `Last-Event-ID`,
/// a change missed while disconnected is hinted at once (any value is taken: one the server
/// cannot place is hinted too).
#[utoipa::path(get, path = "/app/v1/inbox/events", tag = "app", security(("app_token" = [])),
    responses(
        (status = 200, description = "An event stream: `ready`, then `hint`s; `: heartbeat` comments between",
            content_type = "text/event-stream", body = StreamEvent),
        NeedsToken, OpensStream))]
pub async fn inbox_events(State(state): State<AppState>, App(me): App, headers: HeaderMap) -> ApiResult<Response> {
    let slot = state.streams.slot(&headers)?;
    let listener = state.herald.inbox_hub().listen(me, last_event_id(&headers));
    let hint = |event, id: HintId| Event::from(StreamEvent { event, id: id.encode(), data: "{}".to_string() });
    let ready = hint("ready", listener.opened_at());
    let hints = stream::unfold(listener, move |mut listener| async move {
        let id = listener.next().await;
        Some((hint("hint", id), listener))
    });
    Ok(state.streams.respond(slot, stream::once(async { ready }).chain(hints)))
}

/// A notification's progress while it sends: a `progress` event (the notification as
/// `GET /admin/v1/notifications/{id}` shows it) whenever its status or counts move, and `done`
/// with the last state once it is sent, cancelled or revoked, which ends the stream. With
/// `Last-Event-ID`, the state that id names is not sent again.
#[utoipa::path(get, path = "/admin/v1/notifications/{id}/events", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses(
        (status = 200, description = "An event stream of `progress` events, then `done`",
            content_type = "text/event-stream", body = StreamEvent),
        NeedsToken, ReadsPath, UsesBackend, OpensStream))]
pub async fn notification_events(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    // Unknown ids are refused before a slot is taken or a stream opened.
    state.herald.notification(&id).await?;
    let slot = state.streams.slot(&headers)?;
    let seen = last_event_id(&headers).map(str::to_string);
    let progress = stream::unfold(Progress { state: state.clone(), id, seen, finished: false }, Progress::next);
    Ok(state.streams.respond(slot, progress))
}

struct Progress {
    state: AppState,
    id: NotificationId,
    /// The last state sent (or the client's `Last-Event-ID`): the same is not sent again.
    seen: Option<String>,
    finished: bool,
}

impl Progress {
    async fn next(mut self) -> Option<(Event, Self)> {
        if self.finished {
            return None;
        }
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::time::sleep(PROGRESS_EVERY).await;
            }
            let details = match self.state.herald.notification(&self.id).await {
                Ok(details) => details,
                Err(e) => {
                    // A busy console pool or a backend hiccup: try again on the next look.
                    tracing::debug!(error = %e, "reading a notification's progress failed");
                    continue;
                }
            };
            let status = details.notification.status;
            let final_ = matches!(status, Status::Sent | Status::Cancelled | Status::Revoked);
            let view = NotificationView::from(details);
            let version = view.version();
            if !final_ && self.seen.as_deref() == Some(version.as_str()) {
                continue;
            }
            let data = serde_json::to_string(&view).unwrap_or_default();
            self.seen = Some(version.clone());
            self.finished = final_;
            let event = StreamEvent { event: if final_ { "done" } else { "progress" }, id: version, data };
            return Some((event.into(), self));
        }
    }
}
