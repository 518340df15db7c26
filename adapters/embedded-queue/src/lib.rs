//! The embedded queue: a durable, at-least-once queue with topics, tags and consumer groups in one
//! SQLite file. It behaves like the RocketMQ adapter as far as Herald can tell: a message published
//! is kept for every group subscribed to its topic and tag until that group acks it; a pulled
//! message not acked within the lease is handed out again. A lease belongs to the handle that took
//! it: each consuming handle beats a heartbeat row, and the leases of one that stops beating (a
//! killed process) are handed out again within seconds, never those of a live one. A message is never
//! dropped after many failures: Herald's consumers are idempotent, so retrying is always safe, and a
//! dropped page would leave its receivers without the message and its send unfinished.

use std::time::Duration;

use async_trait::async_trait;
use herald_domain::ports::{Delivery, PortError, PortResult, Queue, QueueMessage, Subscription};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::{Notify, OnceCell};
use tokio::task::AbortHandle;

use herald_sqlite::{self as sqlite, Db, now_millis, push_list};

mod config;

pub use config::EmbeddedQueueConfig;

const BACKEND: &str = "embedded queue";
static MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("schema.sql"))];

/// How often a consuming handle tells the queue it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

fn err(e: sqlx::Error) -> PortError {
    PortError::new(BACKEND, e)
}

pub struct EmbeddedQueue {
    db: Db,
    /// How long a pulled message stays hidden before it is handed out again.
    lease: Duration,
    /// How long a holder may stay silent before its leases are void.
    holder_stale_after: Duration,
    /// This handle's name as the holder of the leases it takes.
    holder: String,
    /// The heartbeat of this handle, started when it first consumes; stopped when it is dropped.
    heartbeat: OnceCell<AbortHandle>,
    /// Wakes pullers of this process when something is published or becomes visible.
    published: Notify,
}

impl Drop for EmbeddedQueue {
    fn drop(&mut self) {
        if let Some(beat) = self.heartbeat.get() {
            beat.abort();
        }
    }
}

/// A receipt names one lease: the message and the attempt that took it.
fn receipt(seq: i64, attempt: i64) -> String {
    format!("{seq}:{attempt}")
}

fn parse_receipt(receipt: &str) -> PortResult<(i64, i64)> {
    receipt
        .split_once(':')
        .and_then(|(seq, attempt)| Some((seq.parse().ok()?, attempt.parse().ok()?)))
        .ok_or_else(|| PortError::new(BACKEND, format!("not a receipt of this queue: {receipt:?}")))
}

/// Records that `holder` is alive, and voids the leases of holders that stopped beating.
async fn beat(db: &Db, holder: &str, stale_after: Duration) -> Result<(), sqlx::Error> {
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO consumers (id, heartbeat_at) VALUES (?, ?) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    )
    .bind(holder)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let dead: Vec<String> = sqlx::query_scalar("SELECT id FROM consumers WHERE heartbeat_at < ?")
        .bind(now - stale_after.as_millis() as i64)
        .fetch_all(&mut *tx)
        .await?;
    if !dead.is_empty() {
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE pending SET holder = NULL, visible_at = 0 WHERE holder IN ");
        push_list(&mut qb, dead.iter().cloned());
        qb.build().execute(&mut *tx).await?;
        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM consumers WHERE id IN ");
        push_list(&mut qb, dead.iter().cloned());
        qb.build().execute(&mut *tx).await?;
        tracing::info!(holders = dead.len(), "queue consumers stopped heartbeating; their pages are handed out again");
    }
    tx.commit().await
}

impl EmbeddedQueue {
    pub async fn open(config: &EmbeddedQueueConfig) -> anyhow::Result<Self> {
        Ok(Self {
            db: sqlite::open(&config.path, MIGRATIONS).await?,
            lease: config.lease,
            holder_stale_after: config.holder_stale_after,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            heartbeat: OnceCell::new(),
            published: Notify::new(),
        })
    }

    /// Beats once, then keeps beating in the background while this handle lives.
    async fn start_heartbeat(&self) -> PortResult<()> {
        self.heartbeat
            .get_or_try_init(|| async {
                beat(&self.db, &self.holder, self.holder_stale_after).await.map_err(err)?;
                let (db, holder, stale_after) = (self.db.clone(), self.holder.clone(), self.holder_stale_after);
                let task = tokio::spawn(async move {
                    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
                    loop {
                        every.tick().await;
                        if let Err(e) = beat(&db, &holder, stale_after).await {
                            tracing::warn!(error = %e, "queue heartbeat failed");
                        }
                    }
                });
                Ok::<_, PortError>(task.abort_handle())
            })
            .await?;
        Ok(())
    }

    /// Leases up to `max` visible messages of the group to this handle, topic by topic in the
    /// subscription's order: a later topic only fills what an earlier one leaves room for.
    async fn take(&self, s: &Subscription, max: usize) -> PortResult<Vec<Delivery>> {
        self.start_heartbeat().await?;
        let now = now_millis();
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let mut deliveries = Vec::with_capacity(max);
        let mut seqs = Vec::with_capacity(max);
        for topic in &s.topics {
            if deliveries.len() >= max {
                break;
            }
            let rows = sqlx::query(
                "SELECT p.seq, p.attempts, m.topic, m.tag, m.msg_key, m.body FROM pending p \
                 JOIN messages m ON m.seq = p.seq \
                 WHERE p.grp = ? AND p.topic = ? AND p.visible_at <= ? ORDER BY p.seq LIMIT ?",
            )
            .bind(&s.group)
            .bind(topic)
            .bind(now)
            .bind((max - deliveries.len()) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            for row in &rows {
                let seq: i64 = row.try_get("seq").map_err(err)?;
                let attempt = row.try_get::<i64, _>("attempts").map_err(err)? + 1;
                seqs.push(seq);
                deliveries.push(Delivery {
                    receipt: receipt(seq, attempt),
                    attempt: attempt as u32,
                    message: QueueMessage {
                        topic: row.try_get("topic").map_err(err)?,
                        tag: row.try_get("tag").map_err(err)?,
                        key: row.try_get("msg_key").map_err(err)?,
                        body: row.try_get("body").map_err(err)?,
                    },
                    // Retries go on forever here.
                    given_up: false,
                });
            }
        }
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE pending SET attempts = attempts + 1, holder = ");
        qb.push_bind(self.holder.clone()).push(", visible_at = ");
        qb.push_bind(now + self.lease.as_millis() as i64);
        qb.push(" WHERE grp = ").push_bind(s.group.clone()).push(" AND seq IN ");
        push_list(&mut qb, seqs);
        qb.build().execute(&mut *tx).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(deliveries)
    }

    /// When the group's next leased or delayed message becomes visible, if any.
    async fn next_visible_in(&self, group: &str) -> PortResult<Option<Duration>> {
        let at: Option<i64> = sqlx::query_scalar("SELECT MIN(visible_at) FROM pending WHERE grp = ?")
            .bind(group)
            .fetch_one(&self.db.read)
            .await
            .map_err(err)?;
        Ok(at.map(|at| Duration::from_millis((at - now_millis()).max(0) as u64)))
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn publish(&self, messages: &[QueueMessage]) -> PortResult<()> {
        let now = now_millis();
        let mut tx = self.db.begin_write().await.map_err(err)?;
        for m in messages {
            let seq =
                sqlx::query("INSERT INTO messages (topic, tag, msg_key, body, published_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&m.topic)
                    .bind(&m.tag)
                    .bind(&m.key)
                    .bind(&m.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .last_insert_rowid();
            let kept_for = sqlx::query(
                "INSERT INTO pending (grp, seq, topic) SELECT grp, ?, topic FROM subscriptions WHERE topic = ? AND tag = ?",
            )
            .bind(seq)
            .bind(&m.topic)
            .bind(&m.tag)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if kept_for == 0 {
                // Nobody declared interest: refuse rather than drop, so the caller keeps the message.
                return Err(PortError::new(
                    BACKEND,
                    format!("no consumer group is declared for topic {} tag {}", m.topic, m.tag),
                ));
            }
        }
        tx.commit().await.map_err(err)?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn declare(&self, s: &Subscription) -> PortResult<()> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        for topic in &s.topics {
            for tag in &s.tags {
                sqlx::query("INSERT OR IGNORE INTO subscriptions (grp, topic, tag) VALUES (?, ?, ?)")
                    .bind(&s.group)
                    .bind(topic)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
        tx.commit().await.map_err(err)
    }

    async fn subscribe(&self, s: &Subscription) -> PortResult<()> {
        self.declare(s).await?;
        // Leases stay with their holders; the heartbeat hands a dead holder's messages out again.
        self.start_heartbeat().await
    }

    async fn pull(&self, s: &Subscription, max: usize, wait: Duration) -> PortResult<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish between the look and the wait wakes us.
            let notified = self.published.notified();
            let taken = self.take(s, max).await?;
            if !taken.is_empty() {
                return Ok(taken);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut nap = deadline - now;
            if let Some(visible) = self.next_visible_in(&s.group).await? {
                nap = nap.min(visible.max(Duration::from_millis(1)));
            }
            // Another process may publish into the same file: look again at least every 200 ms.
            nap = nap.min(Duration::from_millis(200));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn ack(&self, s: &Subscription, receipts: &[String]) -> PortResult<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let leases = receipts.iter().map(|r| parse_receipt(r)).collect::<PortResult<Vec<_>>>()?;
        let mut tx = self.db.begin_write().await.map_err(err)?;
        for (seq, attempt) in leases {
            // Only the lease the receipt names: a message handed out again since is not acked by it.
            let acked = sqlx::query("DELETE FROM pending WHERE grp = ? AND seq = ? AND attempts = ?")
                .bind(&s.group)
                .bind(seq)
                .bind(attempt)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
            if acked > 0 {
                sqlx::query("DELETE FROM messages WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM pending WHERE seq = ?)")
                    .bind(seq)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
        tx.commit().await.map_err(err)
    }

    async fn retry_later(&self, s: &Subscription, receipt: &str, delay: Duration) -> PortResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        sqlx::query("UPDATE pending SET visible_at = ?, holder = NULL WHERE grp = ? AND seq = ? AND attempts = ?")
            .bind(now_millis() + delay.as_millis() as i64)
            .bind(&s.group)
            .bind(seq)
            .bind(attempt)
            .execute(self.db.writer())
            .await
            .map_err(err)?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn lag(&self, s: &Subscription) -> PortResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pending WHERE grp = ?")
            .bind(&s.group)
            .fetch_one(&self.db.read)
            .await
            .map_err(err)?;
        Ok(n as u64)
    }

    async fn ping(&self) -> PortResult<()> {
        sqlx::query("SELECT 1 FROM pending LIMIT 1").execute(&self.db.read).await.map_err(err)?;
        Ok(())
    }
}
