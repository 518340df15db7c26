//! One round of paging: start due sends, then advance every open task by one page, so that many
//! cities and many notifications progress side by side. Include-list (point-to-point) tasks go
//! first and are never paced; a round of broadcast tasks stops after a second so that a send
//! created meanwhile starts promptly, and the next round continues where this one stopped.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use chrono::Utc;
use herald_domain::audience::Target;
use herald_domain::plan::{page_selection, plan_audience};
use herald_domain::ports::{PageStep, PortError, PortResult, SendTask};
use herald_domain::{City, HistoryEvent, Notification, NotificationId, PAGE_SIZE, Page, PageKey, Topic};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Scheduler;
use crate::relay::Backoff;

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

/// How long an item stays remembered after its retry time passed without a retry: by then it is no
/// longer listed (sent, cancelled, finished), since every round retries what is listed and ready.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// Due notifications read per round, besides those waiting out a backoff.
const DUE_PER_ROUND: usize = 100;

/// Items whose last attempt failed, and when each may be tried again: a failing notification or
/// task waits out its own exponential backoff while the rest of the round goes on.
pub(crate) struct Retries<K> {
    waiting: HashMap<K, Waiting>,
}

struct Waiting {
    backoff: Backoff,
    next: Instant,
    /// The streak's first failure is in the notification's history.
    recorded: bool,
}

impl<K> Default for Retries<K> {
    fn default() -> Self {
        Self { waiting: HashMap::new() }
    }
}

impl<K: Eq + Hash> Retries<K> {
    fn ready(&self, key: &K) -> bool {
        self.waiting.get(key).is_none_or(|w| Instant::now() >= w.next)
    }

    fn len(&self) -> usize {
        self.waiting.len()
    }

    fn failed(&mut self, key: K) -> &mut Waiting {
        let w = self.waiting.entry(key).or_insert_with(|| Waiting {
            backoff: Backoff::default(),
            next: Instant::now(),
            recorded: false,
        });
        w.next = Instant::now() + w.backoff.next();
        w
    }

    fn succeeded(&mut self, key: &K) {
        self.waiting.remove(key);
    }

    fn forget_stale(&mut self) {
        let now = Instant::now();
        self.waiting.retain(|_, w| now < w.next + FORGET_AFTER);
    }
}

/// What the pager retries: due notifications to plan, and send tasks to page.
#[derive(Default)]
pub(crate) struct Retrying {
    plans: Retries<NotificationId>,
    tasks: Retries<(NotificationId, City)>,
}

/// Where an attempt failed: the label of `herald_send_failures_total`.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Plan,
    Page,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Page => "page",
        }
    }
}

impl Scheduler {
    /// Returns whether anything was attempted, so the loop goes on without waiting. Only reading
    /// the due notifications and open tasks fails a round; a failing item is retried on its own.
    pub(crate) async fn page_round(
        &self,
        pace: &mut Pace,
        rotation: &mut Rotation,
        retrying: &mut Retrying,
        shutdown: &CancellationToken,
    ) -> PortResult<bool> {
        retrying.plans.forget_stale();
        retrying.tasks.forget_stale();
        let started = self.start_due(&mut retrying.plans).await?;
        let per_round = self.config.tasks_per_round.max(1);
        // Tasks waiting out a backoff take no share of the round.
        let limit = per_round + retrying.tasks.len();
        let direct = self.ports.ledger.open_tasks(true, None, limit).await?;
        // Broadcast tasks continue after the last one served, wrapping round, so that a round cut
        // short by its budget starves none, however many there are.
        let after = rotation.after.as_ref().map(|(n, c)| (n, c));
        let mut bulk = self.ports.ledger.open_tasks(false, after, limit).await?;
        if let Some((last_id, last_city)) = after
            && bulk.len() < limit
        {
            let wrapped = self.ports.ledger.open_tasks(false, None, limit - bulk.len()).await?;
            bulk.extend(wrapped.into_iter().filter(|t| (&t.notification_id, &t.city) <= (last_id, last_city)));
        }
        let mut ids: Vec<NotificationId> = direct.iter().chain(&bulk).map(|t| t.notification_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let notifications: HashMap<NotificationId, Notification> =
            self.ports.notifications.notifications(&ids).await?.into_iter().map(|n| (n.id.clone(), n)).collect();
        let mut attempted = 0;
        for task in &direct {
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(n) = notifications.get(&task.notification_id)
                && retrying.tasks.ready(&(task.notification_id.clone(), task.city.clone()))
            {
                self.try_advance(n, task, &mut retrying.tasks).await;
                attempted += 1;
            }
        }
        let budget = Instant::now() + ROUND_BUDGET;
        for task in &bulk {
            if shutdown.is_cancelled() || Instant::now() >= budget {
                break;
            }
            if let Some(n) = notifications.get(&task.notification_id)
                && retrying.tasks.ready(&(task.notification_id.clone(), task.city.clone()))
            {
                pace.wait().await;
                self.try_advance(n, task, &mut retrying.tasks).await;
                attempted += 1;
            }
            rotation.after = Some((task.notification_id.clone(), task.city.clone()));
            // Rung: a send was created or released; start it now rather than after this round (each
            // round still writes one broadcast page, so a stream of rings starves no broadcast).
            if self.woken() {
                break;
            }
        }
        Ok(started > 0 || attempted > 0)
    }

    /// Advances one task; a failure is counted, recorded and retried after a backoff.
    async fn try_advance(&self, n: &Notification, task: &SendTask, retries: &mut Retries<(NotificationId, City)>) {
        let key = (task.notification_id.clone(), task.city.clone());
        match self.advance_one(n, task).await {
            Ok(()) => retries.succeeded(&key),
            Err(e) => {
                let what = format!("paging {}", task.city);
                self.failed(Stage::Page, &n.id, &what, &e, retries.failed(key)).await;
            }
        }
    }

    /// Counts a failed attempt, and records the first of a streak in the notification's history.
    async fn failed(&self, stage: Stage, id: &NotificationId, what: &str, error: &PortError, waiting: &mut Waiting) {
        self.metrics.send_failures.with_label_values(&[stage.label()]).inc();
        let retry_in_ms = waiting.next.saturating_duration_since(Instant::now()).as_millis() as u64;
        tracing::warn!(notification = %id, stage = stage.label(), error = %error, retry_in_ms, "{what} failed; will retry");
        if waiting.recorded {
            return;
        }
        let event = HistoryEvent::Retrying { step: what.to_string(), error: error.to_string() };
        match self.ports.notifications.record_event(id, &event, Utc::now()).await {
            Ok(_) => waiting.recorded = true,
            Err(e) => tracing::warn!(notification = %id, error = %e, "could not record the failure in the history"),
        }
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

    /// Plans and starts every due notification that is not waiting out a backoff; returns how many
    /// it attempted.
    #[tracing::instrument(name = "start_due", skip_all)]
    async fn start_due(&self, retries: &mut Retries<NotificationId>) -> PortResult<usize> {
        // Read past those waiting out a backoff, so that they cannot crowd the others out.
        let due = self.ports.ledger.due(Utc::now(), DUE_PER_ROUND + retries.len()).await?;
        let mut attempted = 0;
        for n in &due {
            if !retries.ready(&n.id) {
                continue;
            }
            attempted += 1;
            match self.start_one(n).await {
                Ok(()) => retries.succeeded(&n.id),
                Err(e) => self.failed(Stage::Plan, &n.id, "planning", &e, retries.failed(n.id.clone())).await,
            }
        }
        Ok(attempted)
    }

    async fn start_one(&self, n: &Notification) -> PortResult<()> {
        let c = &n.content;
        let plan =
            plan_audience(self.ports.receivers.as_ref(), c.receiver_kind, &c.audience, c.opt_out_category()).await?;
        if self.ports.ledger.start_sending(&n.id, &plan.cities, Utc::now()).await? {
            self.metrics.sends_started.inc();
            tracing::info!(notification = %n.id, matched = plan.matched(), cities = plan.cities.len(), "sending");
        }
        Ok(())
    }

    /// The next page of a task: up to 500 receivers after its keyset position, minus the excluded
    /// and (a selection's) those who opted out of its category.
    async fn next_step(&self, n: &Notification, task: &SendTask) -> PortResult<PageStep> {
        let kind = n.content.receiver_kind;
        let audience = &n.content.audience;
        let after = task.last_receiver.as_ref();
        let opt_out = n.content.opt_out_category();
        let (receivers, last_receiver, finished, opted_out) = match &audience.target {
            Target::Selection(selection) => {
                let directory = self.ports.receivers.as_ref();
                let step = page_selection(directory, kind, audience, selection, &task.city, after, opt_out).await?;
                (step.receivers, step.last, step.finished, step.opted_out)
            }
            Target::Include(_) => {
                let members = task.members.as_deref().unwrap_or_default();
                let start = after.map_or(0, |a| members.partition_point(|id| id <= a));
                let page: Vec<_> = members[start..].iter().take(PAGE_SIZE).cloned().collect();
                let finished = members.len() - start <= PAGE_SIZE;
                let last = page.last().cloned().or_else(|| task.last_receiver.clone());
                (page, last, finished, 0)
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
            let message = page.to_message(topic).map_err(|e| PortError::new("page encoding", e))?;
            Some((message, count))
        };
        Ok(PageStep { page, last_receiver, finished, opted_out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_item_waits_out_its_backoff_and_a_success_ends_the_streak() {
        let mut retries = Retries::<&str>::default();
        assert!(retries.ready(&"a"));
        let w = retries.failed("a");
        assert!(!w.recorded, "a new streak is not recorded yet");
        w.recorded = true;
        assert!(!retries.ready(&"a") && retries.ready(&"b"), "only the failed one waits");
        assert!(retries.failed("a").recorded, "the streak goes on");
        retries.succeeded(&"a");
        assert!(retries.ready(&"a") && retries.len() == 0);
    }
}
