//! The outbox relay: publishes committed pages onto the queue, then forgets them. A crash between
//! the two publishes a page again, which consumers absorb; a queue outage only grows the outbox.

use std::time::Duration;

use herald_domain::Topic;
use herald_domain::ports::PortResult;

use crate::Scheduler;

/// Outbox rows published per queue call.
const BATCH: usize = 100;

/// Exponential backoff from 100 ms up to 30 s: a restarted broker refuses sends for about 30 s.
#[derive(Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(100u64.saturating_mul(1 << self.failures.min(9))).min(Duration::from_secs(30))
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(crate) fn failing(&self) -> bool {
        self.failures > 0
    }
}

impl Scheduler {
    /// Publishes one batch of the first topic (in serving order, direct first) that has any;
    /// returns how many pages went out.
    pub(crate) async fn relay_once(&self) -> PortResult<usize> {
        let mut batch = Vec::new();
        for topic in Topic::ALL {
            batch = self.ports.ledger.outbox(topic.name(), BATCH).await?;
            if !batch.is_empty() {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let messages: Vec<_> = batch.iter().map(|m| m.message.clone()).collect();
        self.ports.queue.publish(&messages).await?;
        let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
        self.ports.ledger.outbox_published(&ids).await?;
        self.metrics.pages_published.inc_by(ids.len() as u64);
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.next(), Duration::from_millis(200));
        assert_eq!(b.next(), Duration::from_millis(400));
        for _ in 0..20 {
            b.next();
        }
        assert_eq!(b.next(), Duration::from_secs(30));
        b.reset();
        assert!(!b.failing());
    }
}
