//! The scheduler role. It turns a due notification into one send task per (notification, city),
//! pages each city's receivers 500 at a time by keyset into the outbox (page and progress in one
//! transaction), and relays the outbox onto the queue. Every step is resumable: a restart continues
//! from the last committed keyset position, and a page published twice is absorbed downstream.

mod metrics;
mod pager;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use herald_domain::ports::{NotificationStore, Queue, ReceiverDirectory, SendLedger};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use metrics::SchedulerMetrics;

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often to look for due notifications and open tasks when nobody wakes it.
    pub tick: Duration,
    /// Upper bound on pages written per second across all sends; `None` is unbounded. Lets
    /// operations cap how fast a nationwide push lands on downstream systems.
    pub max_pages_per_second: Option<u32>,
    /// Open tasks read per round (of each kind, direct and broadcast); the rest wait their turn.
    pub tasks_per_round: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { tick: Duration::from_millis(500), max_pages_per_second: None, tasks_per_round: 1000 }
    }
}

/// The ports the scheduler works through.
#[derive(Clone)]
pub struct SchedulerPorts {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
    pub queue: Arc<dyn Queue>,
}

pub struct Scheduler {
    ports: SchedulerPorts,
    config: SchedulerConfig,
    metrics: SchedulerMetrics,
    /// Rung by the API when a notification is created or sent, so "send now" needs no tick.
    wake: Arc<Notify>,
    /// Rung by the pager when the outbox has something to relay.
    outbox_ready: Notify,
}

impl Scheduler {
    pub fn new(ports: SchedulerPorts, config: SchedulerConfig, metrics: SchedulerMetrics, wake: Arc<Notify>) -> Self {
        Self { ports, config, metrics, wake, outbox_ready: Notify::new() }
    }

    /// Runs the pager and the relay until `shutdown`, then returns once both stopped between steps
    /// (every committed step is durable; nothing in flight is lost).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let pager = tokio::spawn(self.clone().run_pager(shutdown.clone()));
        let relay = tokio::spawn(self.clone().run_relay(shutdown));
        let _ = tokio::join!(pager, relay);
    }

    /// Whether the bell rang since the pager last waited for it (taking the ring: the caller ends
    /// its round, and the next one, which looks for due sends first, begins at once).
    fn woken(&self) -> bool {
        let rung = std::pin::pin!(self.wake.notified());
        rung.enable()
    }

    async fn run_pager(self: Arc<Self>, shutdown: CancellationToken) {
        let mut pace = pager::Pace::new(self.config.max_pages_per_second);
        let mut rotation = pager::Rotation::default();
        let mut retrying = pager::Retrying::default();
        while !shutdown.is_cancelled() {
            let busy = match self.page_round(&mut pace, &mut rotation, &mut retrying, &shutdown).await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler round failed; retrying");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.tick) => {}
                }
            }
        }
    }

    async fn run_relay(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = relay::Backoff::default();
        loop {
            let outcome = self.relay_once().await;
            let nap = match outcome {
                Ok(0) if shutdown.is_cancelled() => break,
                Ok(0) => self.config.tick,
                Ok(_) => {
                    backoff.reset();
                    continue;
                }
                Err(e) => {
                    let nap = backoff.next();
                    tracing::warn!(error = %e, retry_in_ms = nap.as_millis() as u64, "publishing the outbox failed");
                    nap
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.outbox_ready.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
            // Shutdown: one last pass so what the pager committed goes out, unless the queue is down.
            if shutdown.is_cancelled() && backoff.failing() {
                break;
            }
        }
    }
}
