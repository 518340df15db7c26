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
    cache: Mutex<HashMap<NotificationId, (Instant, Arc<Notification>)>>,
}

impl Catalog {
    pub fn new(store: Arc<dyn NotificationStore>, ttl: Duration) -> Self {
        Self { store, ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The stored notifications among `ids`, from cache where fresh.
    pub async fn get_many(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Arc<Notification>>> {
        let now = Instant::now();
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().expect("catalog lock");
            for id in ids {
                match cache.get(id) {
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
            if cache.len() > SOFT_CAPACITY {
                cache.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            }
            for n in loaded {
                let n = Arc::new(n);
                cache.insert(n.id.clone(), (now, n.clone()));
                found.insert(n.id.clone(), n);
            }
        }
        Ok(found)
    }

    pub fn forget(&self, id: &NotificationId) {
        self.cache.lock().expect("catalog lock").remove(id);
    }
}
