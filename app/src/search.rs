//! The search mirror's feed: SQL's change log (`NotificationStore::changes_since`) applied to the
//! search index by position. Each round reads the log after the position the index says it
//! applied, builds each changed notification's document from the truth (the notification from the
//! store, `matched` and the cities from the ledger, `sent` / `read` from the inbox store's
//! counters) and indexes it with that position, so a search outage only delays the mirror: the
//! next round starts where the index stopped. A mirror found empty while SQL has notifications
//! (new, lost, or reset after corruption) is rebuilt whole, beside the one in use.
//!
//! The loop runs in the api role: the console searches there, and the console's own list catches
//! the mirror up before it searches (read-your-writes), so a notification just created is listed
//! at once. Several api processes each run it; that is harmless (`index` at or below the applied
//! position writes nothing, a document is replaced whole).
//!
//! A rebuild (`herald reindex`, `POST /admin/v1/search/reindex`) writes the next index beside the
//! one in use while the rounds go on feeding that one, so searches and read-your-writes never wait
//! for it; only its last step, the swap, takes the round's turn. The swapped-in index has applied
//! the head read when the rebuild began, and the next round applies what changed since.
//!
//! Counters may trail by one change: reading marks the receipt in SQL (which moves the log) just
//! before the inbox store raises `read`, so a document built in between holds the older `read`
//! until the notification's next change. The console's pages read the counters afresh for the
//! notifications they show, so what it displays is always current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::NotificationId;
use herald_domain::ports::{InboxStore, NotificationStore, PortResult, SendLedger};
use herald_domain::search::{SearchDocument, SearchIndex, SearchRebuild};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{AppResult, Clock};

/// Changes applied per `index` call, and notifications per rebuild batch.
const BATCH: usize = 500;
/// How often the loop looks for changes: the mirror catches up within about this.
const ROUND: Duration = Duration::from_secs(1);
/// The longest pause after failed rounds (doubling from `ROUND`): a backend down is retried, never
/// hammered.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Feeds one search index from the SQL truth.
pub struct SearchFeed {
    index: Arc<dyn SearchIndex>,
    notifications: Arc<dyn NotificationStore>,
    ledger: Arc<dyn SendLedger>,
    inbox: Arc<dyn InboxStore>,
    /// One round at a time in this process (the loop's, the console's catch-up, a rebuild's
    /// swap), so two never build the same batch twice. Taken after `rebuilding`, never before.
    turn: Mutex<()>,
    /// One rebuild at a time in this process.
    rebuilding: Mutex<()>,
    /// The rebuild asked for through the API: the last one, or the one running.
    reindex: std::sync::Mutex<Reindex>,
    /// Documents the running rebuild has written so far.
    rebuilt_so_far: AtomicU64,
    clock: Arc<dyn Clock>,
    /// The position the index last said it applied (0 before it ever answered), so the lag is
    /// still known, and growing, while the backend is down.
    last_applied: AtomicU64,
}

/// What a round or a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Documents written.
    pub indexed: u64,
    /// The change-log position the index has applied now.
    pub applied: u64,
    /// The round found the index empty and rebuilt it.
    pub rebuilt: bool,
}

/// A rebuild of the mirror asked for while the server runs (`start_rebuild`).
#[derive(Debug, Clone, PartialEq)]
pub enum Reindex {
    /// None since this process started.
    NeverRun,
    Running {
        started_at: DateTime<Utc>,
        indexed: u64,
    },
    Done {
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        fed: Fed,
    },
    Failed {
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        error: String,
    },
}

impl SearchFeed {
    pub fn new(
        index: Arc<dyn SearchIndex>,
        notifications: Arc<dyn NotificationStore>,
        ledger: Arc<dyn SendLedger>,
        inbox: Arc<dyn InboxStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            index,
            notifications,
            ledger,
            inbox,
            turn: Mutex::new(()),
            rebuilding: Mutex::new(()),
            reindex: std::sync::Mutex::new(Reindex::NeverRun),
            rebuilt_so_far: AtomicU64::new(0),
            clock,
            last_applied: AtomicU64::new(0),
        }
    }

    /// Starts a rebuild in the background unless one runs already; either way, says how it stands.
    pub fn start_rebuild(self: &Arc<Self>) -> Reindex {
        let mut state = self.reindex.lock().unwrap_or_else(PoisonError::into_inner);
        if let Reindex::Running { .. } = *state {
            drop(state);
            return self.reindex();
        }
        let started_at = self.clock.now();
        self.rebuilt_so_far.store(0, Ordering::Relaxed);
        *state = Reindex::Running { started_at, indexed: 0 };
        let feed = self.clone();
        tokio::spawn(async move {
            let outcome = feed.rebuild().await;
            let finished_at = feed.clock.now();
            *feed.reindex.lock().unwrap_or_else(PoisonError::into_inner) = match outcome {
                Ok(fed) => Reindex::Done { started_at, finished_at, fed },
                Err(e) => {
                    tracing::warn!(error = %e, "search: the rebuild asked for failed; the index in use stays");
                    Reindex::Failed { started_at, finished_at, error: e.to_string() }
                }
            };
        });
        state.clone()
    }

    /// How the rebuild asked for through `start_rebuild` stands.
    pub fn reindex(&self) -> Reindex {
        match self.reindex.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            Reindex::Running { started_at, .. } => {
                Reindex::Running { started_at, indexed: self.rebuilt_so_far.load(Ordering::Relaxed) }
            }
            other => other,
        }
    }

    /// Applies every change logged up to the head read now, in batches; an empty index with
    /// notifications in SQL is rebuilt instead.
    pub async fn round(&self) -> AppResult<Fed> {
        let turn = self.turn.lock().await;
        let head = self.notifications.change_head().await?;
        let mut applied = self.applied().await?;
        if applied == 0 && head > 0 {
            drop(turn);
            let _one = self.rebuilding.lock().await;
            // Another rebuild may have filled it while this one waited.
            if self.applied().await? > 0 {
                return Ok(Fed { indexed: 0, applied: self.last_applied.load(Ordering::Relaxed), rebuilt: false });
            }
            tracing::info!(head, "search: the index is empty while SQL has notifications; rebuilding it");
            return self.rebuild_now().await;
        }
        let mut indexed = 0;
        while applied < head {
            let changes = self.notifications.changes_since(applied, BATCH).await?;
            let Some(&(last, _)) = changes.last() else { break };
            let ids: Vec<NotificationId> = changes.into_iter().map(|(_, id)| id).collect();
            let documents = self.documents(&ids).await?;
            self.index.index(last, &documents).await?;
            indexed += documents.len() as u64;
            applied = last;
            self.last_applied.store(applied, Ordering::Relaxed);
        }
        Ok(Fed { indexed, applied, rebuilt: false })
    }

    /// Rebuilds the index from SQL beside the one in use, which keeps answering (and being fed)
    /// until the new one takes over (`herald reindex`, `start_rebuild`).
    pub async fn rebuild(&self) -> AppResult<Fed> {
        let _one = self.rebuilding.lock().await;
        self.rebuild_now().await
    }

    /// Every notification, by change-log position (the log lists each once) up to the head read
    /// before the rebuild began, which the rebuilt index then has applied: a notification that
    /// changed meanwhile moved above it and is indexed again by the next round. Called holding
    /// `rebuilding`; takes the turn only to swap.
    async fn rebuild_now(&self) -> AppResult<Fed> {
        let head = self.notifications.change_head().await?;
        let mut rebuild: Box<dyn SearchRebuild> = self.index.begin_rebuild().await?;
        let (mut after, mut indexed) = (0, 0);
        while after < head {
            let changes = self.notifications.changes_since(after, BATCH).await?;
            let Some(&(last, _)) = changes.last() else { break };
            let ids: Vec<NotificationId> = changes.into_iter().map(|(_, id)| id).collect();
            let documents = self.documents(&ids).await?;
            rebuild.add(&documents).await?;
            indexed += documents.len() as u64;
            self.rebuilt_so_far.store(indexed, Ordering::Relaxed);
            after = last;
        }
        // No round between reading the old index's position and writing the new one.
        let _turn = self.turn.lock().await;
        rebuild.finish(head).await?;
        self.last_applied.store(head, Ordering::Relaxed);
        tracing::info!(indexed, applied = head, "search: index rebuilt from SQL");
        Ok(Fed { indexed, applied: head, rebuilt: true })
    }

    /// Each stored notification among `ids` as the mirror holds it, read now.
    async fn documents(&self, ids: &[NotificationId]) -> AppResult<Vec<SearchDocument>> {
        let found = self.notifications.notifications(ids).await?;
        let mut progress = self.ledger.progress_of(ids).await?;
        let mut counters = self.inbox.counters_of(ids).await?;
        Ok(found
            .into_iter()
            .map(|notification| {
                let progress = progress.remove(&notification.id).unwrap_or_default();
                let counters = counters.remove(&notification.id).unwrap_or_default();
                SearchDocument {
                    cities_reached: progress.iter().filter(|p| p.matched > 0).map(|p| p.city.clone()).collect(),
                    matched: progress.iter().map(|p| p.matched).sum(),
                    sent: counters.sent,
                    read: counters.read,
                    notification,
                }
            })
            .collect())
    }

    async fn applied(&self) -> PortResult<u64> {
        let applied = self.index.applied().await?;
        self.last_applied.store(applied, Ordering::Relaxed);
        Ok(applied)
    }

    /// Changes logged in SQL that the index has not applied yet; while the index does not answer,
    /// counted from the position it last said it applied.
    pub async fn lag(&self) -> PortResult<u64> {
        let head = self.notifications.change_head().await?;
        let applied = match self.applied().await {
            Ok(applied) => applied,
            Err(_) => self.last_applied.load(Ordering::Relaxed),
        };
        Ok(head.saturating_sub(applied))
    }

    /// Rounds about every `ROUND` until `stop`; after a failure (the search backend down) the
    /// pause doubles up to `MAX_BACKOFF`, and the next round resumes where the index stopped.
    pub async fn run(&self, stop: CancellationToken) {
        let mut pause = ROUND;
        loop {
            match self.round().await {
                Ok(_) => pause = ROUND,
                Err(e) => {
                    pause = (pause * 2).min(MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?pause, "search: the mirror is behind; will retry");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
