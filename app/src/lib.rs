//! Herald's application layer: the use cases over the ports. The HTTP API and the CLI parse what
//! they are given into domain types, call one of these, and render its answer; neither holds a rule
//! of its own. This crate knows the ports (traits), never an adapter, HTTP or SQL.
//!
//! One module per group of use cases, each adding methods to [`Herald`]: `notifications` (create,
//! send, cancel, revoke, the console's list and views), `audience` (preview), `receivers` (look up,
//! list, delete, upsert, import), `health` (readiness, backlog), `inbox` (the apps' page, unread
//! count, force-read list, read one, read all, sync), whose reads go through `catalog`, a
//! short-lived notification cache that catches up with the revocation log first; `search` (the
//! feed that keeps the search mirror applying SQL's change log, and its rebuild); `rebuild` (the
//! inbox store restored from SQL: `herald rebuild`).

mod audience;
mod catalog;
mod error;
mod health;
mod hints;
mod inbox;
mod notifications;
mod preferences;
mod rebuild;
mod receivers;
mod search;
mod windows;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::ports::{InboxHints, InboxStore, NotificationStore, Queue, ReceiverDirectory, SendLedger};
use herald_domain::search::SearchIndex;
use tokio::sync::Notify;

use catalog::Catalog;

/// How long an inbox read trusts a cached notification; revocations never wait for it.
const CATALOG_TTL: Duration = Duration::from_secs(2);

pub use error::{AppError, AppResult};
pub use health::{Backlog, Readiness};
pub use hints::{HintId, HintListener, InboxHub};
pub use inbox::{InboxPage, SyncBatch, SyncNews};
pub use notifications::{Creation, NotificationDetails, NotificationList};
pub use rebuild::RebuildReport;
pub use receivers::{IMPORT_BATCH, ImportReport, MAX_BATCH, ReceiverImport, Rejected};
pub use search::{Fed, Reindex, SearchFeed};

/// Every port, each behind whichever adapter the wiring picked.
#[derive(Clone)]
pub struct Ports {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
    pub queue: Arc<dyn Queue>,
    pub inbox: Arc<dyn InboxStore>,
    /// The search mirror the console's list searches, fed from SQL's change log.
    pub search: Arc<dyn SearchIndex>,
    /// The SQL truth as the ops console reads it.
    pub console: ConsoleReads,
}

/// The SQL truth through connections of the console's own, few and each statement time-limited:
/// a console search or preview, however heavy, never takes a connection the apps, the roles or
/// `/readyz` read with. Writes go through the same store as every other.
#[derive(Clone)]
pub struct ConsoleReads {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
}

/// What time it is, for every rule that depends on it (a window already past, a history entry).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The use cases, over one set of ports. Cheap to clone: every part is shared.
#[derive(Clone)]
pub struct Herald {
    ports: Ports,
    clock: Arc<dyn Clock>,
    /// Rung when a send was created or released, so the scheduler starts it without waiting for
    /// its next round (in-process; a scheduler in another process finds it on its next poll).
    wake_scheduler: Arc<Notify>,
    /// The notifications inbox reads show, cached briefly.
    catalog: Arc<Catalog>,
    /// Keeps `ports.search` applying the change log.
    search_feed: Arc<SearchFeed>,
    /// The apps listening for inbox hints in this process.
    hub: Arc<InboxHub>,
    /// Where reads and revokes hint: the hub itself, or an adapter that also tells other processes.
    hints: Arc<dyn InboxHints>,
}

impl Herald {
    pub fn new(ports: Ports, clock: Arc<dyn Clock>, wake_scheduler: Arc<Notify>) -> Self {
        let catalog = Arc::new(Catalog::new(ports.notifications.clone(), ports.inbox.clone(), CATALOG_TTL));
        let search_feed = Arc::new(SearchFeed::new(
            ports.search.clone(),
            ports.notifications.clone(),
            ports.ledger.clone(),
            ports.inbox.clone(),
            clock.clone(),
        ));
        let hub = Arc::new(InboxHub::new());
        Self { ports, clock, wake_scheduler, catalog, search_feed, hints: hub.clone(), hub }
    }

    /// The feed of the search mirror, for the role that runs its loop and for `herald reindex`.
    pub fn search_feed(&self) -> Arc<SearchFeed> {
        self.search_feed.clone()
    }

    /// Listens on `hub` (shared with whoever else delivers in this process: the consumers) and
    /// hints through `hints`, which tells `hub` and, in distributed mode, the other processes.
    pub fn with_hints(self, hub: Arc<InboxHub>, hints: Arc<dyn InboxHints>) -> Self {
        Self { hub, hints, ..self }
    }

    pub fn inbox_hub(&self) -> &Arc<InboxHub> {
        &self.hub
    }
}
