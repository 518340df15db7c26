//! What operations ask of a running Herald: does every backend answer, and how much is waiting.

use chrono::{DateTime, Utc};
use herald_domain::ports::{PortResult, Subscription};

use crate::Herald;

/// Each backend's answer.
#[derive(Debug)]
pub struct Readiness {
    pub sql: PortResult<()>,
    pub inbox: PortResult<()>,
    pub queue: PortResult<()>,
    /// The search backend: reported, but not part of `ready` — with search down, everything else
    /// keeps working, and the mirror catches up once it is back.
    pub search: PortResult<()>,
    /// Changes logged in SQL that the search mirror has not applied yet.
    pub search_lag: PortResult<u64>,
}

impl Readiness {
    /// Whether every backend the apps and the roles need answers.
    pub fn ready(&self) -> bool {
        self.sql.is_ok() && self.inbox.is_ok() && self.queue.is_ok()
    }
}

/// Work not done yet: pages in the queue for the consumers, rows in the outbox for the relay,
/// changes the search mirror has not applied, and when the oldest send still open began.
#[derive(Debug)]
pub struct Backlog {
    pub queue_lag: PortResult<u64>,
    pub outbox: PortResult<u64>,
    pub search_lag: PortResult<u64>,
    pub oldest_open_send: PortResult<Option<DateTime<Utc>>>,
}

impl Herald {
    /// Asks every backend whether it answers.
    pub async fn readiness(&self) -> Readiness {
        Readiness {
            sql: self.ports.notifications.ping().await,
            inbox: self.ports.inbox.ping().await,
            queue: self.ports.queue.ping().await,
            search: self.ports.search.ping().await,
            search_lag: self.search_feed.lag().await,
        }
    }

    pub async fn backlog(&self, subscription: &Subscription) -> Backlog {
        Backlog {
            queue_lag: self.ports.queue.lag(subscription).await,
            outbox: self.ports.ledger.outbox_len().await,
            search_lag: self.search_feed.lag().await,
            oldest_open_send: self.ports.ledger.oldest_open_send().await,
        }
    }
}
