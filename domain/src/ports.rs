//! The ports: what Herald needs from a SQL store, a queue and an inbox store. Each has one contract
//! test suite that every adapter (embedded or server-backed) must pass.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audience::Selection;
use crate::history::HistoryEvent;
use crate::inbox::{EntryMeta, InboxCursor, InboxEntry};
use crate::notification::{Category, HistoryEntry, NewNotification, Notification, NotificationId, Status};
use crate::page::{Page, PageKey};
use crate::preferences::Preferences;
use crate::receiver::{City, Receiver, ReceiverId, ReceiverKind, ReceiverRef};
use crate::variant::ShownVariant;

/// A backend failed. Callers retry or report; the message says which backend and what it did.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {source}")]
pub struct PortError {
    pub backend: &'static str,
    pub failure: Failure,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Why a port call failed, as far as a caller answers differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The backend is down, or failed: try again later.
    Unavailable,
    /// The connections set aside for this kind of work were all busy for as long as it may wait.
    Busy,
    /// The statement ran longer than its kind of work may, and was stopped.
    TimedOut,
}

impl PortError {
    pub fn new(backend: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::with(backend, Failure::Unavailable, source)
    }

    pub fn with(
        backend: &'static str,
        failure: Failure,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self { backend, failure, source: source.into() }
    }
}

pub type PortResult<T> = Result<T, PortError>;

// ---------------------------------------------------------------------------------------------
// SQL: the truth.
// ---------------------------------------------------------------------------------------------

/// Receivers by kind, city and group.
#[async_trait]
pub trait ReceiverDirectory: Send + Sync {
    /// Inserts or replaces each receiver; returns how many were new or changed city or groups (an
    /// unchanged receiver is not rewritten and costs nothing more). In the same transaction, those
    /// are paged late into every broadcast `plan::late_deliveries` gives them (their stored
    /// preferences considered): its pages
    /// (`LateDelivery::pages`) go to the outbox numbered after that city's send task,
    /// which counts them as published and matched and is no longer done (created finished if the
    /// city had none), so delivering them settles `matched` to what they added as usual.
    async fn upsert_receivers(&self, receivers: &[Receiver]) -> PortResult<u64>;
    /// The known receivers among `ids` (unknown ids are simply absent).
    async fn lookup_receivers(&self, kind: ReceiverKind, ids: &[ReceiverId]) -> PortResult<Vec<Receiver>>;
    /// How many receivers of `kind` the selection matches, per city (cities with none are absent).
    async fn count_selection(&self, kind: ReceiverKind, selection: &Selection) -> PortResult<Vec<(City, u64)>>;
    /// The next up to `limit` matching ids in `city`, in id order, strictly after `after` (keyset).
    async fn page_selection(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        city: &City,
        after: Option<&ReceiverId>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverId>>;
    /// Up to `limit` receivers (of `kind`, in `city`, when given) after `after`, by (kind, id).
    async fn list_receivers(
        &self,
        kind: Option<ReceiverKind>,
        city: Option<&City>,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<Receiver>>;
    /// Removes a receiver with its groups, preferences, read receipts and archives, in one
    /// transaction; false if there was none. (Its inbox is the inbox store's:
    /// `InboxStore::erase_receiver`.)
    async fn delete_receiver(&self, kind: ReceiverKind, id: &ReceiverId) -> PortResult<bool>;
    /// The receiver's preferences (none opted out when it never set any, or is not stored).
    async fn preferences(&self, receiver: &ReceiverRef) -> PortResult<Preferences>;
    /// Replaces the receiver's preferences (one row per category opted out of, never per message).
    /// In the same transaction, for each category it opts back into, a stored receiver is paged
    /// late, as `upsert_receivers` pages a late joiner, into every broadcast of that category
    /// `plan::late_deliveries` gives it: what it missed comes back while still valid, and what it
    /// already holds is counted once by the inbox store.
    async fn set_preferences(&self, receiver: &ReceiverRef, prefs: &Preferences) -> PortResult<()>;
    /// Those among `ids` (receivers of `kind`) who opted out of `category`, in no particular order:
    /// one indexed lookup per page a send pages.
    async fn opted_out(
        &self,
        kind: ReceiverKind,
        category: Category,
        ids: &[ReceiverId],
    ) -> PortResult<Vec<ReceiverId>>;
    /// How many receivers of `kind` the selection matches that opted out of `category`, per city
    /// (cities with none are absent).
    async fn count_opted_out(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        category: Category,
    ) -> PortResult<Vec<(City, u64)>>;
}

/// An `Idempotency-Key` with the fingerprint of the request body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(Notification),
    /// The key was seen before with the same body: the notification it created then.
    Replayed(Notification),
    /// The key was seen before with another body.
    KeyReused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Moved(Box<Notification>),
    NotFound,
    /// The notification is in a status from which this move is not allowed.
    Refused(Status),
}

/// Notifications, their history, read receipts, archives and revocations.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores a new notification and its first history entry (`HistoryEvent::created`) in one
    /// transaction.
    async fn create_notification(
        &self,
        content: &NewNotification,
        idempotency: Option<&Idempotency>,
        now: DateTime<Utc>,
    ) -> PortResult<CreateOutcome>;
    /// What an earlier create with this `Idempotency-Key` made (`Replayed`, or `KeyReused` for another
    /// body); `None` for a new key. Looked up before any check that depends on the time, so a replay
    /// answers what the first request got even after the notification's window closed.
    async fn replay(&self, idempotency: &Idempotency) -> PortResult<Option<CreateOutcome>>;
    async fn notification(&self, id: &NotificationId) -> PortResult<Option<Notification>>;
    /// The stored ones among `ids`, in no particular order.
    async fn notifications(&self, ids: &[NotificationId]) -> PortResult<Vec<Notification>>;
    /// Moves to `to` if the current status allows it (`Status::allowed_from`), recording `event` in
    /// its history. Revoking also appends to the revocation log that incremental sync reads.
    async fn transition(
        &self,
        id: &NotificationId,
        to: Status,
        event: &HistoryEvent,
        now: DateTime<Utc>,
    ) -> PortResult<TransitionOutcome>;
    async fn history(&self, id: &NotificationId) -> PortResult<Vec<HistoryEntry>>;
    /// Appends `event` to the history under the notification's current status, which stays as it
    /// is (a failed attempt that will be retried, for instance). False if there is no such
    /// notification.
    async fn record_event(&self, id: &NotificationId, event: &HistoryEvent, now: DateTime<Utc>) -> PortResult<bool>;
    /// Records read receipts; returns how many were new.
    async fn record_reads(&self, receiver: &ReceiverRef, ids: &[NotificationId], at: DateTime<Utc>) -> PortResult<u64>;
    /// Who read the notification (its read receipts), by (kind, id), strictly after `after`
    /// (keyset): what a rebuild of the inbox store restores read flags and `read` from.
    async fn read_receipts(
        &self,
        id: &NotificationId,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverRef>>;
    /// Records that `receiver` archived `ids` (a row per receiver action, as read receipts; the
    /// search shows none, so the change log does not move); returns how many were new.
    async fn record_archives(
        &self,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        at: DateTime<Utc>,
    ) -> PortResult<u64>;
    /// Un-archives: removes those rows; returns how many there were.
    async fn remove_archives(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<u64>;
    /// Who archived the notification (and has not un-archived it), by (kind, id), strictly after
    /// `after` (keyset): what a rebuild of the inbox store restores archived entries from.
    async fn archives(
        &self,
        id: &NotificationId,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverRef>>;
    /// Revocations after log position `after`, oldest first: (position, notification).
    async fn revocations_since(&self, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>>;
    /// The newest revocation log position (0 when the log is empty).
    async fn revocation_head(&self) -> PortResult<u64>;
    /// The search mirror's change log: the notifications changed after position `after`, each at
    /// the position of its latest change, lowest first. Every change the console's search shows —
    /// a notification created, each status move (a revoke too), a city's `matched` settling, a page
    /// delivered, new read receipts of a stored notification — gives the notification a new
    /// position, above every position before, in the same transaction as the change. One entry per
    /// notification: a later change replaces its earlier position, so the log holds at most one row
    /// per notification (never one per receiver) and read from 0 it lists every notification once.
    ///
    /// **Positions become visible in commit order:** once any reader has seen position p (here or
    /// from `change_head`), no change committed afterwards gets a position at or below p, because a
    /// reader that applied p never reads at or below it again. One writer at a time (SQLite) gives
    /// this for free; a store with concurrent writers (MariaDB) must ensure it, for instance by
    /// taking positions from a counter row it keeps locked until the transaction commits, or by
    /// never answering a position above one whose transaction may still commit.
    async fn changes_since(&self, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>>;
    /// The highest change-log position (0 when the log is empty).
    async fn change_head(&self) -> PortResult<u64>;
    /// Notifications sending or sent whose validity window opens or closes in `(after, until]`
    /// (their entries appear or vanish by time alone, with nothing written), at most `limit`.
    async fn window_edges(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<Notification>>;
    /// Whether the backend answers.
    async fn ping(&self) -> PortResult<()>;
}

/// The plan for one city: how many receivers it matched when sending began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityPlan {
    pub city: City,
    /// Receivers it reaches: the opted out are not among them.
    pub matched: u64,
    /// For an include list: exactly who, in id order (the task pages this snapshot, so a receiver
    /// moving city mid-send neither drops out nor doubles). `None` pages the selection live.
    pub members: Option<Vec<ReceiverId>>,
    /// Receivers of the audience left out because they opted out of the message's category.
    pub opted_out: u64,
}

impl CityPlan {
    /// What the city's task counts as opted out when it starts: an include list's snapshot left
    /// them out already; a selection's pages count them as they skip them (`PageStep::opted_out`).
    pub fn opted_out_at_start(&self) -> u64 {
        if self.members.is_some() { self.opted_out } else { 0 }
    }
}

/// One (notification, city) send task and how far its paging has gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendTask {
    pub notification_id: NotificationId,
    pub city: City,
    /// Keyset position: the last receiver id already published.
    pub last_receiver: Option<ReceiverId>,
    pub pages_published: u32,
    /// The include-list snapshot of this city (see `CityPlan::members`); `None` for a selection.
    pub members: Option<Vec<ReceiverId>>,
}

/// A queue message as the outbox and the queue carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub topic: String,
    /// Filterable by subscribers (`rider`, `merchant`).
    pub tag: String,
    /// Unique per logical message (the page key), for tracing and broker-side dedup.
    pub key: String,
    pub body: Vec<u8>,
}

/// One step of a task's paging, applied atomically by `SendLedger::advance`.
#[derive(Debug, Clone)]
pub struct PageStep {
    /// The page to publish, with the number of receivers in it; `None` when nothing was left.
    pub page: Option<(QueueMessage, u64)>,
    /// The keyset position after this step.
    pub last_receiver: Option<ReceiverId>,
    /// No receivers remain after this step.
    pub finished: bool,
    /// Receivers this step left out because they opted out of the message's category, added to
    /// the task's `opted_out` with the step (so a step applied once counts them once).
    pub opted_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: i64,
    pub message: QueueMessage,
}

/// Per-city progress of a send, as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityProgress {
    pub city: City,
    /// Counted when sending began; the number published once paging of the city finished; and once
    /// the city is done, exactly the receivers its pages reached (= its sent count).
    pub matched: u64,
    pub published: u64,
    pub pages_published: u32,
    pub pages_delivered: u32,
    pub done: bool,
    /// Receivers left out because they opted out of the message's category: an include list's at
    /// the start, a selection's as its pages skip them (all of them once paging finished).
    pub opted_out: u64,
}

/// A queue message that can never be delivered (its body does not decode as a page), kept with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message key: `<notification>/<city>/<page>` for a page.
    pub key: String,
    pub reason: String,
    pub body: Vec<u8>,
}

impl DeadLetter {
    /// The notification the key names, if it names one.
    pub fn notification(&self) -> Option<NotificationId> {
        let (id, _) = self.key.split_once('/')?;
        NotificationId::parse("key", id).ok()
    }

    /// What its notification's history says of it.
    pub fn event(&self) -> HistoryEvent {
        HistoryEvent::PageDeadLettered { key: self.key.clone(), reason: self.reason.clone() }
    }
}

/// Send tasks, the outbox and the delivered-page ledger: what makes a send resumable.
#[async_trait]
pub trait SendLedger: Send + Sync {
    /// Scheduled notifications whose time has come, oldest first.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> PortResult<Vec<Notification>>;
    /// Records one task per city and moves the notification from scheduled to sending, with
    /// `HistoryEvent::sending(plan)` in its history, in one transaction. For a selection that
    /// names no cities (`plan::selection_of_every_city`), every other city where it now matches
    /// someone (they joined after `plan` was counted) gets a task too, paged live, so no one falls
    /// between the count and the start. False if it was no longer scheduled (cancelled, or another
    /// scheduler won).
    async fn start_sending(&self, id: &NotificationId, plan: &[CityPlan], now: DateTime<Utc>) -> PortResult<bool>;
    /// Tasks still paging, of notifications still sending: include-list (`direct`) ones or
    /// broadcast ones, in (notification, city) order, strictly after `after` (keyset).
    async fn open_tasks(
        &self,
        direct: bool,
        after: Option<(&NotificationId, &City)>,
        limit: usize,
    ) -> PortResult<Vec<SendTask>>;
    /// Applies one paging step: the page goes to the outbox and the task's position advances in
    /// one transaction, only if the task is still where `task` says (else false, nothing written).
    /// A finished task's `matched` becomes the number of receivers actually published.
    async fn advance(&self, task: &SendTask, step: &PageStep) -> PortResult<bool>;
    /// The oldest outbox messages of `topic`, not yet published (the relay asks for each topic in
    /// turn, so point-to-point pages never wait behind a broadcast's backlog).
    async fn outbox(&self, topic: &str, limit: usize) -> PortResult<Vec<OutboxMessage>>;
    async fn outbox_published(&self, ids: &[i64]) -> PortResult<()>;
    async fn outbox_len(&self) -> PortResult<u64>;
    /// When the longest-running send still open began (its notification's `sent_at`): the
    /// earliest among notifications sending with a city not done yet; `None` when none is open.
    /// Operations watch its age (the slowest city still sending).
    async fn oldest_open_send(&self) -> PortResult<Option<DateTime<Utc>>>;
    /// Records that a page reached its inboxes, adding `added` new entries (idempotent). In the
    /// same transaction it applies `completion`: the city may become done, and when every city is,
    /// the notification moves from sending to sent (`HistoryEvent::Delivered`). Returns true when
    /// it did so now.
    async fn page_delivered(&self, key: &PageKey, added: u64, now: DateTime<Utc>) -> PortResult<bool>;
    /// `page_delivered` for each of `pages` in order, answering each one's result. A store that can
    /// records them in one transaction (a consumer's batch of pages costs one commit); all or none
    /// are recorded when it fails.
    async fn pages_delivered(&self, pages: &[(PageKey, u64)], now: DateTime<Utc>) -> PortResult<Vec<bool>> {
        let mut sent = Vec::with_capacity(pages.len());
        for (key, added) in pages {
            sent.push(self.page_delivered(key, *added, now).await?);
        }
        Ok(sent)
    }
    /// Per-city progress of each of `ids`, in city order (a notification with no tasks is absent):
    /// one query for a whole page of the console's list.
    async fn progress_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Vec<CityProgress>>>;
    async fn progress(&self, id: &NotificationId) -> PortResult<Vec<CityProgress>> {
        Ok(self.progress_of(std::slice::from_ref(id)).await?.remove(id).unwrap_or_default())
    }
    /// The notification's delivered pages with what each added, by (city, page number), strictly
    /// after `after` (keyset): the ledger's record of the sent counters, for a rebuild of the inbox
    /// store.
    async fn delivered_pages(
        &self,
        id: &NotificationId,
        after: Option<(&City, u32)>,
        limit: usize,
    ) -> PortResult<Vec<(PageKey, u64)>>;
    /// Keeps an undeliverable message (once per key) and, when its key names a notification
    /// (`DeadLetter::notification`), writes to that notification's history why a page of it will
    /// never arrive (`DeadLetter::event`), so a send it leaves unfinished is never silently stuck.
    async fn dead_letter(&self, letter: &DeadLetter, now: DateTime<Utc>) -> PortResult<()>;
}

// ---------------------------------------------------------------------------------------------
// Queue: pages travel from scheduler to consumers, at least once.
// ---------------------------------------------------------------------------------------------

/// A consumer group's interest: topics and tags (a message matches if its tag is listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub group: String,
    pub topics: Vec<String>,
    pub tags: Vec<String>,
}

/// A message handed to a consumer, to ack or to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Opaque (as a RocketMQ receipt handle): names this lease of the message. Once the lease ended
    /// (acked, retried, expired, or its holder died and another consumer took the message), acking
    /// or retrying with it does nothing.
    pub receipt: String,
    pub attempt: u32,
    pub message: QueueMessage,
    /// The queue gave up retrying it (a RocketMQ group's retry limit moved it to the dead-letter
    /// topic, read back from there). It is handed out once more so the consumer keeps it as a
    /// dead letter and acks it: never dropped silently. A queue that retries forever never sets it.
    pub given_up: bool,
}

/// A durable queue with topics, tags and at-least-once delivery to consumer groups.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Durably enqueues every message (all or an error). Declare the consuming group first: what is
    /// published before may not be kept for it.
    async fn publish(&self, messages: &[QueueMessage]) -> PortResult<()>;
    /// Declares a group's interest: from now on every message on its topics and tags is kept for it
    /// until it acks, whether or not one of its consumers is running. Idempotent, side-effect free.
    async fn declare(&self, subscription: &Subscription) -> PortResult<()>;
    /// Joins the group as a consumer (declaring it too). A lease belongs to the consumer holding it:
    /// messages a dead consumer held (killed, crashed) become available again within seconds, what a
    /// live one holds stays its own until it acks, retries or its lease runs out.
    async fn subscribe(&self, subscription: &Subscription) -> PortResult<()>;
    /// Up to `max` messages, waiting up to `wait` for the first. The subscription lists its topics in
    /// priority order: every visible message of an earlier topic is handed out before a later one's.
    /// A message not acked within the queue's lease is handed out again.
    async fn pull(&self, subscription: &Subscription, max: usize, wait: Duration) -> PortResult<Vec<Delivery>>;
    async fn ack(&self, subscription: &Subscription, receipts: &[String]) -> PortResult<()>;
    /// Hands the message out again after `delay`.
    async fn retry_later(&self, subscription: &Subscription, receipt: &str, delay: Duration) -> PortResult<()>;
    /// Messages kept for the group and not yet acked.
    async fn lag(&self, subscription: &Subscription) -> PortResult<u64>;
    /// Whether the queue answers (the broker for a server-backed one), with no side effect.
    async fn ping(&self) -> PortResult<()>;
}

// ---------------------------------------------------------------------------------------------
// Inboxes and counters: projections of SQL, rebuildable, exact under redelivery.
// ---------------------------------------------------------------------------------------------

/// A notification's counters as the inbox store keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub read: u64,
    pub sent_by_city: BTreeMap<String, u64>,
    /// For a notification with variants: sent and read by the content shown (`ShownVariant`),
    /// only those with any (empty without variants).
    pub variants: BTreeMap<ShownVariant, Tally>,
}

/// What a store names each counter by (one field each): `sent`, `read`, `sent:<city>`, and a
/// variant's `variant:<code>:sent` and `variant:<code>:read` (`ShownVariant::code`).
impl Counters {
    pub fn city_field(city: &str) -> String {
        format!("sent:{city}")
    }

    pub fn variant_field(shown: ShownVariant, read: bool) -> String {
        format!("variant:{}:{}", shown.code(), if read { "read" } else { "sent" })
    }

    /// Every counter with its field name (what `set_counters` writes).
    pub fn fields(&self) -> Vec<(String, u64)> {
        let mut fields = vec![("sent".to_string(), self.sent), ("read".to_string(), self.read)];
        fields.extend(self.sent_by_city.iter().map(|(city, n)| (Self::city_field(city), *n)));
        for (shown, tally) in &self.variants {
            fields.push((Self::variant_field(*shown, false), tally.sent));
            fields.push((Self::variant_field(*shown, true), tally.read));
        }
        fields
    }

    /// Takes one field a store read back (an unknown one is ignored).
    pub fn set_field(&mut self, field: &str, value: u64) {
        match field {
            "sent" => self.sent = value,
            "read" => self.read = value,
            other => {
                if let Some(city) = other.strip_prefix("sent:") {
                    self.sent_by_city.insert(city.to_string(), value);
                } else if let Some((code, which)) = other.strip_prefix("variant:").and_then(|v| v.split_once(':'))
                    && let Some(shown) = ShownVariant::from_code(code)
                {
                    match which {
                        "sent" => self.variants.entry(shown).or_default().sent = value,
                        "read" => self.variants.entry(shown).or_default().read = value,
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Sent and read of one part of a notification's receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub read: u64,
}

/// A page to deliver: the page, what the store keeps of its notification, and for a notification
/// with variants, the content each receiver of the page is shown (in the page's order; empty
/// without variants), by which the page's `added` is split.
#[derive(Debug, Clone, Copy)]
pub struct PageWrite<'a> {
    pub page: &'a Page,
    pub meta: &'a EntryMeta,
    pub shown: &'a [ShownVariant],
}

impl<'a> PageWrite<'a> {
    /// A page of a notification without variants.
    pub fn new(page: &'a Page, meta: &'a EntryMeta) -> Self {
        Self { page, meta, shown: &[] }
    }

    /// What each receiver of the page is shown, in the page's order: `None` without variants (and,
    /// so that a part is never guessed, when `shown` does not name one for every receiver).
    pub fn split(&self) -> Option<&'a [ShownVariant]> {
        (!self.shown.is_empty() && self.shown.len() == self.page.receivers.len()).then_some(self.shown)
    }
}

/// One receiver's read of one notification, with the content it was shown for one with variants
/// (by which `read` is split; `None` without variants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub id: NotificationId,
    pub shown: Option<ShownVariant>,
}

/// The unread part of an inbox at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadCount {
    /// Visible unread entries.
    pub unread: u64,
    /// Of those, the force-read ones.
    pub force_read: u64,
    /// Of those, how many in each category (their sum is `unread`).
    pub by_category: ByCategory,
    /// Of those, the ones not seen yet (`InboxStore::mark_seen`): the app icon's badge.
    pub unseen: u64,
}

/// A count per category (`Category::ALL`), each exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByCategory([u64; Category::ALL.len()]);

impl ByCategory {
    pub fn get(&self, category: Category) -> u64 {
        self.0[category.index()]
    }

    pub fn add(&mut self, category: Category, n: u64) {
        self.0[category.index()] += n;
    }

    /// Every category with its count, in `Category::ALL`'s order.
    pub fn iter(&self) -> impl Iterator<Item = (Category, u64)> + '_ {
        Category::ALL.iter().map(|c| (*c, self.get(*c)))
    }
}

/// What delivering a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageDelivery {
    /// Entries this page added when it was first delivered: receivers that did not hold the
    /// message yet. The same number every time the page is delivered.
    pub added: u64,
    /// The page had been delivered before: nothing was written this time.
    pub repeated: bool,
}

/// Inboxes and counters. What "atomically" means below is bounded so that a sharded store (a Redis
/// Cluster) passes the contract with no script touching two slots: one receiver's keys (its inbox
/// entries, flags, versions) share a slot, and one notification's keys (its counters, its delivered
/// pages and what each added, the receivers holding it, its withheld flag) share another.
///
/// - **Per page, in the notification's keys, one atomic step:** whether the page was delivered
///   before (then nothing changes and its first outcome is reported), whether the notification is
///   withheld (then the page is recorded as adding 0), which of the page's receivers did not hold
///   the notification yet (`added`, decided against the notification's own record of who holds it,
///   never by reading receivers' inboxes), the page's outcome, and `sent` and `sent:<city>` raised
///   by exactly `added` (and each variant's `sent` by the added it was shown to, `PageWrite::shown`).
/// - **Per receiver, in that receiver's keys:** adding its entry is idempotent (added if missing)
///   and happens after the page's step; `deliver` returns only once every entry of the page is
///   written, and a repeated delivery writes what an interrupted one left unwritten (moving no
///   counter). A page recorded just before a withhold may land its entries after it; readers hide a
///   revoked notification anyway.
/// - **Per receiver, for reads:** flipping read flags is one atomic step in the receiver's keys and
///   says which were newly read; each such notification's `read` (and its shown variant's) is then
///   raised by one in that notification's keys. Counters are projections: a crash between the two leaves `read` short
///   until rebuilt from SQL's read receipts, never counted twice.
/// - **Revocations:** `apply_revocation` withholds (the notification's keys) before it advances the
///   applied position (a key of its own) and never moves that position back; a crash between the
///   two only repeats an idempotent withhold.
///
/// The embedded store does each of these in one SQLite transaction, which satisfies all of them.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Adds the notification to each receiver's inbox unless already there (or dropped from it by
    /// the cap before), and raises its sent counters (total and the page's city) by exactly the
    /// number added, atomically, recording the page as delivered. A page delivered again changes
    /// nothing and reports its first outcome. `meta` is what the store keeps of the notification
    /// to order and filter entries (the first page's is kept; it never changes). An inbox found
    /// past the store's cap is trimmed in the same step, in the order `InboxCap` gives; trimming
    /// moves no counter.
    async fn deliver(&self, page: &Page, meta: &EntryMeta) -> PortResult<PageDelivery> {
        Ok(self.deliver_pages(&[PageWrite::new(page, meta)]).await?.remove(0))
    }
    /// `deliver` for each of `pages` in order (a page listed twice is repeated the second time),
    /// answering each one's delivery, and raising each variant's `sent` by the added it was shown
    /// to. A store that can writes them in one step (the embedded one in one transaction, all or
    /// none); a failure may leave some delivered, which delivering them again reports as repeated.
    async fn deliver_pages(&self, pages: &[PageWrite<'_>]) -> PortResult<Vec<PageDelivery>>;
    /// Rebuilding from SQL: adds the notification to each receiver's inbox unless already there
    /// (or dropped from it by the cap before), as `deliver` does — keeping `meta`, marking the
    /// receivers as holding it, trimming past the cap — but records no page and moves no counter
    /// (`restore_pages` and `set_counters` give those the ledger's values). Answers how many
    /// receivers did not hold it yet. A withheld notification's entries are restored too, hidden
    /// as they were before (so sync still tells a device that held one of its revocation).
    /// Idempotent.
    async fn restore(&self, page: &Page, meta: &EntryMeta) -> PortResult<u64>;
    /// Rebuilding from SQL: records each page as delivered with what it added (replacing what was
    /// recorded), so a redelivery of it changes nothing and reports that.
    async fn restore_pages(&self, pages: &[(PageKey, u64)]) -> PortResult<()>;
    /// Rebuilding from SQL: the notification's counters become exactly `counters` (a city not in
    /// `sent_by_city`, a variant not in `variants`, has none), atomically.
    async fn set_counters(&self, notification: &NotificationId, counters: &Counters) -> PortResult<()>;
    /// What a page added when it was delivered, if it was.
    async fn page_outcome(&self, page: &PageKey) -> PortResult<Option<u64>>;
    /// Withholds the notification from now on (it was revoked): a page delivered afterwards adds
    /// nothing and moves no counter, and its entries are no longer visible; counts from before
    /// stay. Idempotent.
    async fn withhold(&self, notification: &NotificationId) -> PortResult<()>;
    /// Withholds the notification revoked at `position` of the revocation log
    /// (`NotificationStore::revocations_since`) and remembers that position as applied, atomically.
    /// Idempotent; the remembered position never goes back.
    async fn apply_revocation(&self, position: u64, notification: &NotificationId) -> PortResult<()>;
    /// The highest revocation-log position applied (0 when none was).
    async fn revocations_applied(&self) -> PortResult<u64>;
    /// Up to `limit` entries visible at `now` (inside their window, not withheld) that come after
    /// `after` in list order (pinned unread first, then newest `sent_at`, then id, all descending:
    /// `InboxCursor`'s order reversed), of `category` only when one is given (a tab). Costs
    /// O(limit) plus the invisible entries skipped, never the whole inbox, with or without a
    /// category (entries of other categories are never skipped one by one).
    async fn page(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        after: Option<&InboxCursor>,
        limit: usize,
        category: Option<Category>,
    ) -> PortResult<Vec<InboxEntry>>;
    /// How many entries visible at `now` are unread, how many of those are force-read, how many
    /// are in each category, and how many are unseen: arrived in this inbox (or un-archived) since
    /// its receiver's last `mark_seen`, or with a window that opened after it (all of them if
    /// there was none). Exact: counted from the entries at `now`, never kept as a running total
    /// that redelivery, revokes, expiry or reads could make drift.
    async fn unread_count(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<UnreadCount>;
    /// The unread entries visible at `now` (only the force-read ones if `force_read_only`), in
    /// list order.
    async fn unread(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        force_read_only: bool,
    ) -> PortResult<Vec<InboxEntry>>;
    /// The entries this inbox holds among `ids`, visible or not, in no particular order.
    async fn entries_of(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<InboxEntry>>;
    /// Entries whose version is above `version`, lowest version first.
    async fn changed_since(&self, receiver: &ReceiverRef, version: u64, limit: usize) -> PortResult<Vec<InboxEntry>>;
    /// Entries whose window opened after `after` and no later than `until` (visible or not):
    /// what sync reports as news although the entry did not change. Costs O(windows that opened
    /// in between), not the inbox.
    async fn opened_between(
        &self,
        receiver: &ReceiverRef,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<InboxEntry>>;
    /// Archives the receiver's entries among `ids` (un-archives them when `archived` is false): an
    /// archived entry stays held, keeps its read flag and is reported by `entries_of` and sync
    /// (`changed_since`, its version raised like any change) with `archived` set, but `page`,
    /// `unread` and `unread_count` leave it out; un-archived it is back in its place. A later page
    /// naming the receiver again adds nothing. Moves no counter. Answers the ids whose state
    /// changed (ids not held, or already so, are ignored). One atomic step in the receiver's keys.
    async fn set_archived(
        &self,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        archived: bool,
    ) -> PortResult<Vec<NotificationId>>;
    /// The receiver looked at its inbox at `now`: every entry it holds now, and every window
    /// opened by `now`, is seen from then on. One step in the receiver's keys, ordered with
    /// deliveries (an entry is either held before it, so seen, or arrives after it, so unseen);
    /// what it remembers never goes back. Moves no counter and no entry's version. Kept by the
    /// store alone: lost with it (a rebuilt inbox counts every unread entry unseen), which can
    /// raise a badge, never hide a message.
    async fn mark_seen(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<()>;
    /// Marks entries read; raises each newly read notification's read counter by one, atomically,
    /// and its shown variant's (`Read::shown`). Returns the ids that were newly read (ids not in
    /// the inbox are ignored).
    async fn mark_read_shown(&self, receiver: &ReceiverRef, reads: &[Read]) -> PortResult<Vec<NotificationId>>;
    /// `mark_read_shown` of notifications without variants.
    async fn mark_read(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<NotificationId>> {
        let reads: Vec<Read> = ids.iter().map(|id| Read { id: id.clone(), shown: None }).collect();
        self.mark_read_shown(receiver, &reads).await
    }
    /// The counters of each of `ids` (all zero for one never delivered): one read for a page of the
    /// console's list.
    async fn counters_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Counters>>;
    async fn counters(&self, notification: &NotificationId) -> PortResult<Counters> {
        Ok(self.counters_of(std::slice::from_ref(notification)).await?.remove(notification).unwrap_or_default())
    }
    /// Removes every entry of `receiver`, answering how many; the counters keep what was delivered
    /// and read (a notification's stats are history).
    async fn erase_receiver(&self, receiver: &ReceiverRef) -> PortResult<u64>;
    async fn ping(&self) -> PortResult<()>;
}

/// Where "this inbox changed" goes: a hint to the apps connected to any API process that they
/// should fetch (the inbox, the unread count), never the data itself. Best effort and never
/// waited on: a lost hint costs an app its next poll, never a message. In-process:
/// `herald_app::InboxHub`; across processes: `herald_redis::RedisHints` (pub/sub), which tells
/// this process's hub at once and every other process's through its subscription.
pub trait InboxHints: Send + Sync {
    /// These receivers' inboxes or unread counts changed.
    fn changed(&self, kind: ReceiverKind, receivers: &[ReceiverId]);
    /// Any inbox of this kind may have changed (a broadcast revoked, or hints possibly missed):
    /// every app of that kind listening should fetch. One call however many receivers that is;
    /// each process tells only the apps listening to it.
    fn everyone(&self, kind: ReceiverKind);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_split_only_by_a_variant_for_every_receiver() {
        use crate::{City, PageKey};
        let page = Page {
            key: PageKey {
                notification_id: NotificationId::generate(),
                city: City::parse("city", "sh").unwrap(),
                page_no: 0,
            },
            receiver_kind: ReceiverKind::Rider,
            receivers: ["a", "b"].iter().map(|id| ReceiverId::parse("id", id).unwrap()).collect(),
        };
        let meta = EntryMeta {
            category: Category::System,
            pinned: false,
            force_read: false,
            sent_at_ms: 0,
            valid_from_ms: None,
            valid_until_ms: None,
        };
        let both = [ShownVariant::Variant(0), ShownVariant::Default];
        assert_eq!(PageWrite { shown: &both, ..PageWrite::new(&page, &meta) }.split(), Some(&both[..]));
        assert_eq!(PageWrite::new(&page, &meta).split(), None, "no variants");
        assert_eq!(PageWrite { shown: &both[..1], ..PageWrite::new(&page, &meta) }.split(), None, "one short");
    }

    #[test]
    fn counters_read_back_from_their_fields() {
        let counters = Counters {
            sent: 9,
            read: 4,
            sent_by_city: [("sh".to_string(), 5), ("bj".to_string(), 4)].into(),
            variants: [
                (ShownVariant::Variant(0), Tally { sent: 6, read: 3 }),
                (ShownVariant::Default, Tally { sent: 3, read: 1 }),
            ]
            .into(),
        };
        let mut back = Counters::default();
        for (field, value) in counters.fields() {
            back.set_field(&field, value);
        }
        assert_eq!(back, counters);
        for unknown in ["variant:x:sent", "variant:0:seen", "variant:0", "other"] {
            back.set_field(unknown, 1);
        }
        assert_eq!(back, counters, "unknown fields are ignored");
    }
}
