//! The embedded queue: a durable, at-least-once queue with topics, tags and consumer groups in one
//! SQLite file. It behaves like the RocketMQ adapter as far as Herald can tell: a message published
//! is kept for every group subscribed to its topic and tag until that group acks it; a pulled
//! message not acked within the lease is handed out again, also after a crash. A message is never
//! dropped after many failures: Herald's consumers are idempotent, so retrying is always safe, and a
//! dropped page would leave its receivers without the message and its send unfinished.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::ports::{Delivery, PortError, PortResult, Queue, QueueMessage, Subscription};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::Notify;

use crate::adapters::sqlite::{self, Db, now_millis, push_list};

const BACKEND: &str = "embedded queue";
static MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("schema.sql"))];

fn err(e: sqlx::Error) -> PortError {
    PortError::new(BACKEND, e)
}

pub struct EmbeddedQueue {
    db: Db,
    /// How long a pulled message stays hidden before it is handed out again.
    lease: Duration,
    /// Wakes pullers of this process when something is published or becomes visible.
    published: Notify,
}

impl EmbeddedQueue {
    pub async fn open(path: &Path, lease: Duration) -> anyhow::Result<Self> {
        Ok(Self { db: sqlite::open(path, MIGRATIONS).await?, lease, published: Notify::new() })
    }

    /// Leases up to `max` visible messages of the group, taken in turn from each topic so that a
    /// backlog on one topic (a nationwide push) never delays another (a point-to-point message).
    async fn take(&self, s: &Subscription, max: usize) -> PortResult<Vec<Delivery>> {
        let now = now_millis();
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let mut lines = Vec::with_capacity(s.topics.len());
        for topic in &s.topics {
            let rows = sqlx::query(
                "SELECT p.seq, p.attempts, m.topic, m.tag, m.msg_key, m.body FROM pending p \
                 JOIN messages m ON m.seq = p.seq \
                 WHERE p.grp = ? AND p.topic = ? AND p.visible_at <= ? ORDER BY p.seq LIMIT ?",
            )
            .bind(&s.group)
            .bind(topic)
            .bind(now)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            let mut line = Vec::with_capacity(rows.len());
            for row in &rows {
                line.push(Delivery {
                    receipt: row.try_get::<i64, _>("seq").map_err(err)? as u64,
                    attempt: row.try_get::<i64, _>("attempts").map_err(err)? as u32 + 1,
                    message: QueueMessage {
                        topic: row.try_get("topic").map_err(err)?,
                        tag: row.try_get("tag").map_err(err)?,
                        key: row.try_get("msg_key").map_err(err)?,
                        body: row.try_get("body").map_err(err)?,
                    },
                });
            }
            lines.push(line.into_iter());
        }
        let mut deliveries = Vec::with_capacity(max);
        while deliveries.len() < max {
            let before = deliveries.len();
            for line in &mut lines {
                if deliveries.len() < max
                    && let Some(d) = line.next()
                {
                    deliveries.push(d);
                }
            }
            if deliveries.len() == before {
                break;
            }
        }
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let mut qb = QueryBuilder::<Sqlite>::new("UPDATE pending SET attempts = attempts + 1, visible_at = ");
        qb.push_bind(now + self.lease.as_millis() as i64);
        qb.push(" WHERE grp = ").push_bind(s.group.clone()).push(" AND seq IN ");
        push_list(&mut qb, deliveries.iter().map(|d| d.receipt as i64));
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
        // A consumer starting means the previous one stopped (embedded Herald runs one consumer per
        // data dir): its leases are void, so hand those messages out now rather than after the lease.
        sqlx::query("UPDATE pending SET visible_at = 0 WHERE grp = ? AND attempts > 0")
            .bind(&s.group)
            .execute(self.db.writer())
            .await
            .map_err(err)?;
        Ok(())
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

    async fn ack(&self, s: &Subscription, receipts: &[u64]) -> PortResult<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await.map_err(err)?;
        for chunk in receipts.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM pending WHERE grp = ");
            qb.push_bind(s.group.clone()).push(" AND seq IN ");
            push_list(&mut qb, chunk.iter().map(|r| *r as i64));
            qb.build().execute(&mut *tx).await.map_err(err)?;
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM messages WHERE seq IN ");
            push_list(&mut qb, chunk.iter().map(|r| *r as i64));
            qb.push(" AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.seq = messages.seq)");
            qb.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn retry_later(&self, s: &Subscription, receipt: u64, delay: Duration) -> PortResult<()> {
        sqlx::query("UPDATE pending SET visible_at = ? WHERE grp = ? AND seq = ?")
            .bind(now_millis() + delay.as_millis() as i64)
            .bind(&s.group)
            .bind(receipt as i64)
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
}
