//! The embedded inbox store, in its own SQLite file: per-receiver entries with read flags, and
//! per-notification counters. Delivery inserts a page's entries and raises the counters by exactly
//! the number inserted in one transaction, and records the page, so a redelivered page changes
//! nothing and reports what it added the first time.

use std::collections::HashMap;

use async_trait::async_trait;
use herald_domain::ports::{Counters, InboxStore, PageDelivery, PortError, PortResult};
use herald_domain::{InboxEntry, NotificationId, Page, PageKey, ReceiverId, ReceiverRef};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use herald_sqlite::{self as sqlite, Db};

mod config;
mod raw;

pub use config::EmbeddedInboxConfig;
pub use raw::raw_write_seconds;

const BACKEND: &str = "embedded inbox";
static MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("schema.sql"))];

fn err(e: sqlx::Error) -> PortError {
    PortError::new(BACKEND, e)
}

pub struct EmbeddedInbox {
    db: Db,
}

impl EmbeddedInbox {
    pub async fn open(config: &EmbeddedInboxConfig) -> anyhow::Result<Self> {
        Ok(Self { db: sqlite::open(&config.path, MIGRATIONS).await? })
    }
}

/// Reserves `n` versions; returns the first.
async fn reserve_versions(tx: &mut Transaction<'static, Sqlite>, n: usize) -> PortResult<i64> {
    let top: i64 = sqlx::query_scalar("UPDATE clock SET version = version + ? WHERE id = 1 RETURNING version")
        .bind(n as i64)
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
    Ok(top - n as i64 + 1)
}

async fn bump(tx: &mut Transaction<'static, Sqlite>, id: &NotificationId, field: &str, by: u64) -> PortResult<()> {
    sqlx::query(
        "INSERT INTO counters (notification_id, field, value) VALUES (?, ?, ?) \
         ON CONFLICT (notification_id, field) DO UPDATE SET value = value + excluded.value",
    )
    .bind(id.as_str())
    .bind(field)
    .bind(by as i64)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(())
}

/// What a delivered page added, or `None` if it was never delivered.
async fn outcome<'e>(db: impl sqlx::SqliteExecutor<'e>, key: &PageKey) -> PortResult<Option<u64>> {
    let added: Option<i64> =
        sqlx::query_scalar("SELECT added FROM pages WHERE notification_id = ? AND city = ? AND page_no = ?")
            .bind(key.notification_id.as_str())
            .bind(key.city.as_str())
            .bind(key.page_no as i64)
            .fetch_optional(db)
            .await
            .map_err(err)?;
    Ok(added.map(|a| a as u64))
}

async fn withhold<'e>(db: impl sqlx::SqliteExecutor<'e>, notification: &NotificationId) -> PortResult<()> {
    sqlx::query("INSERT OR IGNORE INTO withheld (notification_id) VALUES (?)")
        .bind(notification.as_str())
        .execute(db)
        .await
        .map_err(err)?;
    Ok(())
}

fn entry_from_row(row: &SqliteRow) -> PortResult<InboxEntry> {
    Ok(InboxEntry {
        notification_id: NotificationId::parse("id", row.try_get("notification_id").map_err(err)?)
            .map_err(|e| PortError::new(BACKEND, e))?,
        version: row.try_get::<i64, _>("version").map_err(err)? as u64,
        read: row.try_get("read").map_err(err)?,
    })
}

#[async_trait]
impl InboxStore for EmbeddedInbox {
    async fn deliver(&self, page: &Page) -> PortResult<PageDelivery> {
        let key = &page.key;
        let mut tx = self.db.begin_write().await.map_err(err)?;
        if let Some(added) = outcome(&mut *tx, key).await? {
            return Ok(PageDelivery { added, repeated: true });
        }
        let withheld: Option<i64> = sqlx::query_scalar("SELECT 1 FROM withheld WHERE notification_id = ?")
            .bind(key.notification_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let receivers: &[ReceiverId] = if withheld.is_some() { &[] } else { &page.receivers };
        let first = reserve_versions(&mut tx, receivers.len()).await?;
        let mut added = 0;
        for (c, chunk) in receivers.chunks(1000).enumerate() {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO entries (receiver, notification_id, version) ");
            qb.push_values(chunk.iter().enumerate(), |mut row, (i, id)| {
                row.push_bind(ReceiverRef::key_of(page.receiver_kind, id))
                    .push_bind(key.notification_id.as_str().to_owned())
                    .push_bind(first + (c * 1000 + i) as i64);
            });
            qb.push(" ON CONFLICT (receiver, notification_id) DO NOTHING");
            added += qb.build().execute(&mut *tx).await.map_err(err)?.rows_affected();
        }
        if added > 0 {
            bump(&mut tx, &key.notification_id, "sent", added).await?;
            bump(&mut tx, &key.notification_id, &format!("sent:{}", key.city), added).await?;
        }
        sqlx::query("INSERT INTO pages (notification_id, city, page_no, added) VALUES (?, ?, ?, ?)")
            .bind(key.notification_id.as_str())
            .bind(key.city.as_str())
            .bind(key.page_no as i64)
            .bind(added as i64)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(PageDelivery { added, repeated: false })
    }

    async fn page_outcome(&self, page: &PageKey) -> PortResult<Option<u64>> {
        outcome(&self.db.read, page).await
    }

    async fn withhold(&self, notification: &NotificationId) -> PortResult<()> {
        withhold(self.db.writer(), notification).await
    }

    async fn apply_revocation(&self, position: u64, notification: &NotificationId) -> PortResult<()> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        withhold(&mut *tx, notification).await?;
        sqlx::query("UPDATE revocations_applied SET position = MAX(position, ?) WHERE id = 1")
            .bind(position as i64)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn revocations_applied(&self) -> PortResult<u64> {
        let position: i64 = sqlx::query_scalar("SELECT position FROM revocations_applied WHERE id = 1")
            .fetch_one(&self.db.read)
            .await
            .map_err(err)?;
        Ok(position as u64)
    }

    async fn entries(&self, receiver: &ReceiverRef) -> PortResult<Vec<InboxEntry>> {
        let rows = sqlx::query("SELECT notification_id, version, read FROM entries WHERE receiver = ?")
            .bind(receiver.key())
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn changed_since(&self, receiver: &ReceiverRef, version: u64, limit: usize) -> PortResult<Vec<InboxEntry>> {
        let rows = sqlx::query(
            "SELECT notification_id, version, read FROM entries WHERE receiver = ? AND version > ? \
             ORDER BY version LIMIT ?",
        )
        .bind(receiver.key())
        .bind(version as i64)
        .bind(limit as i64)
        .fetch_all(&self.db.read)
        .await
        .map_err(err)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn mark_read(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<NotificationId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let first = reserve_versions(&mut tx, ids.len()).await?;
        let mut newly = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let changed = sqlx::query(
                "UPDATE entries SET read = 1, version = ? WHERE receiver = ? AND notification_id = ? AND read = 0",
            )
            .bind(first + i as i64)
            .bind(receiver.key())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if changed == 1 {
                bump(&mut tx, id, "read", 1).await?;
                newly.push(id.clone());
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(newly)
    }

    async fn counters_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Counters>> {
        let mut found: HashMap<NotificationId, Counters> = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT notification_id, field, value FROM counters WHERE notification_id IN ",
            );
            sqlite::push_list(&mut qb, chunk.iter().map(|id| id.as_str().to_owned()));
            for row in qb.build().fetch_all(&self.db.read).await.map_err(err)? {
                let id = NotificationId::parse("id", row.try_get("notification_id").map_err(err)?)
                    .map_err(|e| PortError::new(BACKEND, e))?;
                let field: String = row.try_get("field").map_err(err)?;
                let value = row.try_get::<i64, _>("value").map_err(err)? as u64;
                let counters = found.entry(id).or_default();
                match field.as_str() {
                    "sent" => counters.sent = value,
                    "read" => counters.read = value,
                    other => {
                        if let Some(city) = other.strip_prefix("sent:") {
                            counters.sent_by_city.insert(city.to_string(), value);
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    async fn erase_receiver(&self, receiver: &ReceiverRef) -> PortResult<u64> {
        let erased = sqlx::query("DELETE FROM entries WHERE receiver = ?")
            .bind(receiver.key())
            .execute(self.db.writer())
            .await
            .map_err(err)?
            .rows_affected();
        Ok(erased)
    }

    async fn ping(&self) -> PortResult<()> {
        sqlx::query("SELECT 1").execute(&self.db.read).await.map_err(err)?;
        Ok(())
    }
}
