//! The console's use cases on notifications: create (idempotently), send, cancel, revoke, and the
//! views of one or a page of them with their progress and counters.

use herald_domain::audience::Target;
use std::collections::HashMap;
use std::time::Duration;

use herald_domain::listing::NotificationFilter;
use herald_domain::ports::{CityProgress, Counters, CreateOutcome, Idempotency, InboxHints, TransitionOutcome};
use herald_domain::search::SearchCursor;
use herald_domain::{HistoryEntry, HistoryEvent, NewNotification, Notification, NotificationId, ReceiverId, Status};

use crate::{AppError, AppResult, Herald};

/// A notification created, or the one an earlier request with the same `Idempotency-Key` created.
#[derive(Debug, Clone)]
pub struct Creation {
    pub notification: Notification,
    /// The key was seen before with this body: nothing new was stored.
    pub replayed: bool,
}

/// A notification with its per-city progress (from the ledger) and its counters (from the inbox
/// store), read now.
#[derive(Debug, Clone)]
pub struct NotificationDetails {
    pub notification: Notification,
    /// In city order; empty before sending began.
    pub progress: Vec<CityProgress>,
    pub counters: Counters,
}

/// A page of the console's list.
#[derive(Debug, Clone)]
pub struct NotificationList {
    pub items: Vec<NotificationDetails>,
    /// Every match, on every page.
    pub total: u64,
    /// Where the next page starts; `None` when nothing follows.
    pub next: Option<SearchCursor>,
}

/// How long the console's list waits for the search mirror to apply what SQL logged before it
/// (read-your-writes); a mirror further behind (its backend down, a rebuild running) answers as it
/// stands.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// A status move the console asks for, and what it is called in an answer and in the history.
struct Move {
    to: Status,
    verb: &'static str,
    event: HistoryEvent,
}

impl Herald {
    /// Stores a new notification (it sends at `send_at`, now when unset, unless it is a draft) and
    /// rings the scheduler. With an `Idempotency-Key` seen before, answers what the first request
    /// got, whatever changed since (the time, the receivers): the key is looked up before any check
    /// that depends on them.
    pub async fn create_notification(
        &self,
        content: NewNotification,
        idempotency: Option<Idempotency>,
    ) -> AppResult<Creation> {
        if let Some(idem) = &idempotency
            && let Some(seen) = self.ports.notifications.replay(idem).await?
        {
            return creation(seen);
        }
        content.check_visible_some_time(self.clock.now())?;
        self.check_include(&content).await?;
        let outcome =
            self.ports.notifications.create_notification(&content, idempotency.as_ref(), self.clock.now()).await?;
        self.wake_scheduler.notify_one();
        creation(outcome)
    }

    /// Refuses an include list naming receivers that do not exist: their messages could never arrive.
    async fn check_include(&self, content: &NewNotification) -> AppResult<()> {
        let kind = content.receiver_kind;
        if !matches!(content.audience.target, Target::Include(_)) {
            return Ok(());
        }
        let plan =
            herald_domain::plan::plan_audience(self.ports.console.receivers.as_ref(), kind, &content.audience, None)
                .await?;
        if plan.unknown.is_empty() {
            return Ok(());
        }
        Err(AppError::UnknownReceivers { kind, unknown: plan.unknown })
    }

    /// Releases a draft, unless its window closed while it waited: nobody could ever see it.
    pub async fn send(&self, id: NotificationId) -> AppResult<NotificationDetails> {
        if let Some(n) = self.ports.notifications.notification(&id).await?
            && n.status == Status::Draft
        {
            n.content.check_visible_some_time(self.clock.now())?;
        }
        self.move_to(id, Move { to: Status::Scheduled, verb: "send", event: HistoryEvent::Released }).await
    }

    /// Cancels a draft or a scheduled notification before it sends.
    pub async fn cancel(&self, id: NotificationId) -> AppResult<NotificationDetails> {
        self.move_to(id, Move { to: Status::Cancelled, verb: "cancel", event: HistoryEvent::Cancelled }).await
    }

    /// Takes back a sending or sent notification: first durably (status, history, revocation log),
    /// then by withholding it in the inbox store. Idempotent: revoking a revoked notification
    /// withholds it again, which finishes a revoke interrupted between the two.
    pub async fn revoke(&self, id: NotificationId) -> AppResult<NotificationDetails> {
        self.move_to(id, Move { to: Status::Revoked, verb: "revoke", event: HistoryEvent::Revoked }).await
    }

    async fn move_to(&self, id: NotificationId, m: Move) -> AppResult<NotificationDetails> {
        let n = match self.ports.notifications.transition(&id, m.to, &m.event, self.clock.now()).await? {
            TransitionOutcome::NotFound => return Err(AppError::NotFound("notification")),
            // Revoking is idempotent: a revoke interrupted after it committed (withholding failed)
            // is finished by trying again.
            TransitionOutcome::Refused(Status::Revoked) if m.to == Status::Revoked => {
                self.ports.notifications.notification(&id).await?.ok_or(AppError::NotFound("notification"))?
            }
            TransitionOutcome::Refused(current) => {
                return Err(AppError::InvalidTransition { verb: m.verb, current });
            }
            TransitionOutcome::Moved(n) => *n,
        };
        if m.to == Status::Revoked {
            // Closes the gap between a consumer's status check and its inbox write.
            self.ports.inbox.withhold(&id).await?;
            // It is gone from every inbox that held it: their apps should fetch.
            self.hint_holders(&n, &*self.hints);
        }
        // The status moved: the inbox reads' cached copy is dropped.
        self.catalog.forget(&id);
        self.wake_scheduler.notify_one();
        self.details_of(n).await
    }

    /// Tells the apps whose inbox may hold `n` to fetch: an include list's receivers by name, a
    /// broadcast's whole kind (one hint per process, never one per receiver: a broadcast may hold
    /// millions).
    pub(crate) fn hint_holders(&self, n: &Notification, hints: &dyn InboxHints) {
        let (kind, audience) = (n.content.receiver_kind, &n.content.audience);
        match &audience.target {
            Target::Include(ids) => {
                let ids: Vec<ReceiverId> = ids.difference(&audience.exclude).cloned().collect();
                hints.changed(kind, &ids);
            }
            Target::Selection(_) => hints.everyone(kind),
        }
    }

    /// One notification, with its progress and counters.
    pub async fn notification(&self, id: &NotificationId) -> AppResult<NotificationDetails> {
        let n = self.ports.console.notifications.notification(id).await?.ok_or(AppError::NotFound("notification"))?;
        self.details_of(n).await
    }

    async fn details_of(&self, notification: Notification) -> AppResult<NotificationDetails> {
        let progress = self.ports.console.ledger.progress(&notification.id).await?;
        let counters = self.ports.inbox.counters(&notification.id).await?;
        Ok(NotificationDetails { notification, progress, counters })
    }

    /// A notification's status flow, oldest first.
    pub async fn history(&self, id: &NotificationId) -> AppResult<Vec<HistoryEntry>> {
        let items = self.ports.console.notifications.history(id).await?;
        if items.is_empty() {
            return Err(AppError::NotFound("notification"));
        }
        Ok(items)
    }

    /// Up to `limit` notifications matching `filter` after `after`, from the search mirror: by
    /// relevance then newest first with text, else newest first. The mirror first applies what SQL
    /// logged until now, so what the console just wrote is listed; each hit's details are read
    /// from the truth, in three queries for the whole page whatever its length.
    pub async fn list(
        &self,
        filter: &NotificationFilter,
        after: Option<&SearchCursor>,
        limit: usize,
    ) -> AppResult<NotificationList> {
        match tokio::time::timeout(CATCH_UP_WAIT, self.search_feed.round()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "search: the mirror could not catch up; listing it as it stands"),
            Err(_) => tracing::warn!("search: the mirror is still catching up; listing it as it stands"),
        }
        let hits = self.ports.search.search(filter, after, limit).await?;
        let mut found: HashMap<NotificationId, Notification> = self
            .ports
            .console
            .notifications
            .notifications(&hits.ids)
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut progress = self.ports.console.ledger.progress_of(&hits.ids).await?;
        let mut counters = self.ports.inbox.counters_of(&hits.ids).await?;
        let items = hits
            .ids
            .iter()
            .filter_map(|id| found.remove(id))
            .map(|n| NotificationDetails {
                progress: progress.remove(&n.id).unwrap_or_default(),
                counters: counters.remove(&n.id).unwrap_or_default(),
                notification: n,
            })
            .collect();
        Ok(NotificationList { items, total: hits.total, next: hits.next })
    }
}

fn creation(outcome: CreateOutcome) -> AppResult<Creation> {
    match outcome {
        CreateOutcome::Created(notification) => Ok(Creation { notification, replayed: false }),
        CreateOutcome::Replayed(notification) => Ok(Creation { notification, replayed: true }),
        CreateOutcome::KeyReused => Err(AppError::IdempotencyKeyReused),
    }
}
