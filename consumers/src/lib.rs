//! The consumer role: pulls pages off the queue and delivers each into its receivers' inboxes.
//!
//! A page may arrive more than once (at-least-once queue, relay retries, crashes). Delivery is
//! idempotent end to end: the inbox store adds only missing entries and raises the sent counters by
//! exactly the number added, and the ledger records each page once. Acking comes last, so a crash
//! anywhere before it means the page is delivered again, which changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_domain::plan::shown_to_each;
use herald_domain::ports::{
    DeadLetter, Delivery, InboxHints, InboxStore, NotificationStore, PageDelivery, PageWrite, PortError, PortResult,
    Queue, ReceiverDirectory, SendLedger, Subscription,
};
use herald_domain::{EntryMeta, Notification, NotificationId, Page, PageKey, ReceiverKind, Status, Topic};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The consumer group every Herald consumer process joins.
pub const GROUP: &str = "herald_inbox";

/// Both topics, point-to-point first (the queue serves a subscription's topics in order), both
/// receiver kinds.
pub fn subscription() -> Subscription {
    Subscription {
        group: GROUP.to_string(),
        topics: Topic::ALL.iter().map(|t| t.name().to_string()).collect(),
        tags: ReceiverKind::ALL.iter().map(|k| k.as_str().to_string()).collect(),
    }
}

/// One topic of the group: what one lane pulls.
fn lane_subscription(topic: Topic) -> Subscription {
    Subscription { topics: vec![topic.name().to_string()], ..subscription() }
}

/// The consumers' Prometheus series.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub pages: IntCounterVec,
    pub deliveries: IntCounter,
    pub dead_lettered: IntCounter,
    /// Seconds from when a notification was due (`Notification::due_at`) to a city's first page in
    /// its inboxes (`stage="first_page"`) and to the whole send delivered (`stage="sent"`), by topic.
    pub send_delay: HistogramVec,
}

/// `herald_send_delay_seconds`' stages.
const DELAY_STAGES: [&str; 2] = ["first_page", "sent"];

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
            dead_lettered: IntCounter::new(
                "herald_pages_dead_lettered_total",
                "Pages that can never be delivered (kept as dead letters)",
            )?,
            send_delay: HistogramVec::new(
                HistogramOpts::new(
                    "herald_send_delay_seconds",
                    "Seconds from when a notification was due to a city's first page delivered, and to it all sent",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]),
                &["stage", "topic"],
            )?,
        };
        registry.register(Box::new(m.pages.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        registry.register(Box::new(m.send_delay.clone()))?;
        // Every series exists from the start, so a rule over it has data before the first sample.
        for outcome in ["delivered", "repeated", "withheld", "dead_lettered", "retried"] {
            m.pages.with_label_values(&[outcome]);
        }
        for stage in DELAY_STAGES {
            for topic in Topic::ALL {
                m.send_delay.with_label_values(&[stage, topic.name()]);
            }
        }
        Ok(m)
    }
}

/// Delivers one page: the part of consuming that knows nothing about queues.
#[derive(Clone)]
pub struct Deliverer {
    notifications: Arc<dyn NotificationStore>,
    ledger: Arc<dyn SendLedger>,
    inbox: Arc<dyn InboxStore>,
    /// Asked the groups of a page's receivers, only for a notification with variants (whose sent
    /// is split by the content each receiver is shown).
    receivers: Arc<dyn ReceiverDirectory>,
    /// Broadcast batches writing to the inbox store at once. A point-to-point page's write takes
    /// no turn here, so it queues behind at most these (the embedded store has a single writer).
    bulk_writes: Arc<Semaphore>,
    /// Told which inboxes a page added to, so apps listening anywhere fetch; none by default.
    hints: Option<Arc<dyn InboxHints>>,
    /// Where the send delays are observed; none by default.
    send_delay: Option<HistogramVec>,
}

impl Deliverer {
    pub fn new(
        notifications: Arc<dyn NotificationStore>,
        ledger: Arc<dyn SendLedger>,
        inbox: Arc<dyn InboxStore>,
        receivers: Arc<dyn ReceiverDirectory>,
        bulk_writes: usize,
    ) -> Self {
        Self {
            notifications,
            ledger,
            inbox,
            receivers,
            bulk_writes: Arc::new(Semaphore::new(bulk_writes.max(1))),
            hints: None,
            send_delay: None,
        }
    }

    /// Observes each send's delays (`ConsumerMetrics::send_delay`).
    pub fn measuring(self, send_delay: HistogramVec) -> Self {
        Self { send_delay: Some(send_delay), ..self }
    }

    /// Hints each inbox a page added to, once the page is recorded.
    pub fn hinting(self, hints: Arc<dyn InboxHints>) -> Self {
        Self { hints: Some(hints), ..self }
    }

    /// Delivers one page that came on `topic`; see `deliver_pages`.
    pub async fn deliver(&self, page: &Page, topic: Topic) -> PortResult<Outcome> {
        Ok(self.deliver_pages(std::slice::from_ref(page), topic).await?.remove(0))
    }

    /// Delivers pages that came on `topic` (a revoked or vanished notification's pages are
    /// recorded, not delivered) and records them in the ledger with what each added: the inbox
    /// writes of every page whose notification is sending in one `deliver_pages`, the ledger's
    /// records in one `pages_delivered`, so a batch costs each store one step.
    #[tracing::instrument(name = "deliver_pages", skip_all, fields(pages = pages.len()))]
    pub async fn deliver_pages(&self, pages: &[Page], topic: Topic) -> PortResult<Vec<Outcome>> {
        let mut notifications: HashMap<&NotificationId, Option<Notification>> = HashMap::new();
        for page in pages {
            let id = &page.key.notification_id;
            if !notifications.contains_key(id) {
                notifications.insert(id, self.notifications.notification(id).await?);
            }
        }
        let mut outcomes = vec![Outcome::Withheld; pages.len()];
        let mut added = vec![0; pages.len()];
        let mut sending = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            let id = &page.key.notification_id;
            match &notifications[id] {
                Some(n) if matches!(n.status, Status::Sending | Status::Sent) => {
                    let shown =
                        shown_to_each(self.receivers.as_ref(), &n.content, page.receiver_kind, &page.receivers).await?;
                    sending.push((i, EntryMeta::of(n), shown));
                }
                // Not delivered now. Withholding here too heals a revoke whose API process died
                // before withholding. The inbox store still decides what the page added — nothing
                // if new, its first outcome if another delivery (which read the status before the
                // revoke) wrote it — so the ledger never records a number the inbox disagrees with.
                Some(n) => {
                    self.inbox.withhold(id).await?;
                    added[i] = self.write(&[PageWrite::new(page, &EntryMeta::of(n))], topic).await?[0].added;
                }
                // Notifications are never deleted, so this one was never stored and never delivered.
                None => {
                    self.inbox.withhold(id).await?;
                    added[i] = self.inbox.page_outcome(&page.key).await?.unwrap_or(0);
                }
            }
        }
        let writes: Vec<PageWrite<'_>> =
            sending.iter().map(|(i, meta, shown)| PageWrite { page: &pages[*i], meta, shown }).collect();
        let written = if writes.is_empty() { Vec::new() } else { self.write(&writes, topic).await? };
        for ((i, ..), delivery) in sending.iter().zip(written) {
            added[*i] = delivery.added;
            outcomes[*i] = if delivery.repeated { Outcome::Repeated } else { Outcome::Delivered(delivery.added) };
        }
        let records: Vec<(PageKey, u64)> = pages.iter().zip(&added).map(|(p, added)| (p.key.clone(), *added)).collect();
        let now = Utc::now();
        let sent = self.ledger.pages_delivered(&records, now).await?;
        for ((page, sent), outcome) in pages.iter().zip(sent).zip(&outcomes) {
            let n = notifications[&page.key.notification_id].as_ref();
            // A city's first page, delivered now while its send is on (a late joiner's page of a
            // sent broadcast is not its send's delay).
            let first = page.key.page_no == 0
                && matches!(outcome, Outcome::Delivered(_))
                && n.is_some_and(|n| n.status == Status::Sending);
            if first {
                self.observe_delay("first_page", n, topic, now);
            }
            if sent {
                tracing::info!(notification = %page.key.notification_id, "every page delivered");
                self.observe_delay("sent", n, topic, now);
            }
        }
        if let Some(hints) = &self.hints {
            for (page, outcome) in pages.iter().zip(&outcomes) {
                if let Outcome::Delivered(1..) = outcome {
                    // The page does not say which of its receivers already held it: all are hinted.
                    hints.changed(page.receiver_kind, &page.receivers);
                }
            }
        }
        Ok(outcomes)
    }

    fn observe_delay(&self, stage: &str, n: Option<&Notification>, topic: Topic, now: chrono::DateTime<Utc>) {
        if let (Some(histogram), Some(due)) = (&self.send_delay, n.and_then(Notification::due_at)) {
            let seconds = (now - due).num_milliseconds().max(0) as f64 / 1000.0;
            histogram.with_label_values(&[stage, topic.name()]).observe(seconds);
        }
    }

    /// The inbox writes, a broadcast's waiting its turn.
    async fn write(&self, pages: &[PageWrite<'_>], topic: Topic) -> PortResult<Vec<PageDelivery>> {
        let _turn = match topic {
            Topic::Bulk => Some(self.bulk_writes.acquire().await.expect("the semaphore is never closed")),
            Topic::Direct => None,
        };
        self.inbox.deliver_pages(pages).await
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
    /// Broadcast pages in hand at once, delivered in batches of half as many (each store takes a
    /// batch in one step, and the next batch is pulled while one writes).
    pub concurrency: usize,
    /// Point-to-point pages handled at once, in a lane of their own: never waiting for a slot a
    /// broadcast holds.
    pub direct_concurrency: usize,
    /// Broadcast batches writing to the inbox store at once (see `Deliverer::new`).
    pub bulk_writes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self { concurrency: 32, direct_concurrency: 2, bulk_writes: 1 }
    }
}

/// Consumes until `shutdown`, then finishes the pages in hand (and acks them) before returning.
/// Each topic has its own lane with its own slots, so point-to-point pages never queue behind a
/// broadcast; beside them, revocations are kept applied to the inbox store.
pub async fn run(
    queue: Arc<dyn Queue>,
    deliverer: Deliverer,
    metrics: ConsumerMetrics,
    config: ConsumerConfig,
    shutdown: CancellationToken,
) -> PortResult<()> {
    queue.subscribe(&subscription()).await?;
    let mut tasks = JoinSet::new();
    tasks.spawn(keep_revocations_applied(deliverer.notifications.clone(), deliverer.inbox.clone(), shutdown.clone()));
    for (topic, slots) in [(Topic::Direct, config.direct_concurrency), (Topic::Bulk, config.concurrency)] {
        let (queue, deliverer, metrics, shutdown) =
            (queue.clone(), deliverer.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(lane(queue, deliverer, metrics, topic, slots.max(1), shutdown));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Pulls one topic with up to `slots` pages in hand, in batches of at most half of them, so one
/// batch is pulled and read while another writes.
async fn lane(
    queue: Arc<dyn Queue>,
    deliverer: Deliverer,
    metrics: ConsumerMetrics,
    topic: Topic,
    slots: usize,
    shutdown: CancellationToken,
) {
    let sub = lane_subscription(topic);
    let batch = (slots / 2).max(1);
    // Each batch in hand and its size: a batch that ends, even by a panic, gives its pages back.
    let mut in_flight = JoinSet::new();
    let mut sizes: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut held = 0;
    let ended = |id: tokio::task::Id, sizes: &mut HashMap<tokio::task::Id, usize>| sizes.remove(&id).unwrap_or(0);
    let id_of = |r: Result<(tokio::task::Id, ()), tokio::task::JoinError>| r.map_or_else(|e| e.id(), |(id, ())| id);
    while !shutdown.is_cancelled() {
        while held >= slots {
            let Some(result) = in_flight.join_next_with_id().await else { break };
            held -= ended(id_of(result), &mut sizes);
        }
        let deliveries = tokio::select! {
            _ = shutdown.cancelled() => break,
            pulled = queue.pull(&sub, (slots - held).min(batch), Duration::from_millis(500)) => pulled,
        };
        let deliveries = match deliveries {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, topic = topic.name(), "pulling pages failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(result) = in_flight.try_join_next_with_id() {
            held -= ended(id_of(result), &mut sizes);
        }
        if deliveries.is_empty() {
            continue;
        }
        let pages = deliveries.len();
        held += pages;
        let (queue, deliverer, metrics, sub) = (queue.clone(), deliverer.clone(), metrics.clone(), sub.clone());
        let task = in_flight.spawn(async move { handle(&*queue, &deliverer, &metrics, &sub, topic, deliveries).await });
        sizes.insert(task.id(), pages);
    }
    while in_flight.join_next().await.is_some() {}
}

/// How often the consumer role looks for revocations the inbox store has not applied.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// Withholds, oldest first, every revocation in the SQL log that the inbox store has not applied
/// (a revoke whose withholding failed after it committed); returns how many it applied.
pub async fn reconcile_revocations(notifications: &dyn NotificationStore, inbox: &dyn InboxStore) -> PortResult<usize> {
    let mut applied = inbox.revocations_applied().await?;
    let mut count = 0;
    loop {
        let batch = notifications.revocations_since(applied, 100).await?;
        if batch.is_empty() {
            return Ok(count);
        }
        for (position, id) in batch {
            inbox.apply_revocation(position, &id).await?;
            tracing::debug!(notification = %id, position, "revocation applied to the inbox store");
            (applied, count) = (position, count + 1);
        }
    }
}

/// Runs `reconcile_revocations` now and every few seconds until `shutdown`.
async fn keep_revocations_applied(
    notifications: Arc<dyn NotificationStore>,
    inbox: Arc<dyn InboxStore>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Err(e) = reconcile_revocations(notifications.as_ref(), inbox.as_ref()).await {
            tracing::warn!(error = %e, "applying revocations to the inbox store failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
}

/// Delivers a batch, then acks it; when the batch fails, each of its pages is consumed on its own,
/// so one failing page holds back no other. On failure a page is retried with growing delay (never
/// given up: delivery is idempotent, and a page given up would leave its send unfinished). A body
/// that does not parse can never succeed, and a page the queue gave up on (a broker's retry limit)
/// is not retried: each is kept as a dead letter (noted in its notification's history, counted in
/// metrics), then acked.
async fn handle(
    queue: &dyn Queue,
    deliverer: &Deliverer,
    metrics: &ConsumerMetrics,
    sub: &Subscription,
    topic: Topic,
    deliveries: Vec<Delivery>,
) {
    let batch = match consume(deliverer, metrics, topic, &deliveries).await {
        Ok(()) => Ok(deliveries),
        Err(e) if deliveries.len() == 1 => Err((e, deliveries)),
        Err(e) => {
            tracing::warn!(pages = deliveries.len(), error = %e, "a batch of pages failed; consuming them one by one");
            for d in deliveries {
                let single = std::slice::from_ref(&d);
                match consume(deliverer, metrics, topic, single).await {
                    Ok(()) => ack(queue, sub, single).await,
                    Err(e) => retry(queue, metrics, sub, &d, &e).await,
                }
            }
            return;
        }
    };
    match batch {
        Ok(deliveries) => ack(queue, sub, &deliveries).await,
        Err((e, deliveries)) => retry(queue, metrics, sub, &deliveries[0], &e).await,
    }
}

/// Delivers the pages of `deliveries` together and keeps those that can never be delivered as dead
/// letters, counting each outcome.
async fn consume(
    deliverer: &Deliverer,
    metrics: &ConsumerMetrics,
    topic: Topic,
    deliveries: &[Delivery],
) -> PortResult<()> {
    let mut pages = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let page = match Page::decode(&d.message.body) {
            // The queue gave up retrying it: kept as a dead letter, never delivered late.
            _ if d.given_up => Err("the queue gave up retrying it (dead-lettered by the broker)".to_string()),
            Err(e) => Err(e.to_string()),
            Ok(page) => Ok(page),
        };
        match page {
            Ok(page) => pages.push(page),
            Err(reason) => {
                tracing::error!(key = %d.message.key, %reason, "a page cannot be delivered; keeping it as a dead letter");
                let letter = DeadLetter { key: d.message.key.clone(), reason, body: d.message.body.clone() };
                deliverer.ledger.dead_letter(&letter, Utc::now()).await?;
                metrics.dead_lettered.inc();
                metrics.pages.with_label_values(&["dead_lettered"]).inc();
            }
        }
    }
    if pages.is_empty() {
        return Ok(());
    }
    let outcomes = deliverer.deliver_pages(&pages, topic).await?;
    // Which process delivered what, and how much of it came again (a redelivery after a holder
    // died), for an operator following a send and for tests/processes.rs.
    let repeated = outcomes.iter().filter(|o| matches!(o, Outcome::Repeated)).count();
    tracing::debug!(pages = outcomes.len(), repeated, topic = topic.name(), "pages delivered");
    for outcome in outcomes {
        if let Outcome::Delivered(added) = outcome {
            metrics.deliveries.inc_by(added);
        }
        metrics.pages.with_label_values(&[outcome.label()]).inc();
    }
    Ok(())
}

async fn ack(queue: &dyn Queue, sub: &Subscription, deliveries: &[Delivery]) {
    let receipts: Vec<_> = deliveries.iter().map(|d| d.receipt.clone()).collect();
    if let Err(e) = queue.ack(sub, &receipts).await {
        tracing::warn!(pages = deliveries.len(), error = %e, "ack failed; the pages will be delivered again");
    }
}

async fn retry(queue: &dyn Queue, metrics: &ConsumerMetrics, sub: &Subscription, d: &Delivery, e: &PortError) {
    let delay = Duration::from_secs(1 << d.attempt.min(6));
    tracing::warn!(key = %d.message.key, attempt = d.attempt, error = %e, "page failed; will retry");
    metrics.pages.with_label_values(&["retried"]).inc();
    if let Err(e) = queue.retry_later(sub, &d.receipt, delay).await {
        tracing::warn!(error = %e, "could not schedule the retry; the lease will expire instead");
    }
}
