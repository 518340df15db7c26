//! The embedded inbox store, in its own SQLite file: per-receiver entries with read flags, what
//! each notification's entries need to be ordered and filtered (`EntryMeta`), and per-notification
//! counters. Delivery inserts a page's entries and raises the counters by exactly the number
//! inserted in one transaction, and records the page, so a redelivered page changes nothing and
//! reports what it added the first time, with one B-tree write per entry. Every read is a range of
//! one receiver's entries: the list order is their primary key; sync finds arrivals by probing this
//! inbox for each notification delivered since its cursor and reads by an index of read entries;
//! visibility is answered from the notification's stored window and the withheld set, never from
//! the whole inbox.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_domain::ports::{Counters, InboxStore, PageDelivery, PageWrite, PortError, PortResult, Read, UnreadCount};
use herald_domain::{
    Category, EntryMeta, InboxCap, InboxCursor, InboxEntry, NotificationId, Page, PageKey, ReceiverId, ReceiverRef,
    ShownVariant,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use herald_sqlite::{self as sqlite, Db};

mod config;
mod raw;

pub use config::EmbeddedInboxConfig;
pub use raw::raw_write_seconds;

const BACKEND: &str = "embedded inbox";
static MIGRATIONS: &[(i64, &str)] =
    &[(1, include_str!("schema.sql")), (2, include_str!("category_codes.sql")), (3, include_str!("seen.sql"))];

fn err(e: sqlx::Error) -> PortError {
    PortError::new(BACKEND, e)
}

pub struct EmbeddedInbox {
    db: Db,
    cap: InboxCap,
}

impl EmbeddedInbox {
    /// Opens the store `config` names, keeping at most `config.cap` entries per inbox (see
    /// `InboxCap` for what goes first).
    pub async fn open(config: &EmbeddedInboxConfig) -> anyhow::Result<Self> {
        Ok(Self { db: sqlite::open(&config.path, MIGRATIONS).await?, cap: config.cap })
    }
}

/// The columns every entry read selects, from `entries e` joined with `notifications n`.
macro_rules! entry_columns {
    () => {
        "SELECT e.notification_id, e.version, e.read, e.rank, e.sent_ms, n.force_read, n.category "
    };
}

/// Entries of one receiver (`?1`), each with its notification's stored part.
macro_rules! receiver_entries {
    () => {
        concat!(entry_columns!(), "FROM entries e CROSS JOIN notifications n ON n.notification_id = e.notification_id ")
    };
}

/// A receiver's entry of each notification `n`, after `ON e.receiver = <receiver>`: pinned ones
/// have two possible keys, read or not.
macro_rules! entry_of_notification {
    () => {
        " AND e.category = n.category AND e.rank IN (-1, 0, n.pinned) AND e.sent_ms = n.sent_ms \
         AND e.notification_id = n.notification_id "
    };
}

/// Shown at `?2` (Unix ms): inside the window and not withheld.
macro_rules! visible {
    () => {
        "(n.valid_from_ms IS NULL OR n.valid_from_ms <= ?2) AND (n.valid_until_ms IS NULL OR ?2 < n.valid_until_ms) \
         AND NOT EXISTS (SELECT 1 FROM withheld w WHERE w.notification_id = e.notification_id) "
    };
}

/// The list order: the primary key read backwards.
macro_rules! list_order {
    () => {
        "ORDER BY e.rank DESC, e.sent_ms DESC, e.notification_id DESC"
    };
}

/// One category's part of a page, the category bound at `$category` (see `InboxStore::page`).
macro_rules! category_range {
    ($category:literal) => {
        concat!(
            "SELECT * FROM (",
            receiver_entries!(),
            "WHERE e.receiver = ?1 AND e.category = ",
            $category,
            " AND e.rank >= 0 AND (e.rank, e.sent_ms, e.notification_id) < (?3, ?4, ?5) AND ",
            visible!(),
            list_order!(),
            " LIMIT ?6)"
        )
    };
}

/// The list order over the categories' parts merged.
macro_rules! merged_order {
    () => {
        " ORDER BY rank DESC, sent_ms DESC, notification_id DESC LIMIT ?6"
    };
}

/// Reserves `n` versions; returns the first, and the newest `sent_ms` the cap ever dropped.
async fn reserve_versions(tx: &mut Transaction<'static, Sqlite>, n: usize) -> PortResult<(i64, i64)> {
    let (top, trimmed): (i64, i64) =
        sqlx::query_as("UPDATE clock SET version = version + ? WHERE id = 1 RETURNING version, trimmed_upto_ms")
            .bind(n as i64)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
    Ok((top - n as i64 + 1, trimmed))
}

/// Raises each of the notification's `fields` by `by`, in one statement.
async fn bump(tx: &mut Transaction<'static, Sqlite>, id: &NotificationId, fields: &[&str], by: u64) -> PortResult<()> {
    let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO counters (notification_id, field, value) ");
    qb.push_values(fields, |mut row, field| {
        row.push_bind(id.as_str()).push_bind(*field).push_bind(by as i64);
    });
    qb.push(" ON CONFLICT (notification_id, field) DO UPDATE SET value = value + excluded.value");
    qb.build().execute(&mut **tx).await.map_err(err)?;
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

/// How the store keys and samples a notification's entries.
struct Stored {
    category: Category,
    pinned: bool,
    sent_ms: i64,
    seq: i64,
    /// Some receiver archived an entry of it (rank -1): a page must then look for that key too.
    archived: bool,
}

/// What a delivery reads before it writes, in one statement (on a busy machine every statement's
/// round trip counts): what the page added if it was delivered before, whether the notification
/// is withheld, and what the store kept of it, if anything.
async fn before_delivery(
    tx: &mut Transaction<'static, Sqlite>,
    key: &PageKey,
) -> PortResult<(Option<u64>, bool, Option<Stored>)> {
    type Row = (Option<i64>, bool, Option<i64>, Option<bool>, Option<i64>, Option<i64>, Option<bool>);
    let (added, withheld, category, pinned, sent_ms, seq, archived): Row = sqlx::query_as(
        "SELECT (SELECT added FROM pages WHERE notification_id = ?1 AND city = ?2 AND page_no = ?3), \
                    EXISTS (SELECT 1 FROM withheld WHERE notification_id = ?1), n.category, n.pinned, n.sent_ms, n.seq, n.archived \
             FROM (SELECT 1) LEFT JOIN notifications n ON n.notification_id = ?1",
    )
    .bind(key.notification_id.as_str())
    .bind(key.city.as_str())
    .bind(key.page_no as i64)
    .fetch_one(&mut **tx)
    .await
    .map_err(err)?;
    let stored = match (category, pinned, sent_ms, seq) {
        (Some(category), Some(pinned), Some(sent_ms), Some(seq)) => {
            Some(Stored { category: category_of(category)?, pinned, sent_ms, seq, archived: archived.unwrap_or(false) })
        }
        _ => None,
    };
    Ok((added.map(|a| a as u64), withheld, stored))
}

/// Keeps the notification's `EntryMeta` on its first page (it never changes), numbering it.
async fn keep_meta(tx: &mut Transaction<'static, Sqlite>, id: &NotificationId, meta: &EntryMeta) -> PortResult<Stored> {
    let seq: i64 =
        sqlx::query_scalar("UPDATE clock SET notifications = notifications + 1 WHERE id = 1 RETURNING notifications")
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
    sqlx::query(
        "INSERT INTO notifications (notification_id, category, pinned, force_read, sent_ms, valid_from_ms, \
         valid_until_ms, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(code_of(meta.category))
    .bind(meta.pinned)
    .bind(meta.force_read)
    .bind(meta.sent_at_ms)
    .bind(meta.valid_from_ms)
    .bind(meta.valid_until_ms)
    .bind(seq)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(Stored { category: meta.category, pinned: meta.pinned, sent_ms: meta.sent_at_ms, seq, archived: false })
}

/// A category as the store keeps it: its place in `Category::ALL` (see category_codes.sql).
fn code_of(category: Category) -> i64 {
    category.index() as i64
}

/// The category a stored code stands for.
fn category_of(code: i64) -> PortResult<Category> {
    usize::try_from(code)
        .ok()
        .and_then(|i| Category::ALL.get(i).copied())
        .ok_or_else(|| PortError::new(BACKEND, format!("unknown category code {code}")))
}

fn entry_from_row(row: &SqliteRow) -> PortResult<InboxEntry> {
    let id = NotificationId::parse("id", row.try_get("notification_id").map_err(err)?)
        .map_err(|e| PortError::new(BACKEND, e))?;
    Ok(InboxEntry {
        version: row.try_get::<i64, _>("version").map_err(err)? as u64,
        read: row.try_get("read").map_err(err)?,
        force_read: row.try_get("force_read").map_err(err)?,
        category: category_of(row.try_get("category").map_err(err)?)?,
        archived: row.try_get::<i64, _>("rank").map_err(err)? == -1,
        position: InboxCursor {
            pinned_unread: row.try_get::<i64, _>("rank").map_err(err)? == 1,
            sent_at_ms: row.try_get("sent_ms").map_err(err)?,
            id: id.clone(),
        },
        notification_id: id,
    })
}

fn entries_from_rows(rows: &[SqliteRow]) -> PortResult<Vec<InboxEntry>> {
    rows.iter().map(entry_from_row).collect()
}

/// The first of the reasons an entry may be dropped, in the order the cap drops them (`InboxCap`):
/// 0 it can never be shown again, 1 read, 2 unread.
const GONE: i64 = 0;

/// The inboxes of a page that are looked at for the cap: each receiver's turn comes once in every
/// `cap / 20` notifications (rotating with the notification's `seq`), so a receiver who gets every
/// broadcast is looked at once per that many arrivals and its inbox passes the cap by at most 5%
/// before it is trimmed. Counting a twentieth of a page's inboxes costs a delivery far less than
/// keeping a size per inbox, which would be a second random write per entry.
fn due_for_cap(receivers: &[String], seq: i64, cap: InboxCap) -> Vec<String> {
    let every = (cap.get() as u64 / 20).max(1);
    receivers.iter().filter(|r| fnv1a(r.as_bytes()).wrapping_add(seq as u64) % every == 0).cloned().collect()
}

/// A hash that stays the same across processes and versions (std's does not promise to).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Trims each of these inboxes that holds more than the cap down to `cap.after_trim()`, in
/// `InboxCap`'s order, and remembers the newest droppable entry dropped from it so that entry never
/// comes back.
async fn trim(tx: &mut Transaction<'static, Sqlite>, due: &[String], cap: InboxCap, now_ms: i64) -> PortResult<()> {
    if due.is_empty() {
        return Ok(());
    }
    // One query for all of them: most are below the cap.
    let mut qb = QueryBuilder::<Sqlite>::new("SELECT receiver, COUNT(*) FROM entries WHERE receiver IN ");
    sqlite::push_list(&mut qb, due.iter().map(String::as_str));
    qb.push(" GROUP BY receiver HAVING COUNT(*) > ").push_bind(cap.get() as i64);
    let over: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut **tx).await.map_err(err)?;
    for (receiver, entries) in &over {
        let excess = entries - cap.after_trim() as i64;
        // Pinned entries and unread force-read ones are kept while they can still be shown.
        let victims: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT e.rank, e.sent_ms, e.notification_id, \
                    CASE WHEN w.notification_id IS NOT NULL OR n.valid_until_ms <= ?2 THEN 0 \
                         WHEN e.read = 1 OR e.rank = -1 THEN 1 ELSE 2 END AS class, e.category \
             FROM entries e CROSS JOIN notifications n ON n.notification_id = e.notification_id \
             LEFT JOIN withheld w ON w.notification_id = e.notification_id \
             WHERE e.receiver = ?1 AND (class = 0 OR e.rank = -1 OR (n.pinned = 0 AND (e.read = 1 OR n.force_read = 0))) \
             ORDER BY class, e.sent_ms, e.notification_id LIMIT ?3",
        )
        .bind(receiver)
        .bind(now_ms)
        .bind(excess)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        if victims.is_empty() {
            continue;
        }
        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM entries WHERE receiver = ");
        qb.push_bind(receiver.as_str()).push(" AND (category, rank, sent_ms, notification_id) IN (");
        qb.push_values(&victims, |mut row, (rank, sent_ms, id, _, category)| {
            row.push_bind(*category).push_bind(*rank).push_bind(*sent_ms).push_bind(id.as_str());
        });
        qb.push(")");
        qb.build().execute(&mut **tx).await.map_err(err)?;
        // A message that could still be shown must not come back in a later page; one that
        // cannot (closed window, revoked) is never paged again, so it needs no mark.
        let dropped_upto = victims.iter().filter(|v| v.3 != GONE).map(|v| v.1).max();
        if let Some(upto) = dropped_upto {
            sqlx::query(
                "INSERT INTO inbox_trims (receiver, trimmed_upto_ms) VALUES (?1, ?2) \
                 ON CONFLICT (receiver) DO UPDATE SET trimmed_upto_ms = MAX(trimmed_upto_ms, ?2)",
            )
            .bind(receiver)
            .bind(upto)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            sqlx::query("UPDATE clock SET trimmed_upto_ms = MAX(trimmed_upto_ms, ?) WHERE id = 1")
                .bind(upto)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
    }
    Ok(())
}

/// How a page's entries are written: delivered (recorded and counted) or restored by a rebuild
/// (neither: the ledger's record is restored apart).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Deliver,
    Restore,
}

/// Delivers (or restores) one page inside `tx` (see `InboxStore::deliver` and `restore`).
async fn deliver_in(
    tx: &mut Transaction<'static, Sqlite>,
    page_write: &PageWrite<'_>,
    cap: InboxCap,
    write: Write,
) -> PortResult<PageDelivery> {
    let PageWrite { page, meta, .. } = *page_write;
    let key = &page.key;
    let (delivered, withheld, stored) = before_delivery(tx, key).await?;
    if let Some(added) = delivered.filter(|_| write == Write::Deliver) {
        return Ok(PageDelivery { added, repeated: true });
    }
    // A rebuild restores a revoked notification's entries too (hidden): sync tells their devices.
    let receivers: &[ReceiverId] = if withheld && write == Write::Deliver { &[] } else { &page.receivers };
    let mut added = 0;
    if !receivers.is_empty() {
        let Stored { category, pinned, sent_ms, seq, archived } = match stored {
            Some(stored) => stored,
            None => keep_meta(tx, &key.notification_id, meta).await?,
        };
        let (first, trimmed_upto) = reserve_versions(tx, receivers.len()).await?;
        let keys: Vec<String> = receivers.iter().map(|id| ReceiverRef::key_of(page.receiver_kind, id)).collect();
        // The receivers (by place in the page, which gives each entry's version) in one part, or
        // for a notification with variants in one part per content shown, so that each part's
        // inserts count its variant's added.
        let parts: Vec<(Option<ShownVariant>, Vec<usize>)> = match page_write.split() {
            None => vec![(None, (0..keys.len()).collect())],
            Some(shown) => {
                let mut by_shown: BTreeMap<ShownVariant, Vec<usize>> = BTreeMap::new();
                for (place, shown) in shown.iter().enumerate() {
                    by_shown.entry(*shown).or_default().push(place);
                }
                by_shown.into_iter().map(|(shown, places)| (Some(shown), places)).collect()
            }
        };
        let mut added_by_variant: BTreeMap<ShownVariant, u64> = BTreeMap::new();
        for (shown, places) in &parts {
            for chunk in places.chunks(1000) {
                let mut qb = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO entries (receiver, category, rank, sent_ms, notification_id, version) SELECT column1, ",
                );
                qb.push_bind(code_of(category))
                    .push(", ")
                    .push_bind(i64::from(pinned))
                    .push(", ")
                    .push_bind(sent_ms)
                    .push(", ")
                    .push_bind(key.notification_id.as_str())
                    .push(", column2 FROM (");
                qb.push_values(chunk, |mut row, &place| {
                    row.push_bind(keys[place].as_str()).push_bind(first + place as i64);
                });
                qb.push(") AS v WHERE true");
                // Only a page older than something the cap dropped somewhere needs this check.
                if sent_ms <= trimmed_upto {
                    qb.push(" AND NOT EXISTS (SELECT 1 FROM inbox_trims s WHERE s.receiver = v.column1 AND s.trimmed_upto_ms >= ")
                        .push_bind(sent_ms)
                        .push(")");
                }
                // A pinned entry that was read has rank 0, an archived one -1: the primary key alone
                // would not see them.
                if pinned || archived {
                    qb.push(" AND NOT EXISTS (SELECT 1 FROM entries r WHERE r.receiver = v.column1 AND r.category = ")
                        .push_bind(code_of(category))
                        .push(" AND r.rank IN (-1, 0) AND r.sent_ms = ")
                        .push_bind(sent_ms)
                        .push(" AND r.notification_id = ")
                        .push_bind(key.notification_id.as_str())
                        .push(")");
                }
                qb.push(" ON CONFLICT DO NOTHING");
                let part_added = qb.build().execute(&mut **tx).await.map_err(err)?.rows_affected();
                added += part_added;
                if let Some(shown) = shown.filter(|_| part_added > 0) {
                    *added_by_variant.entry(shown).or_default() += part_added;
                }
            }
        }
        if added > 0 {
            if write == Write::Deliver {
                bump(tx, &key.notification_id, &["sent", &Counters::city_field(key.city.as_str())], added).await?;
                for (shown, n) in added_by_variant {
                    bump(tx, &key.notification_id, &[&Counters::variant_field(shown, false)], n).await?;
                }
            }
            sqlx::query("UPDATE notifications SET last_version = MAX(last_version, ?) WHERE notification_id = ?")
                .bind(first + keys.len() as i64 - 1)
                .bind(key.notification_id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(err)?;
            let due = due_for_cap(&keys, seq, cap);
            trim(tx, &due, cap, sqlite::millis(Utc::now())).await?;
        }
    }
    if write == Write::Deliver {
        record_pages(tx, &[(key.clone(), added)]).await?;
    }
    Ok(PageDelivery { added, repeated: false })
}

/// Records pages as delivered with what each added, replacing what was recorded.
async fn record_pages(tx: &mut Transaction<'static, Sqlite>, pages: &[(PageKey, u64)]) -> PortResult<()> {
    for chunk in pages.chunks(500) {
        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO pages (notification_id, city, page_no, added) ");
        qb.push_values(chunk, |mut row, (key, added)| {
            row.push_bind(key.notification_id.as_str())
                .push_bind(key.city.as_str())
                .push_bind(key.page_no as i64)
                .push_bind(*added as i64);
        });
        qb.push(" ON CONFLICT (notification_id, city, page_no) DO UPDATE SET added = excluded.added");
        qb.build().execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}

#[async_trait]
impl InboxStore for EmbeddedInbox {
    async fn deliver_pages(&self, pages: &[PageWrite<'_>]) -> PortResult<Vec<PageDelivery>> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let mut deliveries = Vec::with_capacity(pages.len());
        for page in pages {
            deliveries.push(deliver_in(&mut tx, page, self.cap, Write::Deliver).await?);
        }
        tx.commit().await.map_err(err)?;
        Ok(deliveries)
    }

    async fn restore(&self, page: &Page, meta: &EntryMeta) -> PortResult<u64> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let restored = deliver_in(&mut tx, &PageWrite::new(page, meta), self.cap, Write::Restore).await?;
        tx.commit().await.map_err(err)?;
        Ok(restored.added)
    }

    async fn restore_pages(&self, pages: &[(PageKey, u64)]) -> PortResult<()> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        record_pages(&mut tx, pages).await?;
        tx.commit().await.map_err(err)
    }

    async fn set_counters(&self, notification: &NotificationId, counters: &Counters) -> PortResult<()> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        sqlx::query("DELETE FROM counters WHERE notification_id = ?")
            .bind(notification.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for chunk in counters.fields().chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO counters (notification_id, field, value) ");
            qb.push_values(chunk, |mut row, (field, value)| {
                row.push_bind(notification.as_str()).push_bind(field.as_str()).push_bind(*value as i64);
            });
            qb.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
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

    async fn page(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        after: Option<&InboxCursor>,
        limit: usize,
        category: Option<Category>,
    ) -> PortResult<Vec<InboxEntry>> {
        // Rank 2 sorts after every entry: no cursor starts at the top.
        let (rank, sent_ms, id) =
            after.map_or((2, 0, ""), |c| (i64::from(c.pinned_unread), c.sent_at_ms, c.id.as_str()));
        // The key starts with the category: a tab is one range of it, and the whole list the
        // first `limit` of each category's range merged, O(limit) each.
        let (sql, categories) = match category {
            Some(c) => (concat!(category_range!("?7"), merged_order!()), vec![c]),
            None => (
                concat!(
                    category_range!("?7"),
                    " UNION ALL ",
                    category_range!("?8"),
                    " UNION ALL ",
                    category_range!("?9"),
                    merged_order!()
                ),
                Category::ALL.to_vec(),
            ),
        };
        let mut query = sqlx::query(sql)
            .bind(receiver.key())
            .bind(sqlite::millis(now))
            .bind(rank)
            .bind(sent_ms)
            .bind(id)
            .bind(limit as i64);
        for category in &categories {
            query = query.bind(code_of(*category));
        }
        let rows = query.fetch_all(&self.db.read).await.map_err(err)?;
        entries_from_rows(&rows)
    }

    async fn unread_count(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<UnreadCount> {
        // The seen mark's subqueries name no column of the entry: SQLite reads them once.
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(concat!(
            "SELECT e.category, COUNT(*), COALESCE(SUM(n.force_read), 0), COALESCE(SUM(CASE WHEN ",
            "e.version > IFNULL((SELECT version FROM seen WHERE receiver = ?1), 0) ",
            "OR n.valid_from_ms > (SELECT at_ms FROM seen WHERE receiver = ?1) THEN 1 ELSE 0 END), 0) ",
            "FROM entries e CROSS JOIN notifications n ON n.notification_id = e.notification_id ",
            "WHERE e.receiver = ?1 AND e.read = 0 AND e.rank >= 0 AND ",
            visible!(),
            "GROUP BY e.category"
        ))
        .bind(receiver.key())
        .bind(sqlite::millis(now))
        .fetch_all(&self.db.read)
        .await
        .map_err(err)?;
        let mut count = UnreadCount::default();
        for (category, unread, force_read, unseen) in rows {
            count.unread += unread as u64;
            count.force_read += force_read as u64;
            count.unseen += unseen as u64;
            count.by_category.add(category_of(category)?, unread as u64);
        }
        Ok(count)
    }

    async fn unread(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        force_read_only: bool,
    ) -> PortResult<Vec<InboxEntry>> {
        let rows = sqlx::query(concat!(
            receiver_entries!(),
            "WHERE e.receiver = ?1 AND e.read = 0 AND e.rank >= 0 AND (n.force_read = 1 OR NOT ?3) AND ",
            visible!(),
            list_order!()
        ))
        .bind(receiver.key())
        .bind(sqlite::millis(now))
        .bind(force_read_only)
        .fetch_all(&self.db.read)
        .await
        .map_err(err)?;
        entries_from_rows(&rows)
    }

    async fn entries_of(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<InboxEntry>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(concat!(
                entry_columns!(),
                "FROM notifications n CROSS JOIN entries e ON e.receiver = "
            ));
            qb.push_bind(receiver.key());
            qb.push(concat!(entry_of_notification!(), "WHERE n.notification_id IN "));
            sqlite::push_list(&mut qb, chunk.iter().map(|id| id.as_str().to_owned()));
            found.extend(entries_from_rows(&qb.build().fetch_all(&self.db.read).await.map_err(err)?)?);
        }
        Ok(found)
    }

    async fn changed_since(&self, receiver: &ReceiverRef, version: u64, limit: usize) -> PortResult<Vec<InboxEntry>> {
        // Arrivals since `version` are entries of the notifications delivered anywhere since; when
        // those are fewer than an inbox holds, probing this inbox for each is the cheaper way.
        let arrived: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM notifications WHERE last_version > ? LIMIT ?)")
                .bind(version as i64)
                .bind(self.cap.get() as i64 + 1)
                .fetch_one(&self.db.read)
                .await
                .map_err(err)?;
        let query = if arrived <= self.cap.get() as i64 {
            sqlx::query(concat!(
                "SELECT * FROM (",
                entry_columns!(),
                "FROM notifications n CROSS JOIN entries e ON e.receiver = ?1 AND e.category = n.category ",
                "AND e.rank = n.pinned ",
                "AND e.sent_ms = n.sent_ms AND e.notification_id = n.notification_id ",
                "WHERE n.last_version > ?2 AND e.read = 0 AND e.version > ?2 UNION ALL ",
                entry_columns!(),
                "FROM entries e INDEXED BY entries_changed_by_version CROSS JOIN notifications n ",
                "ON n.notification_id = e.notification_id WHERE e.receiver = ?1 AND (e.read = 1 OR e.rank = -1) ",
                "AND e.version > ?2",
                ") ORDER BY version LIMIT ?3"
            ))
        } else {
            // A new device, or one long away: its inbox (at most about the cap) read once.
            sqlx::query(concat!(
                receiver_entries!(),
                "WHERE e.receiver = ?1 AND e.version > ?2 ORDER BY e.version LIMIT ?3"
            ))
        };
        let rows = query
            .bind(receiver.key())
            .bind(version as i64)
            .bind(limit as i64)
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
        entries_from_rows(&rows)
    }

    async fn opened_between(
        &self,
        receiver: &ReceiverRef,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<InboxEntry>> {
        let rows = sqlx::query(concat!(
            entry_columns!(),
            "FROM notifications n CROSS JOIN entries e ON e.receiver = ?1",
            entry_of_notification!(),
            "WHERE n.valid_from_ms > ?2 AND n.valid_from_ms <= ?3"
        ))
        .bind(receiver.key())
        .bind(sqlite::millis(after))
        .bind(sqlite::millis(until))
        .fetch_all(&self.db.read)
        .await
        .map_err(err)?;
        entries_from_rows(&rows)
    }

    async fn mark_seen(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<()> {
        // In a write transaction: after every delivery committed before it, before every later one.
        let mut tx = self.db.begin_write().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO seen (receiver, version, at_ms) SELECT ?1, version, ?2 FROM clock WHERE id = 1 \
             ON CONFLICT (receiver) DO UPDATE SET version = MAX(version, excluded.version), \
             at_ms = MAX(at_ms, excluded.at_ms)",
        )
        .bind(receiver.key())
        .bind(sqlite::millis(now))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    async fn mark_read_shown(&self, receiver: &ReceiverRef, reads: &[Read]) -> PortResult<Vec<NotificationId>> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let (first, _) = reserve_versions(&mut tx, reads.len()).await?;
        let mut newly = Vec::new();
        for (i, Read { id, shown }) in reads.iter().enumerate() {
            // An unread entry's rank is its notification's `pinned`: the key is known, one lookup.
            let changed = sqlx::query(
                "UPDATE entries SET read = 1, rank = MIN(rank, 0), version = ?1 WHERE receiver = ?2 \
                 AND category = (SELECT category FROM notifications WHERE notification_id = ?3) \
                 AND rank IN (-1, (SELECT pinned FROM notifications WHERE notification_id = ?3)) \
                 AND sent_ms = (SELECT sent_ms FROM notifications WHERE notification_id = ?3) \
                 AND notification_id = ?3 AND read = 0",
            )
            .bind(first + i as i64)
            .bind(receiver.key())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if changed == 1 {
                match shown {
                    Some(shown) => bump(&mut tx, id, &["read", &Counters::variant_field(*shown, true)], 1).await?,
                    None => bump(&mut tx, id, &["read"], 1).await?,
                }
                newly.push(id.clone());
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(newly)
    }

    async fn set_archived(
        &self,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        archived: bool,
    ) -> PortResult<Vec<NotificationId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let (first, _) = reserve_versions(&mut tx, ids.len()).await?;
        // Archived is rank -1, below every listed entry: the list's ranges (rank 0 and 1) never
        // meet it. Un-archived, it takes the rank its read flag gives it.
        let sql = if archived {
            "UPDATE entries SET rank = -1, version = ?1 WHERE receiver = ?2 \
             AND category = (SELECT category FROM notifications WHERE notification_id = ?3) \
             AND rank IN (0, (SELECT pinned FROM notifications WHERE notification_id = ?3)) \
             AND sent_ms = (SELECT sent_ms FROM notifications WHERE notification_id = ?3) \
             AND notification_id = ?3"
        } else {
            "UPDATE entries SET rank = CASE WHEN read = 0 THEN \
             (SELECT pinned FROM notifications WHERE notification_id = ?3) ELSE 0 END, version = ?1 \
             WHERE receiver = ?2 AND category = (SELECT category FROM notifications WHERE notification_id = ?3) \
             AND rank = -1 AND sent_ms = (SELECT sent_ms FROM notifications WHERE notification_id = ?3) \
             AND notification_id = ?3"
        };
        let mut changed = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let version = first + i as i64;
            let n = sqlx::query(sql)
                .bind(version)
                .bind(receiver.key())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
            if n == 1 {
                // Archived: later pages must look for the archived key. Un-archived: sync finds
                // unread entries through their notification's newest version.
                sqlx::query(
                    "UPDATE notifications SET archived = MAX(archived, ?1), last_version = \
                     CASE WHEN ?1 THEN last_version ELSE MAX(last_version, ?2) END WHERE notification_id = ?3",
                )
                .bind(archived)
                .bind(version)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                changed.push(id.clone());
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(changed)
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
                found.entry(id).or_default().set_field(&field, value);
            }
        }
        Ok(found)
    }

    async fn erase_receiver(&self, receiver: &ReceiverRef) -> PortResult<u64> {
        let mut tx = self.db.begin_write().await.map_err(err)?;
        let erased = sqlx::query("DELETE FROM entries WHERE receiver = ?")
            .bind(receiver.key())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        // A receiver created again with this id is a new one: nothing of the old inbox's trims or
        // seen mark holds.
        for sql in ["DELETE FROM inbox_trims WHERE receiver = ?", "DELETE FROM seen WHERE receiver = ?"] {
            sqlx::query(sql).bind(receiver.key()).execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(erased)
    }

    async fn ping(&self) -> PortResult<()> {
        sqlx::query("SELECT 1").execute(&self.db.read).await.map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_that_kept_category_names_keeps_its_entries_under_codes() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedInboxConfig::in_data_dir(dir.path(), InboxCap::default());
        // A store as migration 1 left it: categories by name.
        let old = sqlite::open(&config.path, &MIGRATIONS[..1]).await.unwrap();
        let ids: Vec<NotificationId> = (0..3).map(|_| NotificationId::generate()).collect();
        for (seq, (id, name)) in ids.iter().zip(["system", "activity", "announcement"]).enumerate() {
            let sent_ms = 1_000 + seq as i64;
            sqlx::query(
                "INSERT INTO notifications (notification_id, category, pinned, force_read, sent_ms, seq) \
                 VALUES (?, ?, 0, 0, ?, ?)",
            )
            .bind(id.as_str())
            .bind(name)
            .bind(sent_ms)
            .bind(seq as i64 + 1)
            .execute(old.writer())
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO entries (receiver, category, rank, sent_ms, notification_id, version) \
                 VALUES ('rider:r1', ?, 0, ?, ?, ?)",
            )
            .bind(name)
            .bind(sent_ms)
            .bind(id.as_str())
            .bind(seq as i64 + 1)
            .execute(old.writer())
            .await
            .unwrap();
        }
        old.read.close().await;
        old.writer().close().await;

        let inbox = EmbeddedInbox::open(&config).await.unwrap();
        let rider =
            ReceiverRef { kind: herald_domain::ReceiverKind::Rider, id: ReceiverId::parse("id", "r1").unwrap() };
        let listed = inbox.page(&rider, Utc::now(), None, 10, None).await.unwrap();
        let listed: Vec<_> = listed.iter().map(|e| (e.notification_id.clone(), e.category)).collect();
        let newest_first: Vec<_> = ids.iter().cloned().zip(Category::ALL).rev().collect();
        assert_eq!(listed, newest_first);
        let count = inbox.unread_count(&rider, Utc::now()).await.unwrap();
        assert_eq!(count.by_category.iter().collect::<Vec<_>>(), Category::ALL.map(|c| (c, 1)).to_vec());
        let tab = inbox.page(&rider, Utc::now(), None, 10, Some(Category::Announcement)).await.unwrap();
        assert_eq!(tab.len(), 1);
        assert_eq!(inbox.mark_read(&rider, &ids[1..2]).await.unwrap(), ids[1..2].to_vec(), "keys still found");
    }

    #[test]
    fn every_inbox_is_due_once_in_each_run_of_cap_over_20_notifications() {
        let cap = InboxCap::default();
        let receivers: Vec<String> = (0..500).map(|i| format!("rider:r{i:09}")).collect();
        let mut looked_at: HashMap<String, u32> = HashMap::new();
        for seq in 7..7 + 50 {
            for r in due_for_cap(&receivers, seq, cap) {
                *looked_at.entry(r).or_default() += 1;
            }
        }
        assert_eq!(looked_at.len(), receivers.len());
        assert!(looked_at.values().all(|n| *n == 1), "one turn each per 50 notifications");
        let small = InboxCap::new("cap", 10).unwrap();
        assert_eq!(due_for_cap(&receivers, 1, small).len(), receivers.len(), "a small cap looks at every inbox");
    }
}
