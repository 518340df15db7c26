//! One round of paging: start due sends, then advance every open task by one page, so that many
//! cities and many notifications progress side by side and a one-person message never waits for a
//! nationwide one to finish.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use herald_domain::audience::Target;
use herald_domain::ports::{PageStep, PortError, PortResult, QueueMessage, SendTask};
use herald_domain::{Notification, NotificationId, PAGE_SIZE, Page, PageKey, Topic};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Scheduler;
use crate::plan::{included_receivers, plan_audience};

/// Tasks advanced per round; more wait for the next round.
const TASKS_PER_ROUND: usize = 1000;

/// Spaces page writes to at most N per second.
pub(crate) struct Pace {
    gap: Option<Duration>,
    next: Instant,
}

impl Pace {
    pub(crate) fn new(max_per_second: Option<u32>) -> Self {
        let gap = max_per_second.filter(|n| *n > 0).map(|n| Duration::from_secs(1) / n);
        Self { gap, next: Instant::now() }
    }

    async fn wait(&mut self) {
        if let Some(gap) = self.gap {
            tokio::time::sleep_until(self.next).await;
            self.next = Instant::now().max(self.next) + gap;
        }
    }
}

impl Scheduler {
    /// Returns whether there was work, so the loop goes on without waiting.
    pub(crate) async fn page_round(&self, pace: &mut Pace, shutdown: &CancellationToken) -> PortResult<bool> {
        let started = self.start_due().await?;
        let tasks = self.ports.ledger.open_tasks(TASKS_PER_ROUND).await?;
        let ids: Vec<NotificationId> = {
            let mut ids: Vec<_> = tasks.iter().map(|t| t.notification_id.clone()).collect();
            ids.dedup();
            ids
        };
        let notifications: HashMap<NotificationId, Notification> =
            self.ports.notifications.notifications(&ids).await?.into_iter().map(|n| (n.id.clone(), n)).collect();
        for task in &tasks {
            if shutdown.is_cancelled() {
                break;
            }
            let Some(notification) = notifications.get(&task.notification_id) else { continue };
            pace.wait().await;
            let step = self.next_step(notification, task).await?;
            let receivers = step.page.as_ref().map_or(0, |(_, n)| *n);
            if self.ports.ledger.advance(task, &step).await? {
                if receivers > 0 {
                    self.metrics.receivers_paged.inc_by(receivers);
                    self.outbox_ready.notify_one();
                }
                if step.finished {
                    tracing::debug!(notification = %task.notification_id, city = %task.city, "city paged");
                }
            }
        }
        Ok(started > 0 || !tasks.is_empty())
    }

    /// Plans and starts every due notification.
    async fn start_due(&self) -> PortResult<usize> {
        let due = self.ports.ledger.due(Utc::now(), 100).await?;
        for n in &due {
            let plan =
                plan_audience(self.ports.receivers.as_ref(), n.content.receiver_kind, &n.content.audience).await?;
            if self.ports.ledger.start_sending(&n.id, &plan.cities, Utc::now()).await? {
                self.metrics.sends_started.inc();
                tracing::info!(notification = %n.id, matched = plan.matched(), cities = plan.cities.len(), "sending");
            }
        }
        Ok(due.len())
    }

    /// The next page of a task: up to 500 receivers after its keyset position, minus the excluded.
    async fn next_step(&self, n: &Notification, task: &SendTask) -> PortResult<PageStep> {
        let kind = n.content.receiver_kind;
        let audience = &n.content.audience;
        let after = task.last_receiver.as_ref();
        let (receivers, last_receiver, finished) = match &audience.target {
            Target::Selection(selection) => {
                let raw = self.ports.receivers.page_selection(kind, selection, &task.city, after, PAGE_SIZE).await?;
                let finished = raw.len() < PAGE_SIZE;
                let last = raw.last().cloned().or_else(|| task.last_receiver.clone());
                let kept: Vec<_> = raw.into_iter().filter(|id| !audience.excludes(id)).collect();
                (kept, last, finished)
            }
            Target::Include(_) => {
                let remaining: Vec<_> = included_receivers(self.ports.receivers.as_ref(), kind, audience)
                    .await?
                    .into_iter()
                    .filter(|r| r.city == task.city && after.is_none_or(|a| r.id > *a))
                    .map(|r| r.id)
                    .collect();
                let finished = remaining.len() <= PAGE_SIZE;
                let page: Vec<_> = remaining.into_iter().take(PAGE_SIZE).collect();
                let last = page.last().cloned().or_else(|| task.last_receiver.clone());
                (page, last, finished)
            }
        };
        let page = if receivers.is_empty() {
            None
        } else {
            let count = receivers.len() as u64;
            let page = Page {
                key: PageKey {
                    notification_id: task.notification_id.clone(),
                    city: task.city.clone(),
                    page_no: task.pages_published,
                },
                receiver_kind: kind,
                receivers,
            };
            let topic = if audience.is_direct() { Topic::Direct } else { Topic::Bulk };
            let message = QueueMessage {
                topic: topic.name().to_string(),
                tag: kind.as_str().to_string(),
                key: page.key.to_string(),
                body: serde_json::to_vec(&page).map_err(|e| PortError::new("page encoding", e))?,
            };
            Some((message, count))
        };
        Ok(PageStep { page, last_receiver, finished })
    }
}
