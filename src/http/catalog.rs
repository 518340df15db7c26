//! A short-lived cache of notifications for inbox reads: an inbox poll touches many notifications,
//! millions of apps poll, and notifications change rarely (revoke is the change that matters, and
//! this process forgets a revoked one at once; other API processes within `ttl`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_domain::ports::{NotificationStore, PortResult};
use herald_domain::{Notification, NotificationId};

/// Entries past this count are pruned of expired ones on insert.
const SOFT_CAPACITY: usize = 50_000;

pub struct Catalog {
    store: Arc<dyn NotificationStore>,
    ttl: Duration,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<NotificationId, (Instant, Arc<Notification>)>,
    /// When each id was last forgotten: a load that began before then must not re-cache it.
    forgotten: HashMap<NotificationId, Instant>,
}

impl Catalog {
    pub fn new(store: Arc<dyn NotificationStore>, ttl: Duration) -> Self {
        Self { store, ttl, cache: Mutex::new(Cache::default()) }
    }

    /// The stored notifications among `ids`, from cache where fresh.
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
        let mut cache = self.cache.lock().expect("catalog lock");
        cache.entries.remove(id);
        cache.forgotten.insert(id.clone(), Instant::now());
    }
}
