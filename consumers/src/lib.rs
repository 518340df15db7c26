//! The consumer role: pulls pages off the queue and delivers each into its receivers' inboxes.
//!
//! A page may arrive more than once (at-least-once queue, relay retries, crashes). Delivery is
//! idempotent end to end: the inbox store adds only missing entries and raises the sent counters by
//! exactly the number added, and the ledger records each page once. Acking comes last, so a crash
//! anywhere before it means the page is delivered again, which changes nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_domain::ports::{
    Delivery, InboxStore, NotificationStore, PageDelivery, PortResult, Queue, SendLedger, Subscription,
};
use herald_domain::{Page, ReceiverKind, Status, Topic};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The consumer group every Herald consumer process joins.
pub const GROUP: &str = "herald_inbox";

/// Both topics, both receiver kinds.
pub fn subscription() -> Subscription {
    Subscription {
        group: GROUP.to_string(),
        topics: Topic::ALL.iter().map(|t| t.name().to_string()).collect(),
        tags: ReceiverKind::ALL.iter().map(|k| k.as_str().to_string()).collect(),
    }
}

/// The consumers' Prometheus series.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub pages: IntCounterVec,
    pub deliveries: IntCounter,
}

impl ConsumerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            pages: IntCounterVec::new(
                Opts::new("herald_pages_consumed_total", "Pages taken off the queue, by outcome"),
                &["outcome"],
            )?,
            deliveries: IntCounter::new(
                "herald_deliveries_total",
                "Inbox entries added (a redelivered page adds none)",
            )?,
        };
        registry.register(Box::new(m.pages.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        Ok(m)
    }
}

/// Delivers one page: the part of consuming that knows nothing about queues.
#[derive(Clone)]
pub struct Deliverer {
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
    pub inbox: Arc<dyn InboxStore>,
}

impl Deliverer {
    /// Delivers one page (a revoked or vanished notification's pages are recorded, not delivered)
    /// and records it in the ledger, with what it added.
    #[tracing::instrument(name = "deliver_page", skip_all, fields(page = %page.key, receivers = page.receivers.len()))]
    pub async fn deliver(&self, page: &Page) -> PortResult<Outcome> {
        let id = &page.key.notification_id;
        let status = self.notifications.notification(id).await?.map(|n| n.status);
        let (added, outcome) = match status {
            Some(Status::Sending | Status::Sent) => match self.inbox.deliver(page).await? {
                PageDelivery { added, repeated: false } => (added, Outcome::Delivered(added)),
                PageDelivery { added, repeated: true } => (added, Outcome::Repeated),
            },
            // Not delivered now; but if it was before the revoke, the ledger must hear what it added.
            // Withholding here too heals a revoke whose API process died before withholding.
            _ => {
                self.inbox.withhold(id).await?;
                (self.inbox.page_outcome(&page.key).await?.unwrap_or(0), Outcome::Withheld)
            }
        };
        if self.ledger.page_delivered(&page.key, added, Utc::now()).await? {
            tracing::info!(notification = %id, "every page delivered");
        }
        Ok(outcome)
    }
}

/// What consuming one page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written now, adding this many inbox entries.
    Delivered(u64),
    /// Delivered before: nothing written.
    Repeated,
    /// The notification is revoked (or gone): recorded, not delivered.
    Withheld,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::Repeated => "repeated",
            Outcome::Withheld => "withheld",
        }
    }
}

/// How a consumer process behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Pages handled at once.
    pub concurrency: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self { concurrency: 4 }
    }
}

/// Consumes until `shutdown`, then finishes the pages in hand (and acks them) before returning.
pub async fn run(
    queue: Arc<dyn Queue>,
    deliverer: Deliverer,
    metrics: ConsumerMetrics,
    config: ConsumerConfig,
    shutdown: CancellationToken,
) -> PortResult<()> {
    let sub = subscription();
    queue.subscribe(&sub).await?;
    let mut in_flight = JoinSet::new();
    while !shutdown.is_cancelled() {
        while in_flight.len() >= config.concurrency {
            in_flight.join_next().await;
        }
        let room = config.concurrency - in_flight.len();
        let deliveries = tokio::select! {
            _ = shutdown.cancelled() => break,
            pulled = queue.pull(&sub, room, Duration::from_millis(500)) => pulled,
        };
        let deliveries = match deliveries {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "pulling pages failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for delivery in deliveries {
            let (queue, deliverer, metrics, sub) = (queue.clone(), deliverer.clone(), metrics.clone(), sub.clone());
            in_flight.spawn(async move { handle(&*queue, &deliverer, &metrics, &sub, delivery).await });
        }
    }
    while in_flight.join_next().await.is_some() {}
    Ok(())
}

/// Delivers, then acks; on failure asks for a retry with growing delay (never giving up: delivery
/// is idempotent, and a page given up would leave its send unfinished). A body that does not parse
/// can never succeed: it is logged and acked.
async fn handle(queue: &dyn Queue, deliverer: &Deliverer, metrics: &ConsumerMetrics, sub: &Subscription, d: Delivery) {
    let outcome = match serde_json::from_slice::<Page>(&d.message.body) {
        Err(e) => {
            tracing::error!(key = %d.message.key, error = %e, "dropping a page that does not parse");
            "malformed"
        }
        Ok(page) => match deliverer.deliver(&page).await {
            Ok(outcome) => {
                if let Outcome::Delivered(added) = outcome {
                    metrics.deliveries.inc_by(added);
                }
                outcome.label()
            }
            Err(e) => {
                let delay = Duration::from_secs(1 << d.attempt.min(6));
                tracing::warn!(key = %d.message.key, attempt = d.attempt, error = %e, "page failed; will retry");
                metrics.pages.with_label_values(&["retried"]).inc();
                if let Err(e) = queue.retry_later(sub, &d.receipt, delay).await {
                    tracing::warn!(error = %e, "could not schedule the retry; the lease will expire instead");
                }
                return;
            }
        },
    };
    metrics.pages.with_label_values(&[outcome]).inc();
    if let Err(e) = queue.ack(sub, std::slice::from_ref(&d.receipt)).await {
        tracing::warn!(key = %d.message.key, error = %e, "ack failed; the page will be delivered again");
    }
}
