//! One round of paging: start due sends, then advance every open task by one page, so that many
//! cities and many notifications progress side by side. Include-list (point-to-point) tasks go
//! first and are never paced; a round of broadcast tasks stops after a second so that a send
//! created meanwhile starts promptly, and the next round continues where this one stopped.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use herald_domain::audience::Target;
use herald_domain::plan::plan_audience;
use herald_domain::ports::{PageStep, PortError, PortResult, QueueMessage, SendTask};
use herald_domain::{City, Notification, NotificationId, PAGE_SIZE, Page, PageKey, Topic};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Scheduler;

/// How long one round may spend on broadcast tasks before looking for new sends again.
const ROUND_BUDGET: Duration = Duration::from_secs(1);

/// The last broadcast task served, so a round cut short by its budget starves no task.
#[derive(Default)]
pub(crate) struct Rotation {
    after: Option<(NotificationId, City)>,
}

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
    pub(crate) async fn page_round(
        &self,
        pace: &mut Pace,
        rotation: &mut Rotation,
        shutdown: &CancellationToken,
    ) -> PortResult<bool> {
        let started = self.start_due().await?;
        let per_round = self.config.tasks_per_round.max(1);
        let direct = self.ports.ledger.open_tasks(true, None, per_round).await?;
        // Broadcast tasks continue after the last one served, wrapping round, so that a round cut
        // short by its budget starves none, however many there are.
        let after = rotation.after.as_ref().map(|(n, c)| (n, c));
        let mut bulk = self.ports.ledger.open_tasks(false, after, per_round).await?;
        if let Some((last_id, last_city)) = after
            && bulk.len() < per_round
        {
            let wrapped = self.ports.ledger.open_tasks(false, None, per_round - bulk.len()).await?;
            bulk.extend(wrapped.into_iter().filter(|t| (&t.notification_id, &t.city) <= (last_id, last_city)));
        }
        let mut ids: Vec<NotificationId> = direct.iter().chain(&bulk).map(|t| t.notification_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let notifications: HashMap<NotificationId, Notification> =
            self.ports.notifications.notifications(&ids).await?.into_iter().map(|n| (n.id.clone(), n)).collect();
        for task in &direct {
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(n) = notifications.get(&task.notification_id) {
                self.advance_one(n, task).await?;
            }
        }
        let budget = Instant::now() + ROUND_BUDGET;
        for task in &bulk {
            if shutdown.is_cancelled() || Instant::now() >= budget {
                break;
            }
            if let Some(n) = notifications.get(&task.notification_id) {
                pace.wait().await;
                self.advance_one(n, task).await?;
            }
            rotation.after = Some((task.notification_id.clone(), task.city.clone()));
            // Rung: a send was created or released; start it now rather than after this round (each
            // round still writes one broadcast page, so a stream of rings starves no broadcast).
            if self.woken() {
                break;
            }
        }
        Ok(started > 0 || !direct.is_empty() || !bulk.is_empty())
    }

    /// Writes the task's next page (or its end) to the outbox.
    #[tracing::instrument(name = "page_task", skip_all, fields(notification = %task.notification_id, city = %task.city, page = task.pages_published))]
    async fn advance_one(&self, n: &Notification, task: &SendTask) -> PortResult<()> {
        let step = self.next_step(n, task).await?;
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
        Ok(())
    }

    /// Plans and starts every due notification.
    #[tracing::instrument(name = "start_due", skip_all)]
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
                let members = task.members.as_deref().unwrap_or_default();
                let start = after.map_or(0, |a| members.partition_point(|id| id <= a));
                let page: Vec<_> = members[start..].iter().take(PAGE_SIZE).cloned().collect();
                let finished = members.len() - start <= PAGE_SIZE;
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
