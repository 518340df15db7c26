//! Every port call that fails is counted where it fails: `herald_backend_errors_total{backend,
//! operation}`, the backend being the port (`sql`, `sql_console` for the console's own limited
//! connections, `inbox`, `queue`, `search`) and the operation the port method. Each port is
//! wrapped once at start-up (`observe`); a wrapper forwards every method, the provided ones too, so
//! an adapter's batched versions stay in use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_app::{ConsoleReads, Ports};
use herald_domain::audience::Selection;
use herald_domain::listing::NotificationFilter;
use herald_domain::ports::*;
use herald_domain::search::{SearchCursor, SearchDocument, SearchHits, SearchIndex, SearchRebuild};
use herald_domain::{
    Category, City, EntryMeta, HistoryEntry, HistoryEvent, InboxCursor, InboxEntry, NewNotification, Notification,
    NotificationId, Page, PageKey, Preferences, Receiver, ReceiverId, ReceiverKind, ReceiverRef, Status,
};
use prometheus::{IntCounterVec, Opts, Registry};

/// The counter every wrapper raises.
#[derive(Clone)]
pub struct BackendErrors(IntCounterVec);

impl BackendErrors {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(
            Opts::new("herald_backend_errors_total", "Failed calls to a backend, by port and operation"),
            &["backend", "operation"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        Ok(Self(counter))
    }

    /// Every port of `ports` wrapped, each of its series created at 0 (so a rate has data before
    /// the first failure).
    pub fn observe(&self, ports: Ports) -> Ports {
        Ports {
            receivers: Observed::<dyn ReceiverDirectory>::wrap(ports.receivers, "sql", self),
            notifications: Observed::<dyn NotificationStore>::wrap(ports.notifications, "sql", self),
            ledger: Observed::<dyn SendLedger>::wrap(ports.ledger, "sql", self),
            queue: Observed::<dyn Queue>::wrap(ports.queue, "queue", self),
            inbox: Observed::<dyn InboxStore>::wrap(ports.inbox, "inbox", self),
            search: Observed::<dyn SearchIndex>::wrap(ports.search, "search", self),
            console: ConsoleReads {
                receivers: Observed::<dyn ReceiverDirectory>::wrap(ports.console.receivers, "sql_console", self),
                notifications: Observed::<dyn NotificationStore>::wrap(
                    ports.console.notifications,
                    "sql_console",
                    self,
                ),
                ledger: Observed::<dyn SendLedger>::wrap(ports.console.ledger, "sql_console", self),
            },
        }
    }
}

/// A port whose failures are counted.
struct Observed<T: ?Sized> {
    inner: Arc<T>,
    backend: &'static str,
    errors: IntCounterVec,
}

impl<T: ?Sized> Observed<T> {
    fn counted<R>(&self, operation: &str, result: PortResult<R>) -> PortResult<R> {
        if result.is_err() {
            self.errors.with_label_values(&[self.backend, operation]).inc();
        }
        result
    }
}

/// Implements `$port` for `Observed<dyn $port>` by forwarding each listed method (all of the
/// trait's: a missing one fails to compile, unless provided, so the list is checked by a test).
macro_rules! observed {
    ($port:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        impl Observed<dyn $port> {
            const OPERATIONS: &[&str] = &[$(stringify!($name)),*];

            fn wrap(inner: Arc<dyn $port>, backend: &'static str, errors: &BackendErrors) -> Arc<dyn $port> {
                for operation in Self::OPERATIONS {
                    errors.0.with_label_values(&[backend, operation]);
                }
                Arc::new(Self { inner, backend, errors: errors.0.clone() })
            }
        }

        #[async_trait]
        impl $port for Observed<dyn $port> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.counted(stringify!($name), self.inner.$name($($arg),*).await)
                }
            )*
        }
    };
}

observed!(ReceiverDirectory {
    fn upsert_receivers(&self, receivers: &[Receiver]) -> PortResult<u64>;
    fn lookup_receivers(&self, kind: ReceiverKind, ids: &[ReceiverId]) -> PortResult<Vec<Receiver>>;
    fn count_selection(&self, kind: ReceiverKind, selection: &Selection) -> PortResult<Vec<(City, u64)>>;
    fn page_selection(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        city: &City,
        after: Option<&ReceiverId>,
        limit: usize
    ) -> PortResult<Vec<ReceiverId>>;
    fn list_receivers(
        &self,
        kind: Option<ReceiverKind>,
        city: Option<&City>,
        after: Option<&ReceiverRef>,
        limit: usize
    ) -> PortResult<Vec<Receiver>>;
    fn delete_receiver(&self, kind: ReceiverKind, id: &ReceiverId) -> PortResult<bool>;
    fn preferences(&self, receiver: &ReceiverRef) -> PortResult<Preferences>;
    fn set_preferences(&self, receiver: &ReceiverRef, prefs: &Preferences) -> PortResult<()>;
    fn opted_out(&self, kind: ReceiverKind, category: Category, ids: &[ReceiverId]) -> PortResult<Vec<ReceiverId>>;
    fn count_opted_out(&self, kind: ReceiverKind, selection: &Selection, category: Category) -> PortResult<Vec<(City, u64)>>;
});

observed!(NotificationStore {
    fn create_notification(
        &self,
        content: &NewNotification,
        idempotency: Option<&Idempotency>,
        now: DateTime<Utc>
    ) -> PortResult<CreateOutcome>;
    fn replay(&self, idempotency: &Idempotency) -> PortResult<Option<CreateOutcome>>;
    fn notification(&self, id: &NotificationId) -> PortResult<Option<Notification>>;
    fn notifications(&self, ids: &[NotificationId]) -> PortResult<Vec<Notification>>;
    fn transition(
        &self,
        id: &NotificationId,
        to: Status,
        event: &HistoryEvent,
        now: DateTime<Utc>
    ) -> PortResult<TransitionOutcome>;
    fn history(&self, id: &NotificationId) -> PortResult<Vec<HistoryEntry>>;
    fn record_event(&self, id: &NotificationId, event: &HistoryEvent, now: DateTime<Utc>) -> PortResult<bool>;
    fn record_reads(&self, receiver: &ReceiverRef, ids: &[NotificationId], at: DateTime<Utc>) -> PortResult<u64>;
    fn read_receipts(
        &self,
        id: &NotificationId,
        after: Option<&ReceiverRef>,
        limit: usize
    ) -> PortResult<Vec<ReceiverRef>>;
    fn record_archives(&self, receiver: &ReceiverRef, ids: &[NotificationId], at: DateTime<Utc>) -> PortResult<u64>;
    fn remove_archives(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<u64>;
    fn archives(&self, id: &NotificationId, after: Option<&ReceiverRef>, limit: usize) -> PortResult<Vec<ReceiverRef>>;
    fn revocations_since(&self, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>>;
    fn revocation_head(&self) -> PortResult<u64>;
    fn changes_since(&self, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>>;
    fn change_head(&self) -> PortResult<u64>;
    fn window_edges(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> PortResult<Vec<Notification>>;
    fn ping(&self) -> PortResult<()>;
});

observed!(SendLedger {
    fn due(&self, now: DateTime<Utc>, limit: usize) -> PortResult<Vec<Notification>>;
    fn start_sending(&self, id: &NotificationId, plan: &[CityPlan], now: DateTime<Utc>) -> PortResult<bool>;
    fn open_tasks(
        &self,
        direct: bool,
        after: Option<(&NotificationId, &City)>,
        limit: usize
    ) -> PortResult<Vec<SendTask>>;
    fn advance(&self, task: &SendTask, step: &PageStep) -> PortResult<bool>;
    fn outbox(&self, topic: &str, limit: usize) -> PortResult<Vec<OutboxMessage>>;
    fn outbox_published(&self, ids: &[i64]) -> PortResult<()>;
    fn outbox_len(&self) -> PortResult<u64>;
    fn oldest_open_send(&self) -> PortResult<Option<DateTime<Utc>>>;
    fn page_delivered(&self, key: &PageKey, added: u64, now: DateTime<Utc>) -> PortResult<bool>;
    fn pages_delivered(&self, pages: &[(PageKey, u64)], now: DateTime<Utc>) -> PortResult<Vec<bool>>;
    fn progress_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Vec<CityProgress>>>;
    fn progress(&self, id: &NotificationId) -> PortResult<Vec<CityProgress>>;
    fn delivered_pages(
        &self,
        id: &NotificationId,
        after: Option<(&City, u32)>,
        limit: usize
    ) -> PortResult<Vec<(PageKey, u64)>>;
    fn dead_letter(&self, letter: &DeadLetter, now: DateTime<Utc>) -> PortResult<()>;
});

observed!(Queue {
    fn publish(&self, messages: &[QueueMessage]) -> PortResult<()>;
    fn declare(&self, subscription: &Subscription) -> PortResult<()>;
    fn subscribe(&self, subscription: &Subscription) -> PortResult<()>;
    fn pull(&self, subscription: &Subscription, max: usize, wait: Duration) -> PortResult<Vec<Delivery>>;
    fn ack(&self, subscription: &Subscription, receipts: &[String]) -> PortResult<()>;
    fn retry_later(&self, subscription: &Subscription, receipt: &str, delay: Duration) -> PortResult<()>;
    fn lag(&self, subscription: &Subscription) -> PortResult<u64>;
    fn ping(&self) -> PortResult<()>;
});

observed!(InboxStore {
    fn deliver(&self, page: &Page, meta: &EntryMeta) -> PortResult<PageDelivery>;
    fn deliver_pages(&self, pages: &[PageWrite<'_>]) -> PortResult<Vec<PageDelivery>>;
    fn restore(&self, page: &Page, meta: &EntryMeta) -> PortResult<u64>;
    fn restore_pages(&self, pages: &[(PageKey, u64)]) -> PortResult<()>;
    fn set_counters(&self, notification: &NotificationId, counters: &Counters) -> PortResult<()>;
    fn page_outcome(&self, page: &PageKey) -> PortResult<Option<u64>>;
    fn withhold(&self, notification: &NotificationId) -> PortResult<()>;
    fn apply_revocation(&self, position: u64, notification: &NotificationId) -> PortResult<()>;
    fn revocations_applied(&self) -> PortResult<u64>;
    fn page(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        after: Option<&InboxCursor>,
        limit: usize,
        category: Option<Category>
    ) -> PortResult<Vec<InboxEntry>>;
    fn unread_count(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<UnreadCount>;
    fn unread(&self, receiver: &ReceiverRef, now: DateTime<Utc>, force_read_only: bool) -> PortResult<Vec<InboxEntry>>;
    fn entries_of(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<InboxEntry>>;
    fn changed_since(&self, receiver: &ReceiverRef, version: u64, limit: usize) -> PortResult<Vec<InboxEntry>>;
    fn opened_between(
        &self,
        receiver: &ReceiverRef,
        after: DateTime<Utc>,
        until: DateTime<Utc>
    ) -> PortResult<Vec<InboxEntry>>;
    fn set_archived(
        &self,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        archived: bool
    ) -> PortResult<Vec<NotificationId>>;
    fn mark_seen(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<()>;
    fn mark_read_shown(&self, receiver: &ReceiverRef, reads: &[Read]) -> PortResult<Vec<NotificationId>>;
    fn mark_read(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<NotificationId>>;
    fn counters_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Counters>>;
    fn counters(&self, notification: &NotificationId) -> PortResult<Counters>;
    fn erase_receiver(&self, receiver: &ReceiverRef) -> PortResult<u64>;
    fn ping(&self) -> PortResult<()>;
});

observed!(SearchIndex {
    fn index(&self, position: u64, documents: &[SearchDocument]) -> PortResult<()>;
    fn applied(&self) -> PortResult<u64>;
    fn search(
        &self,
        filter: &NotificationFilter,
        after: Option<&SearchCursor>,
        limit: usize
    ) -> PortResult<SearchHits>;
    fn begin_rebuild(&self) -> PortResult<Box<dyn SearchRebuild>>;
    fn ping(&self) -> PortResult<()>;
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods of `trait $port` in a source file: every `async fn` up to the trait's end.
    fn methods<'a>(source: &'a str, port: &str) -> Vec<&'a str> {
        let start = source.find(&format!("pub trait {port}: ")).unwrap_or_else(|| panic!("trait {port} found"));
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("the trait ends")];
        body.lines()
            .filter_map(|l| l.trim_start().strip_prefix("async fn "))
            .filter_map(|rest| rest.split(['(', '<']).next())
            .collect()
    }

    #[test]
    fn every_port_method_is_forwarded_and_counted() {
        let ports = include_str!("../domain/src/ports.rs");
        let search = include_str!("../domain/src/search.rs");
        let cases: [(&str, &str, &[&str]); 6] = [
            (ports, "ReceiverDirectory", Observed::<dyn ReceiverDirectory>::OPERATIONS),
            (ports, "NotificationStore", Observed::<dyn NotificationStore>::OPERATIONS),
            (ports, "SendLedger", Observed::<dyn SendLedger>::OPERATIONS),
            (ports, "Queue", Observed::<dyn Queue>::OPERATIONS),
            (ports, "InboxStore", Observed::<dyn InboxStore>::OPERATIONS),
            (search, "SearchIndex", Observed::<dyn SearchIndex>::OPERATIONS),
        ];
        for (source, port, forwarded) in cases {
            assert_eq!(methods(source, port), forwarded, "{port}: the wrapper forwards each method, in order");
        }
    }
}
