//! A short-lived cache of notifications for inbox reads: an inbox poll touches many notifications,
//! millions of apps poll, and notifications change rarely. Revoke is the change that matters: every
//! read first catches up with the revocation log in SQL (one indexed query that usually returns
//! nothing), forgetting cached copies and withholding the notification in the inbox store, so a
//! revoke made by any API process — even one that died before withholding — is never shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_domain::ports::{InboxStore, NotificationStore, PortResult};
use herald_domain::{Notification, NotificationId};

/// Entries past this count are pruned of expired ones on insert.
const SOFT_CAPACITY: usize = 50_000;
/// Revocations read from the log per query while catching up.
const REVOCATION_BATCH: usize = 1000;

pub struct Catalog {
    store: Arc<dyn NotificationStore>,
    inbox: Arc<dyn InboxStore>,
    ttl: Duration,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<NotificationId, (Instant, Arc<Notification>)>,
    /// When each id was last forgotten: a load that began before then must not re-cache it.
    forgotten: HashMap<NotificationId, Instant>,
    /// The revocation log position this cache has applied; `None` until the first read.
    revocations_applied: Option<u64>,
}

impl Catalog {
    pub fn new(store: Arc<dyn NotificationStore>, inbox: Arc<dyn InboxStore>, ttl: Duration) -> Self {
        Self { store, inbox, ttl, cache: Mutex::new(Cache::default()) }
    }

    /// The stored notifications among `ids`, from cache where fresh and not revoked since the last
    /// `catch_up`, which every read calls first.
    pub async fn get_many(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Arc<Notification>>> {
        let now = Instant::now();
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().expect("catalog lock");
            for id in ids {
                match cache.entries.get(id) {
                    Some((at, n)) if now.duration_since(*at) < self.ttl => {
                        found.insert(id.clone(), n.clone());
                    }
                    _ => missing.push(id.clone()),
                }
            }
        }
        if !missing.is_empty() {
            let loaded = self.store.notifications(&missing).await?;
            let mut cache = self.cache.lock().expect("catalog lock");
            if cache.entries.len() > SOFT_CAPACITY {
                cache.entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            }
            cache.forgotten.retain(|_, at| now.duration_since(*at) < self.ttl);
            for n in loaded {
                let n = Arc::new(n);
                if cache.forgotten.get(&n.id).is_none_or(|at| *at < now) {
                    cache.entries.insert(n.id.clone(), (now, n.clone()));
                }
                found.insert(n.id.clone(), n);
            }
        }
        Ok(found)
    }

    pub fn forget(&self, id: &NotificationId) {
        self.cache.lock().expect("catalog lock").forget(id, Instant::now());
    }

    /// Applies every revocation logged since the last look, by whichever process: forgets the
    /// cached copy and withholds the notification in the inbox store (idempotent), so an inbox
    /// read after this shows no revoked message.
    pub async fn catch_up(&self) -> PortResult<()> {
        let applied = self.cache.lock().expect("catalog lock").revocations_applied;
        // Nothing is cached before the first read; the inbox store knows how far it withheld.
        let mut applied = match applied {
            Some(applied) => applied,
            None => self.inbox.revocations_applied().await?,
        };
        loop {
            let batch = self.store.revocations_since(applied, REVOCATION_BATCH).await?;
            for (position, id) in &batch {
                self.inbox.apply_revocation(*position, id).await?;
            }
            let mut cache = self.cache.lock().expect("catalog lock");
            let now = Instant::now();
            for (_, id) in &batch {
                cache.forget(id, now);
            }
            if let Some(&(last, _)) = batch.last() {
                applied = last;
            }
            cache.revocations_applied = Some(cache.revocations_applied.map_or(applied, |a| a.max(applied)));
            if batch.len() < REVOCATION_BATCH {
                return Ok(());
            }
        }
    }
}

impl Cache {
    fn forget(&mut self, id: &NotificationId, at: Instant) {
        self.entries.remove(id);
        self.forgotten.insert(id.clone(), at);
    }
}
