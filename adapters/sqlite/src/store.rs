//! The SQL truth on SQLite: receivers, notifications, history, send tasks, outbox, delivered pages,
//! read receipts and revocations.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_domain::completion::{CityState, send_completes};
use herald_domain::plan::{LateDelivery, late_deliveries, selection_of_every_city};
use herald_domain::ports::*;
use herald_domain::{
    Attributes, Audience, Body, Category, City, Group, HistoryEntry, HistoryEvent, ImageUrl, Locale, NewNotification,
    Notification, NotificationId, PageKey, Preferences, Receiver, ReceiverId, ReceiverKind, ReceiverRef, Selection,
    Status, Title, ValidityWindow,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use crate::SqliteConfig;
use crate::db::{self, Db, from_millis, millis, push_list};

const BACKEND: &str = "sqlite";
/// Rows per multi-row statement: 500 rows × 5 binds stays far below SQLite's bind limit.
const CHUNK: usize = 500;

static MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../sql/sqlite/0001_init.sql")),
    (2, include_str!("../../../sql/sqlite/0002_search_changes.sql")),
    (3, include_str!("../../../sql/sqlite/0003_window_edges.sql")),
    (4, include_str!("../../../sql/sqlite/0004_rich_content.sql")),
    (5, include_str!("../../../sql/sqlite/0005_archives.sql")),
    (6, include_str!("../../../sql/sqlite/0006_preferences.sql")),
    (7, include_str!("../../../sql/sqlite/0007_variants_locales.sql")),
];

macro_rules! notification_columns {
    () => {
        "id, title, body, category, receiver_kind, audience, pinned, force_read, valid_from, valid_until, \
         send_at, draft, status, created_at, sent_at, revoked_at, image, actions, \
         variants, locales"
    };
}

/// A receiver row as `receiver_from_row` reads it.
macro_rules! receiver_columns {
    () => {
        "kind, id, city, groups, attributes, locale"
    };
}

fn err(e: sqlx::Error) -> PortError {
    PortError::with(BACKEND, crate::failure_of(&e), e)
}

fn corrupt(what: impl std::fmt::Display) -> PortError {
    PortError::new(BACKEND, format!("stored row does not parse: {what}"))
}

/// The SQL truth in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    pub async fn open(config: &SqliteConfig) -> anyhow::Result<Self> {
        Ok(Self { db: db::open(&config.path, MIGRATIONS).await? })
    }

    /// This store, reading through connections of its own within `limits` (see `Db::limited_reads`).
    pub async fn with_read_limits(&self, limits: &crate::ReadLimits) -> anyhow::Result<Self> {
        Ok(Self { db: self.db.limited_reads(limits).await? })
    }

    /// A write transaction that takes the write lock up front, so two writers queue on the busy
    /// timeout instead of failing when one upgrades a read lock.
    async fn write(&self) -> PortResult<Transaction<'static, Sqlite>> {
        self.db.begin_write().await.map_err(err)
    }
}

/// `;a;b;` (or `` for none): a column a single `instr(col, ';a;')` can test for membership.
fn delimited<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let joined = items.into_iter().collect::<Vec<_>>().join(";");
    if joined.is_empty() { joined } else { format!(";{joined};") }
}

fn receiver_from_row(row: &SqliteRow) -> PortResult<Receiver> {
    let kind: String = row.try_get("kind").map_err(err)?;
    let id: String = row.try_get("id").map_err(err)?;
    let city: String = row.try_get("city").map_err(err)?;
    let groups: String = row.try_get("groups").map_err(err)?;
    let attributes: Option<String> = row.try_get("attributes").map_err(err)?;
    let attributes = Attributes::parse_json("attributes", attributes.as_deref().unwrap_or("")).map_err(corrupt)?;
    let locale: Option<String> = row.try_get("locale").map_err(err)?;
    let locale = locale.map(|l| Locale::parse("locale", &l)).transpose().map_err(corrupt)?;
    let receiver = Receiver::parse_fields(&kind, &id, &city, &groups).map_err(corrupt)?;
    Ok(receiver.with_attributes(attributes).with_locale(locale))
}

/// A JSON column read back through the type's own checks; NULL is the type's empty value.
fn json_column<T: serde::de::DeserializeOwned + Default>(row: &SqliteRow, column: &str) -> PortResult<T> {
    match row.try_get::<Option<String>, _>(column).map_err(err)? {
        Some(raw) => serde_json::from_str(&raw).map_err(corrupt),
        None => Ok(T::default()),
    }
}

/// A JSON column's value: NULL when `empty`, else the value's JSON.
fn to_json_column<T: serde::Serialize>(value: &T, empty: bool) -> PortResult<Option<String>> {
    if empty {
        return Ok(None);
    }
    serde_json::to_string(value).map(Some).map_err(|e| PortError::new(BACKEND, e))
}

/// The attributes column: NULL for none, else their JSON.
fn attributes_column(r: &Receiver) -> Option<String> {
    (!r.attributes.is_empty()).then(|| r.attributes.to_json())
}

/// A JSON array of strings: however many cities or groups a selection names, they travel as one
/// bind and are read by `json_each`, so a query's size never grows with the list.
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::from(items.into_iter().collect::<Vec<_>>()).to_string()
}

/// ` WHERE r.kind = ? [AND r.city IN (cities)] [AND r is in one of the groups]`, each list one JSON
/// bind. `with_cities` false leaves the cities to the caller (paging one city tests `r.city = ?`).
///
/// The group test probes the receiver's few `receiver_groups` rows and looks each up among the
/// wanted groups: `+g.grp` keeps SQLite from instead probing the index once per wanted group, which
/// for 10,000 groups costs 10,000 lookups per receiver. The MariaDB adapter writes the same EXISTS
/// with `JSON_TABLE` in place of `json_each`, inside a `DISTINCT` derived table it materializes with
/// an index (its `push_json_values`).
fn push_selection(qb: &mut QueryBuilder<Sqlite>, kind: ReceiverKind, selection: &Selection, with_cities: bool) {
    qb.push(" WHERE r.kind = ").push_bind(kind.as_str());
    if let Some(cities) = selection.cities.as_ref().filter(|_| with_cities) {
        qb.push(" AND r.city IN (SELECT value FROM json_each(");
        qb.push_bind(json_list(cities.iter().map(City::as_str))).push("))");
    }
    if !selection.groups.is_empty() {
        qb.push(
            " AND EXISTS (SELECT 1 FROM receiver_groups g WHERE g.kind = r.kind AND g.id = r.id \
             AND +g.grp IN (SELECT value FROM json_each(",
        );
        qb.push_bind(json_list(selection.groups.iter().map(Group::as_str))).push(")))");
    }
}

fn opt_millis(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(millis)
}

fn notification_from_row(row: &SqliteRow) -> PortResult<Notification> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(err);
    let flag = |c: &str| row.try_get::<bool, _>(c).map_err(err);
    let time = |c: &str| row.try_get::<Option<i64>, _>(c).map(|t| t.map(from_millis)).map_err(err);
    let id = NotificationId::parse("id", &text("id")?).map_err(corrupt)?;
    let audience: Audience = serde_json::from_str(&text("audience")?).map_err(corrupt)?;
    Ok(Notification {
        content: NewNotification {
            title: Title::parse("title", &text("title")?).map_err(corrupt)?,
            body: Body::parse("body", &text("body")?).map_err(corrupt)?,
            category: Category::parse("category", &text("category")?).map_err(corrupt)?,
            receiver_kind: ReceiverKind::parse("receiver_kind", &text("receiver_kind")?).map_err(corrupt)?,
            audience,
            pinned: flag("pinned")?,
            force_read: flag("force_read")?,
            validity: ValidityWindow::new(time("valid_from")?, time("valid_until")?).map_err(corrupt)?,
            send_at: time("send_at")?,
            draft: flag("draft")?,
            image: row
                .try_get::<Option<String>, _>("image")
                .map_err(err)?
                .map(|raw| ImageUrl::parse("image", &raw))
                .transpose()
                .map_err(corrupt)?,
            actions: json_column(row, "actions")?,
            locales: json_column(row, "locales")?,
            variants: json_column(row, "variants")?,
        },
        status: Status::parse("status", &text("status")?).map_err(corrupt)?,
        created_at: from_millis(row.try_get("created_at").map_err(err)?),
        sent_at: time("sent_at")?,
        revoked_at: time("revoked_at")?,
        id,
    })
}

async fn load(tx: &mut Transaction<'static, Sqlite>, id: &NotificationId) -> PortResult<Option<Notification>> {
    sqlx::query(concat!("SELECT ", notification_columns!(), " FROM notifications WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?
        .map(|r| notification_from_row(&r))
        .transpose()
}

/// What a create with this key already made: a replay when the body matches, else `KeyReused`.
async fn seen_key(tx: &mut Transaction<'static, Sqlite>, idem: &Idempotency) -> PortResult<Option<CreateOutcome>> {
    let seen = sqlx::query("SELECT id, request_fingerprint FROM notifications WHERE idempotency_key = ?")
        .bind(&idem.key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
    let Some(row) = seen else { return Ok(None) };
    let fingerprint: Option<String> = row.try_get("request_fingerprint").map_err(err)?;
    if fingerprint.as_deref() != Some(idem.fingerprint.as_str()) {
        return Ok(Some(CreateOutcome::KeyReused));
    }
    let id = NotificationId::parse("id", row.try_get("id").map_err(err)?).map_err(corrupt)?;
    let existing = load(tx, &id).await?.ok_or_else(|| corrupt("vanished"))?;
    Ok(Some(CreateOutcome::Replayed(existing)))
}

async fn add_history(
    tx: &mut Transaction<'static, Sqlite>,
    id: &NotificationId,
    status: Status,
    event: &HistoryEvent,
    at: DateTime<Utc>,
) -> PortResult<()> {
    sqlx::query("INSERT INTO notification_history (notification_id, at, status, detail) VALUES (?, ?, ?, ?)")
        .bind(id.as_str())
        .bind(millis(at))
        .bind(status.as_str())
        .bind(event.to_string())
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    Ok(())
}

/// Applies the completion rules (`herald_domain::completion`) to the city, then to the
/// notification: marks the city done, and moves the notification from sending to sent. Returns
/// true when it moved now. Called by both the scheduler (a task finishing) and the consumers (a page
/// arriving), inside their write transaction: whichever is last settles it.
async fn settle(
    tx: &mut Transaction<'static, Sqlite>,
    id: &NotificationId,
    city: Option<&City>,
    now: DateTime<Utc>,
) -> PortResult<bool> {
    if let Some(city) = city
        && city_state(tx, id, city).await?.is_some_and(|state| state.completes())
    {
        // Done: `matched` becomes the receivers its pages actually reached.
        sqlx::query(
            "UPDATE send_tasks SET done = 1, matched = (SELECT COALESCE(SUM(d.added), 0) FROM delivered_pages d \
               WHERE d.notification_id = send_tasks.notification_id AND d.city = send_tasks.city) \
             WHERE notification_id = ? AND city = ?",
        )
        .bind(id.as_str())
        .bind(city.as_str())
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    }
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM send_tasks WHERE notification_id = ? AND done = 0")
        .bind(id.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
    if !send_completes(open as u64) {
        return Ok(false);
    }
    let moved = sqlx::query("UPDATE notifications SET status = 'sent' WHERE id = ? AND status = 'sending'")
        .bind(id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(err)?
        .rows_affected();
    if moved == 0 {
        return Ok(false);
    }
    let reached: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(matched), 0) FROM send_tasks WHERE notification_id = ?")
        .bind(id.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
    add_history(tx, id, Status::Sent, &HistoryEvent::Delivered { receivers: reached as u64 }, now).await?;
    Ok(true)
}

/// Where one city's task stands (`None` if it has none).
async fn city_state(
    tx: &mut Transaction<'static, Sqlite>,
    id: &NotificationId,
    city: &City,
) -> PortResult<Option<CityState>> {
    let row = sqlx::query(
        "SELECT finished, done, pages_published, pages_delivered FROM send_tasks WHERE notification_id = ? AND city = ?",
    )
    .bind(id.as_str())
    .bind(city.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(err)?;
    row.map(|row| {
        Ok(CityState {
            finished: row.try_get("finished").map_err(err)?,
            done: row.try_get("done").map_err(err)?,
            pages_published: row.try_get::<i64, _>("pages_published").map_err(err)? as u32,
            pages_delivered: row.try_get::<i64, _>("pages_delivered").map_err(err)? as u32,
        })
    })
    .transpose()
}

/// Writes the receivers (the last of repeated ids wins) that are new or whose city, groups or
/// attributes changed, and returns them with those whose city or groups changed (what late
/// deliveries look at: new attributes alone reach no one new); an unchanged one is not rewritten. The stored rows are read first,
/// inside the write transaction, so a fresh import reads nothing back and a re-import compares
/// in memory (the same works on MySQL, which has no RETURNING on an upsert). Their
/// `receiver_groups` rows are replaced in the same transaction.
async fn write_receivers(
    tx: &mut Transaction<'static, Sqlite>,
    receivers: &[Receiver],
    now: DateTime<Utc>,
) -> PortResult<Written> {
    let latest: BTreeMap<(ReceiverKind, &ReceiverId), &Receiver> =
        receivers.iter().map(|r| ((r.kind, &r.id), r)).collect();
    // Per kind: id → its row as stored.
    let mut stored: HashMap<ReceiverKind, HashMap<String, StoredReceiver>> = HashMap::new();
    for kind in ReceiverKind::ALL {
        let ids = json_list(latest.keys().filter(|(k, _)| *k == kind).map(|(_, id)| id.as_str()));
        let rows = sqlx::query(
            "SELECT id, city, groups, attributes, locale FROM receivers WHERE kind = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(kind.as_str())
        .bind(ids)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        let of_kind = stored.entry(kind).or_default();
        for row in rows {
            let fields = (
                row.try_get("city").map_err(err)?,
                row.try_get("groups").map_err(err)?,
                row.try_get("attributes").map_err(err)?,
                row.try_get("locale").map_err(err)?,
            );
            of_kind.insert(row.try_get("id").map_err(err)?, fields);
        }
    }
    let before = |r: &Receiver| stored.get(&r.kind).and_then(|of_kind| of_kind.get(r.id.as_str()));
    let moved = |r: &Receiver| {
        before(r).is_none_or(|(city, groups, _, _)| {
            city != r.city.as_str() || *groups != delimited(r.groups().iter().map(Group::as_str))
        })
    };
    let changed: Vec<Receiver> = latest
        .into_values()
        .filter(|r| {
            moved(r)
                || before(r).is_some_and(|(_, _, attributes, locale)| {
                    *attributes != attributes_column(r) || locale.as_deref() != r.locale.as_ref().map(Locale::as_str)
                })
        })
        .cloned()
        .collect();
    for chunk in changed.chunks(CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO receivers (kind, id, city, groups, attributes, locale, updated_at) ",
        );
        qb.push_values(chunk, |mut row, r| {
            row.push_bind(r.kind.as_str())
                .push_bind(r.id.as_str().to_owned())
                .push_bind(r.city.as_str().to_owned())
                .push_bind(delimited(r.groups().iter().map(Group::as_str)))
                .push_bind(attributes_column(r))
                .push_bind(r.locale.as_ref().map(|l| l.as_str().to_owned()))
                .push_bind(millis(now));
        });
        qb.push(
            " ON CONFLICT (kind, id) DO UPDATE SET city = excluded.city, groups = excluded.groups, \
             attributes = excluded.attributes, locale = excluded.locale, updated_at = excluded.updated_at",
        );
        qb.build().execute(&mut **tx).await.map_err(err)?;
    }
    // Only receivers stored before have group rows to replace.
    for kind in ReceiverKind::ALL {
        let existed = changed.iter().filter(|r| r.kind == kind && before(r).is_some());
        let ids = json_list(existed.map(|r| r.id.as_str()));
        sqlx::query("DELETE FROM receiver_groups WHERE kind = ? AND id IN (SELECT value FROM json_each(?))")
            .bind(kind.as_str())
            .bind(ids)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    let memberships: Vec<(&Receiver, &Group)> =
        changed.iter().flat_map(|r| r.groups().iter().map(move |g| (r, g))).collect();
    for chunk in memberships.chunks(CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO receiver_groups (kind, id, grp) ");
        qb.push_values(chunk, |mut row, (r, g)| {
            row.push_bind(r.kind.as_str()).push_bind(r.id.as_str().to_owned()).push_bind(g.as_str().to_owned());
        });
        qb.build().execute(&mut **tx).await.map_err(err)?;
    }
    let moved = changed.iter().filter(|r| moved(r)).cloned().collect();
    Ok(Written { moved, count: changed.len() })
}

/// A receiver's city, groups, attributes and locale columns, as stored.
type StoredReceiver = (String, String, Option<String>, Option<String>);

/// What `write_receivers` wrote: how many, and those whose city or groups changed.
struct Written {
    count: usize,
    moved: Vec<Receiver>,
}

/// The broadcasts a receiver may get late (`plan::reaches_late` decides; this only narrows): one
/// query per upsert, however many receivers it writes.
async fn late_broadcasts(tx: &mut Transaction<'static, Sqlite>, now: DateTime<Utc>) -> PortResult<Vec<Notification>> {
    sqlx::query(concat!(
        "SELECT ",
        notification_columns!(),
        " FROM notifications WHERE status IN ('sending', 'sent') AND direct = 0 \
         AND (valid_until IS NULL OR valid_until > ?)"
    ))
    .bind(millis(now))
    .fetch_all(&mut **tx)
    .await
    .map_err(err)?
    .iter()
    .map(notification_from_row)
    .collect()
}

/// The stored preferences of `receivers` (those with none are absent), read in the caller's
/// transaction: what late deliveries respect.
async fn stored_preferences(
    tx: &mut Transaction<'static, Sqlite>,
    receivers: &[Receiver],
) -> PortResult<HashMap<ReceiverRef, Preferences>> {
    let mut found: HashMap<ReceiverRef, Vec<Category>> = HashMap::new();
    for kind in ReceiverKind::ALL {
        let ids = json_list(receivers.iter().filter(|r| r.kind == kind).map(|r| r.id.as_str()));
        let rows = sqlx::query(
            "SELECT id, category FROM receiver_preferences WHERE kind = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(kind.as_str())
        .bind(ids)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        for row in rows {
            let id = ReceiverId::parse("id", row.try_get("id").map_err(err)?).map_err(corrupt)?;
            let category = Category::parse("category", row.try_get("category").map_err(err)?).map_err(corrupt)?;
            found.entry(ReceiverRef { kind, id }).or_default().push(category);
        }
    }
    Ok(found.into_iter().map(|(r, categories)| (r, Preferences::from_stored(categories))).collect())
}

/// Pages `receivers` late into those of `broadcasts` that `plan::late_deliveries` gives them,
/// through the outbox, and logs the change of each broadcast paged: what an upsert does for a late
/// joiner and a preference change for a category opted back into.
async fn page_late_joiners(
    tx: &mut Transaction<'static, Sqlite>,
    broadcasts: &[Notification],
    receivers: &[Receiver],
    now: DateTime<Utc>,
) -> PortResult<()> {
    let prefs = stored_preferences(tx, receivers).await?;
    let mut pages = Vec::new();
    let mut paged = Vec::new();
    for late in late_deliveries(broadcasts, receivers, &prefs, now) {
        pages.extend(page_late(tx, &late).await?);
        paged.push(late.notification.clone());
    }
    add_to_outbox(tx, &pages, now).await?;
    log_changes(tx, &paged).await
}

/// Pages late receivers of one (notification, city), 500 per page, numbered after the city's task's
/// pages, for the outbox; the task (created finished if the city had none) counts them as published
/// and matched and is no longer done, so that `settle` recomputes `matched` from what the pages
/// actually add once they are delivered. A pager step read before this fails its optimistic check
/// on `pages_published` and is simply retried.
async fn page_late(tx: &mut Transaction<'static, Sqlite>, late: &LateDelivery) -> PortResult<Vec<QueueMessage>> {
    let receivers = late.receivers.len() as i64;
    let pages = i64::from(late.page_count());
    let pages_published: i64 = sqlx::query_scalar(
        "INSERT INTO send_tasks (notification_id, city, matched, published, pages_published, finished, done) \
         VALUES (?, ?, ?, ?, ?, 1, 0) \
         ON CONFLICT (notification_id, city) DO UPDATE SET matched = matched + excluded.matched, \
           published = published + excluded.published, \
           pages_published = pages_published + excluded.pages_published, done = 0 \
         RETURNING pages_published",
    )
    .bind(late.notification.as_str())
    .bind(late.city.as_str())
    .bind(receivers)
    .bind(receivers)
    .bind(pages)
    .fetch_one(&mut **tx)
    .await
    .map_err(err)?;
    late.pages((pages_published - pages) as u32).map_err(|e| PortError::new(BACKEND, e))
}

/// Gives each stored notification among `ids` a new position in the search mirror's change log
/// (its old one goes), in the caller's transaction.
async fn log_changes(tx: &mut Transaction<'static, Sqlite>, ids: &[NotificationId]) -> PortResult<()> {
    for chunk in ids.chunks(CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO search_changes (notification_id) SELECT id FROM notifications WHERE id IN ",
        );
        push_list(&mut qb, chunk.iter().map(|id| id.as_str().to_owned()));
        qb.build().execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}

/// Appends messages to the outbox, in order.
async fn add_to_outbox(
    tx: &mut Transaction<'static, Sqlite>,
    messages: &[QueueMessage],
    now: DateTime<Utc>,
) -> PortResult<()> {
    for chunk in messages.chunks(CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO outbox (topic, tag, msg_key, body, created_at) ");
        qb.push_values(chunk, |mut row, m| {
            row.push_bind(m.topic.clone())
                .push_bind(m.tag.clone())
                .push_bind(m.key.clone())
                .push_bind(m.body.clone())
                .push_bind(millis(now));
        });
        qb.build().execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}

/// A selection of every city is counted before its send starts: a receiver who joins, in between,
/// a city the count did not see would get neither a task nor a late page (the notification was not
/// sending yet when it was upserted). So the transaction that starts the send gives a task, paged
/// live from its start, to every city of the kind that has none and where the selection matches
/// someone. Cities are listed by hopping the city index, one lookup per city; for a groups
/// selection, a city with receivers but no match is read through once.
async fn add_tasks_for_cities_joined_since_the_plan(
    tx: &mut Transaction<'static, Sqlite>,
    id: &NotificationId,
    kind: ReceiverKind,
    selection: &Selection,
) -> PortResult<()> {
    let mut qb =
        QueryBuilder::<Sqlite>::new("WITH RECURSIVE c(city) AS (SELECT (SELECT MIN(city) FROM receivers WHERE kind = ");
    qb.push_bind(kind.as_str());
    qb.push(") UNION ALL SELECT (SELECT MIN(city) FROM receivers WHERE kind = ").push_bind(kind.as_str());
    qb.push(" AND city > c.city) FROM c WHERE c.city IS NOT NULL) ");
    qb.push("INSERT INTO send_tasks (notification_id, city, matched) SELECT ").push_bind(id.as_str().to_owned());
    qb.push(", c.city, 0 FROM c WHERE c.city IS NOT NULL AND NOT EXISTS (SELECT 1 FROM send_tasks t ");
    qb.push("WHERE t.notification_id = ").push_bind(id.as_str().to_owned());
    qb.push(" AND t.city = c.city) AND EXISTS (SELECT 1 FROM receivers r");
    push_selection(&mut qb, kind, selection, false);
    qb.push(" AND r.city = c.city)");
    qb.build().execute(&mut **tx).await.map_err(err)?;
    Ok(())
}

#[async_trait]
impl ReceiverDirectory for SqliteStore {
    async fn upsert_receivers(&self, receivers: &[Receiver]) -> PortResult<u64> {
        let now = Utc::now();
        let mut tx = self.write().await?;
        let written = write_receivers(&mut tx, receivers, now).await?;
        let changed = written.moved;
        if !changed.is_empty() {
            let broadcasts = late_broadcasts(&mut tx, now).await?;
            page_late_joiners(&mut tx, &broadcasts, &changed, now).await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(written.count as u64)
    }

    async fn lookup_receivers(&self, kind: ReceiverKind, ids: &[ReceiverId]) -> PortResult<Vec<Receiver>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<Sqlite>::new(concat!("SELECT ", receiver_columns!(), " FROM receivers WHERE kind = "));
            qb.push_bind(kind.as_str()).push(" AND id IN ");
            push_list(&mut qb, chunk.iter().map(|id| id.as_str().to_owned()));
            for row in qb.build().fetch_all(&self.db.read).await.map_err(err)? {
                found.push(receiver_from_row(&row)?);
            }
        }
        Ok(found)
    }

    async fn count_selection(&self, kind: ReceiverKind, selection: &Selection) -> PortResult<Vec<(City, u64)>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT r.city, COUNT(*) AS n FROM receivers r");
        push_selection(&mut qb, kind, selection, true);
        qb.push(" GROUP BY r.city ORDER BY r.city");
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let city: String = row.try_get("city").map_err(err)?;
                let n: i64 = row.try_get("n").map_err(err)?;
                Ok((City::parse("city", &city).map_err(corrupt)?, n as u64))
            })
            .collect()
    }

    async fn page_selection(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        city: &City,
        after: Option<&ReceiverId>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverId>> {
        if selection.cities.as_ref().is_some_and(|cities| !cities.contains(city)) {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT r.id FROM receivers r");
        push_selection(&mut qb, kind, selection, false);
        qb.push(" AND r.city = ").push_bind(city.as_str().to_owned());
        if let Some(after) = after {
            qb.push(" AND r.id > ").push_bind(after.as_str().to_owned());
        }
        qb.push(" ORDER BY r.id LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| ReceiverId::parse("id", row.try_get::<&str, _>("id").map_err(err)?).map_err(corrupt))
            .collect()
    }

    async fn list_receivers(
        &self,
        kind: Option<ReceiverKind>,
        city: Option<&City>,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<Receiver>> {
        // By the primary key (kind, id), or by `receivers_by_city` (kind, city, id) in one city.
        let mut qb =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", receiver_columns!(), " FROM receivers WHERE 1 = 1"));
        if let Some(kind) = kind {
            qb.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(city) = city {
            qb.push(" AND city = ").push_bind(city.as_str().to_owned());
        }
        if let Some(after) = after {
            qb.push(" AND (kind, id) > (").push_bind(after.kind.as_str());
            qb.push(", ").push_bind(after.id.as_str().to_owned()).push(")");
        }
        qb.push(" ORDER BY kind, id LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter().map(receiver_from_row).collect()
    }

    async fn delete_receiver(&self, kind: ReceiverKind, id: &ReceiverId) -> PortResult<bool> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM receivers WHERE kind = ? AND id = ?")
            .bind(kind.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        for table in [
            "DELETE FROM receiver_groups WHERE kind = ? AND id = ?",
            "DELETE FROM read_receipts WHERE receiver_kind = ? AND receiver_id = ?",
            "DELETE FROM archives WHERE receiver_kind = ? AND receiver_id = ?",
            "DELETE FROM receiver_preferences WHERE kind = ? AND id = ?",
        ] {
            sqlx::query(table).bind(kind.as_str()).bind(id.as_str()).execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(deleted == 1)
    }

    async fn preferences(&self, receiver: &ReceiverRef) -> PortResult<Preferences> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT category FROM receiver_preferences WHERE kind = ? AND id = ? ORDER BY category")
                .bind(receiver.kind.as_str())
                .bind(receiver.id.as_str())
                .fetch_all(&self.db.read)
                .await
                .map_err(err)?;
        let categories = rows.iter().map(|c| Category::parse("category", c)).collect::<Result<Vec<_>, _>>();
        Ok(Preferences::from_stored(categories.map_err(corrupt)?))
    }

    async fn set_preferences(&self, receiver: &ReceiverRef, prefs: &Preferences) -> PortResult<()> {
        let now = Utc::now();
        let mut tx = self.write().await?;
        let (kind, id) = (receiver.kind.as_str(), receiver.id.as_str());
        let before: Vec<String> =
            sqlx::query_scalar("SELECT category FROM receiver_preferences WHERE kind = ? AND id = ?")
                .bind(kind)
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
        let before = before.iter().map(|c| Category::parse("category", c)).collect::<Result<Vec<_>, _>>();
        let opted_in = prefs.opted_in_since(&Preferences::from_stored(before.map_err(corrupt)?));
        sqlx::query("DELETE FROM receiver_preferences WHERE kind = ? AND id = ?")
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for category in prefs.opted_out() {
            sqlx::query("INSERT INTO receiver_preferences (kind, id, category) VALUES (?, ?, ?)")
                .bind(kind)
                .bind(id)
                .bind(category.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        if !opted_in.is_empty() {
            let stored =
                sqlx::query(concat!("SELECT ", receiver_columns!(), " FROM receivers WHERE kind = ? AND id = ?"))
                    .bind(kind)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
            if let Some(row) = stored {
                let mut broadcasts = late_broadcasts(&mut tx, now).await?;
                broadcasts.retain(|n| opted_in.contains(&n.content.category));
                page_late_joiners(&mut tx, &broadcasts, &[receiver_from_row(&row)?], now).await?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    async fn opted_out(
        &self,
        kind: ReceiverKind,
        category: Category,
        ids: &[ReceiverId],
    ) -> PortResult<Vec<ReceiverId>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM receiver_preferences WHERE kind = ? AND category = ? \
                 AND id IN (SELECT value FROM json_each(?))",
            )
            .bind(kind.as_str())
            .bind(category.as_str())
            .bind(json_list(chunk.iter().map(ReceiverId::as_str)))
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
            for id in rows {
                found.push(ReceiverId::parse("id", &id).map_err(corrupt)?);
            }
        }
        Ok(found)
    }

    async fn count_opted_out(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        category: Category,
    ) -> PortResult<Vec<(City, u64)>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT r.city, COUNT(*) AS n FROM receiver_preferences p \
             JOIN receivers r ON r.kind = p.kind AND r.id = p.id",
        );
        push_selection(&mut qb, kind, selection, true);
        qb.push(" AND p.kind = ").push_bind(kind.as_str());
        qb.push(" AND p.category = ").push_bind(category.as_str());
        qb.push(" GROUP BY r.city ORDER BY r.city");
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let city: String = row.try_get("city").map_err(err)?;
                let n: i64 = row.try_get("n").map_err(err)?;
                Ok((City::parse("city", &city).map_err(corrupt)?, n as u64))
            })
            .collect()
    }
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn create_notification(
        &self,
        content: &NewNotification,
        idempotency: Option<&Idempotency>,
        now: DateTime<Utc>,
    ) -> PortResult<CreateOutcome> {
        let mut tx = self.write().await?;
        // Looked up again inside the write transaction: two creates racing with one key make one.
        if let Some(idem) = idempotency
            && let Some(seen) = seen_key(&mut tx, idem).await?
        {
            return Ok(seen);
        }
        let notification = Notification {
            id: NotificationId::generate(),
            content: content.clone(),
            status: content.initial_status(),
            created_at: DateTime::from_timestamp_millis(millis(now)).unwrap_or(now),
            sent_at: None,
            revoked_at: None,
        };
        let audience = serde_json::to_string(&content.audience).map_err(|e| PortError::new(BACKEND, e))?;
        let actions = to_json_column(&content.actions, content.actions.is_empty())?;
        let variants = to_json_column(&content.variants, content.variants.is_empty())?;
        let locales = to_json_column(&content.locales, content.locales.is_empty())?;
        sqlx::query(concat!(
            "INSERT INTO notifications (",
            notification_columns!(),
            ", direct, cities, idempotency_key, request_fingerprint) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(notification.id.as_str())
        .bind(content.title.as_str())
        .bind(content.body.as_str())
        .bind(content.category.as_str())
        .bind(content.receiver_kind.as_str())
        .bind(audience)
        .bind(content.pinned)
        .bind(content.force_read)
        .bind(opt_millis(content.validity.from()))
        .bind(opt_millis(content.validity.until()))
        .bind(opt_millis(content.send_at))
        .bind(content.draft)
        .bind(notification.status.as_str())
        .bind(millis(notification.created_at))
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(content.image.as_ref().map(|i| i.as_str().to_owned()))
        .bind(actions)
        .bind(variants)
        .bind(locales)
        .bind(content.audience.is_direct())
        .bind(delimited(content.audience.named_cities().map(City::as_str)))
        .bind(idempotency.map(|i| i.key.clone()))
        .bind(idempotency.map(|i| i.fingerprint.clone()))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        add_history(&mut tx, &notification.id, notification.status, &HistoryEvent::created(content, now), now).await?;
        log_changes(&mut tx, std::slice::from_ref(&notification.id)).await?;
        tx.commit().await.map_err(err)?;
        Ok(CreateOutcome::Created(notification))
    }

    async fn replay(&self, idempotency: &Idempotency) -> PortResult<Option<CreateOutcome>> {
        let mut tx = self.db.read.begin().await.map_err(err)?;
        seen_key(&mut tx, idempotency).await
    }

    async fn notification(&self, id: &NotificationId) -> PortResult<Option<Notification>> {
        sqlx::query(concat!("SELECT ", notification_columns!(), " FROM notifications WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.db.read)
            .await
            .map_err(err)?
            .map(|r| notification_from_row(&r))
            .transpose()
    }

    async fn notifications(&self, ids: &[NotificationId]) -> PortResult<Vec<Notification>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(concat!(
                "SELECT ",
                notification_columns!(),
                " FROM notifications WHERE id IN "
            ));
            push_list(&mut qb, chunk.iter().map(|id| id.as_str().to_owned()));
            for row in qb.build().fetch_all(&self.db.read).await.map_err(err)? {
                found.push(notification_from_row(&row)?);
            }
        }
        Ok(found)
    }

    async fn transition(
        &self,
        id: &NotificationId,
        to: Status,
        event: &HistoryEvent,
        now: DateTime<Utc>,
    ) -> PortResult<TransitionOutcome> {
        let mut tx = self.write().await?;
        let Some(current) = load(&mut tx, id).await? else {
            return Ok(TransitionOutcome::NotFound);
        };
        if !to.allowed_from().contains(&current.status) {
            return Ok(TransitionOutcome::Refused(current.status));
        }
        let revoked_at = (to == Status::Revoked).then(|| millis(now));
        sqlx::query("UPDATE notifications SET status = ?, revoked_at = COALESCE(?, revoked_at) WHERE id = ?")
            .bind(to.as_str())
            .bind(revoked_at)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        add_history(&mut tx, id, to, event, now).await?;
        if to == Status::Revoked {
            sqlx::query("INSERT INTO revocations (notification_id, at) VALUES (?, ?)")
                .bind(id.as_str())
                .bind(millis(now))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        log_changes(&mut tx, std::slice::from_ref(id)).await?;
        let moved = load(&mut tx, id).await?.ok_or_else(|| corrupt("vanished"))?;
        tx.commit().await.map_err(err)?;
        Ok(TransitionOutcome::Moved(Box::new(moved)))
    }

    async fn history(&self, id: &NotificationId) -> PortResult<Vec<HistoryEntry>> {
        let rows =
            sqlx::query("SELECT at, status, detail FROM notification_history WHERE notification_id = ? ORDER BY seq")
                .bind(id.as_str())
                .fetch_all(&self.db.read)
                .await
                .map_err(err)?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    at: from_millis(row.try_get("at").map_err(err)?),
                    status: Status::parse("status", row.try_get("status").map_err(err)?).map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(err)?,
                })
            })
            .collect()
    }

    async fn record_event(&self, id: &NotificationId, event: &HistoryEvent, now: DateTime<Utc>) -> PortResult<bool> {
        let added = sqlx::query(
            "INSERT INTO notification_history (notification_id, at, status, detail) \
             SELECT id, ?, status, ? FROM notifications WHERE id = ?",
        )
        .bind(millis(now))
        .bind(event.to_string())
        .bind(id.as_str())
        .execute(self.db.writer())
        .await
        .map_err(err)?
        .rows_affected();
        Ok(added > 0)
    }

    async fn record_reads(&self, receiver: &ReceiverRef, ids: &[NotificationId], at: DateTime<Utc>) -> PortResult<u64> {
        self.record_actions(Action::Read, receiver, ids, at).await
    }

    async fn read_receipts(
        &self,
        id: &NotificationId,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverRef>> {
        self.receivers_of("read_receipts", id, after, limit).await
    }

    async fn record_archives(
        &self,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        at: DateTime<Utc>,
    ) -> PortResult<u64> {
        self.record_actions(Action::Archive, receiver, ids, at).await
    }

    async fn remove_archives(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<u64> {
        let mut tx = self.write().await?;
        let mut removed = 0;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM archives WHERE receiver_kind = ");
            qb.push_bind(receiver.kind.as_str());
            qb.push(" AND receiver_id = ").push_bind(receiver.id.as_str().to_owned());
            qb.push(" AND notification_id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str().to_owned());
            }
            qb.push(")");
            removed += qb.build().execute(&mut *tx).await.map_err(err)?.rows_affected();
        }
        tx.commit().await.map_err(err)?;
        Ok(removed)
    }

    async fn archives(
        &self,
        id: &NotificationId,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverRef>> {
        self.receivers_of("archives", id, after, limit).await
    }

    async fn revocations_since(&self, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>> {
        self.log_after(
            "SELECT seq AS position, notification_id FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?",
            after,
            limit,
        )
        .await
    }

    async fn revocation_head(&self) -> PortResult<u64> {
        self.log_head("SELECT COALESCE(MAX(seq), 0) FROM revocations").await
    }

    async fn changes_since(&self, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>> {
        self.log_after(
            "SELECT position, notification_id FROM search_changes WHERE position > ? ORDER BY position LIMIT ?",
            after,
            limit,
        )
        .await
    }

    async fn change_head(&self) -> PortResult<u64> {
        self.log_head("SELECT COALESCE(MAX(position), 0) FROM search_changes").await
    }

    async fn window_edges(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<Notification>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE status IN ('sending', 'sent') \
             AND ((valid_from > ? AND valid_from <= ?) OR (valid_until > ? AND valid_until <= ?)) LIMIT ?"
        ))
        .bind(millis(after))
        .bind(millis(until))
        .bind(millis(after))
        .bind(millis(until))
        .bind(limit as i64)
        .fetch_all(&self.db.read)
        .await
        .map_err(err)?;
        rows.iter().map(notification_from_row).collect()
    }

    async fn ping(&self) -> PortResult<()> {
        sqlx::query("SELECT 1").execute(&self.db.read).await.map_err(err)?;
        Ok(())
    }
}

#[async_trait]
impl SendLedger for SqliteStore {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> PortResult<Vec<Notification>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE status = 'scheduled' AND (send_at IS NULL OR send_at <= ?) \
             ORDER BY created_at LIMIT ?"
        ))
        .bind(millis(now))
        .bind(limit as i64)
        .fetch_all(&self.db.read)
        .await
        .map_err(err)?;
        rows.iter().map(notification_from_row).collect()
    }

    async fn start_sending(&self, id: &NotificationId, plan: &[CityPlan], now: DateTime<Utc>) -> PortResult<bool> {
        let mut tx = self.write().await?;
        let moved = sqlx::query(
            "UPDATE notifications SET status = 'sending', sent_at = ? WHERE id = ? AND status = 'scheduled'",
        )
        .bind(millis(now))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        for chunk in plan.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO send_tasks (notification_id, city, matched, members, opted_out) ",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for p in chunk {
                let members = p
                    .members
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| PortError::new(BACKEND, e))?;
                rows.push((p, members));
            }
            qb.push_values(rows, |mut row, (p, members)| {
                row.push_bind(id.as_str().to_owned())
                    .push_bind(p.city.as_str().to_owned())
                    .push_bind(p.matched as i64)
                    .push_bind(members)
                    .push_bind(p.opted_out_at_start() as i64);
            });
            qb.build().execute(&mut *tx).await.map_err(err)?;
        }
        let n = load(&mut tx, id).await?.ok_or_else(|| corrupt("vanished"))?;
        if let Some(selection) = selection_of_every_city(&n) {
            add_tasks_for_cities_joined_since_the_plan(&mut tx, id, n.content.receiver_kind, selection).await?;
        }
        add_history(&mut tx, id, Status::Sending, &HistoryEvent::sending(plan), now).await?;
        settle(&mut tx, id, None, now).await?;
        log_changes(&mut tx, std::slice::from_ref(id)).await?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn open_tasks(
        &self,
        direct: bool,
        after: Option<(&NotificationId, &City)>,
        limit: usize,
    ) -> PortResult<Vec<SendTask>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT t.notification_id, t.city, t.last_receiver, t.pages_published, t.members FROM send_tasks t \
             JOIN notifications n ON n.id = t.notification_id \
             WHERE t.finished = 0 AND n.status = 'sending' AND n.direct = ",
        );
        qb.push_bind(direct);
        if let Some((id, city)) = after {
            qb.push(" AND (t.notification_id > ").push_bind(id.as_str().to_owned());
            qb.push(" OR (t.notification_id = ").push_bind(id.as_str().to_owned());
            qb.push(" AND t.city > ").push_bind(city.as_str().to_owned()).push("))");
        }
        qb.push(" ORDER BY t.notification_id, t.city LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let last: Option<String> = row.try_get("last_receiver").map_err(err)?;
                Ok(SendTask {
                    notification_id: NotificationId::parse("id", row.try_get("notification_id").map_err(err)?)
                        .map_err(corrupt)?,
                    city: City::parse("city", row.try_get("city").map_err(err)?).map_err(corrupt)?,
                    last_receiver: last.map(|l| ReceiverId::parse("last", &l)).transpose().map_err(corrupt)?,
                    pages_published: row.try_get::<i64, _>("pages_published").map_err(err)? as u32,
                    members: row
                        .try_get::<Option<String>, _>("members")
                        .map_err(err)?
                        .map(|m| serde_json::from_str(&m))
                        .transpose()
                        .map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn advance(&self, task: &SendTask, step: &PageStep) -> PortResult<bool> {
        let now = Utc::now();
        let mut tx = self.write().await?;
        let (pages, receivers) = match &step.page {
            Some((_, n)) => (1i64, *n as i64),
            None => (0, 0),
        };
        // `matched` is assigned first: MySQL evaluates assignments left to right, SQLite all at once;
        // both then read the old `published`.
        let moved = sqlx::query(
            "UPDATE send_tasks SET \
               matched = CASE WHEN ? THEN published + ? ELSE matched END, \
               published = published + ?, pages_published = pages_published + ?, \
               last_receiver = ?, finished = ?, opted_out = opted_out + ? \
             WHERE notification_id = ? AND city = ? AND finished = 0 \
               AND pages_published = ? AND COALESCE(last_receiver, '') = ?",
        )
        .bind(step.finished)
        .bind(receivers)
        .bind(receivers)
        .bind(pages)
        .bind(step.last_receiver.as_ref().map(|r| r.as_str().to_owned()))
        .bind(step.finished)
        .bind(step.opted_out as i64)
        .bind(task.notification_id.as_str())
        .bind(task.city.as_str())
        .bind(task.pages_published as i64)
        .bind(task.last_receiver.as_ref().map_or("", |r| r.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        if let Some((message, _)) = &step.page {
            add_to_outbox(&mut tx, std::slice::from_ref(message), now).await?;
        }
        if step.finished {
            // The city's `matched` became what it published, and it may be done.
            settle(&mut tx, &task.notification_id, Some(&task.city), now).await?;
            log_changes(&mut tx, std::slice::from_ref(&task.notification_id)).await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn outbox(&self, topic: &str, limit: usize) -> PortResult<Vec<OutboxMessage>> {
        let rows = sqlx::query("SELECT id, topic, tag, msg_key, body FROM outbox WHERE topic = ? ORDER BY id LIMIT ?")
            .bind(topic)
            .bind(limit as i64)
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|row| {
                Ok(OutboxMessage {
                    id: row.try_get("id").map_err(err)?,
                    message: QueueMessage {
                        topic: row.try_get("topic").map_err(err)?,
                        tag: row.try_get("tag").map_err(err)?,
                        key: row.try_get("msg_key").map_err(err)?,
                        body: row.try_get("body").map_err(err)?,
                    },
                })
            })
            .collect()
    }

    async fn outbox_published(&self, ids: &[i64]) -> PortResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM outbox WHERE id IN ");
            push_list(&mut qb, chunk.iter().copied());
            qb.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn outbox_len(&self) -> PortResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(&self.db.read).await.map_err(err)?;
        Ok(n as u64)
    }

    async fn oldest_open_send(&self) -> PortResult<Option<DateTime<Utc>>> {
        let began: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(n.sent_at) FROM send_tasks t JOIN notifications n ON n.id = t.notification_id \
             WHERE t.done = 0 AND n.status = 'sending'",
        )
        .fetch_one(&self.db.read)
        .await
        .map_err(err)?;
        Ok(began.map(from_millis))
    }

    async fn page_delivered(&self, key: &PageKey, added: u64, now: DateTime<Utc>) -> PortResult<bool> {
        Ok(self.pages_delivered(&[(key.clone(), added)], now).await?.remove(0))
    }

    async fn pages_delivered(&self, pages: &[(PageKey, u64)], now: DateTime<Utc>) -> PortResult<Vec<bool>> {
        let mut tx = self.write().await?;
        let mut sent = Vec::with_capacity(pages.len());
        let mut changed = Vec::new();
        for (key, added) in pages {
            let first = sqlx::query(
                "INSERT OR IGNORE INTO delivered_pages (notification_id, city, page_no, added, at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(key.notification_id.as_str())
            .bind(key.city.as_str())
            .bind(key.page_no as i64)
            .bind(*added as i64)
            .bind(millis(now))
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if first == 0 {
                sent.push(false);
                continue;
            }
            sqlx::query(
                "UPDATE send_tasks SET pages_delivered = pages_delivered + 1 WHERE notification_id = ? AND city = ?",
            )
            .bind(key.notification_id.as_str())
            .bind(key.city.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            sent.push(settle(&mut tx, &key.notification_id, Some(&key.city), now).await?);
            if !changed.contains(&key.notification_id) {
                changed.push(key.notification_id.clone());
            }
        }
        log_changes(&mut tx, &changed).await?;
        tx.commit().await.map_err(err)?;
        Ok(sent)
    }

    async fn dead_letter(&self, letter: &DeadLetter, now: DateTime<Utc>) -> PortResult<()> {
        let mut tx = self.write().await?;
        let first = sqlx::query("INSERT OR IGNORE INTO dead_letters (msg_key, reason, body, at) VALUES (?, ?, ?, ?)")
            .bind(&letter.key)
            .bind(&letter.reason)
            .bind(&letter.body)
            .bind(millis(now))
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        if first > 0
            && let Some(notification) = letter.notification()
        {
            // In the notification's current status: the history says why it is not done.
            sqlx::query(
                "INSERT INTO notification_history (notification_id, at, status, detail) \
                 SELECT id, ?, status, ? FROM notifications WHERE id = ?",
            )
            .bind(millis(now))
            .bind(letter.event().to_string())
            .bind(notification.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn delivered_pages(
        &self,
        id: &NotificationId,
        after: Option<(&City, u32)>,
        limit: usize,
    ) -> PortResult<Vec<(PageKey, u64)>> {
        // By the primary key (notification_id, city, page_no).
        let mut qb =
            QueryBuilder::<Sqlite>::new("SELECT city, page_no, added FROM delivered_pages WHERE notification_id = ");
        qb.push_bind(id.as_str().to_owned());
        if let Some((city, page_no)) = after {
            qb.push(" AND (city, page_no) > (").push_bind(city.as_str().to_owned());
            qb.push(", ").push_bind(i64::from(page_no)).push(")");
        }
        qb.push(" ORDER BY city, page_no LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let city = City::parse("city", row.try_get("city").map_err(err)?).map_err(corrupt)?;
                let page_no: i64 = row.try_get("page_no").map_err(err)?;
                let added: i64 = row.try_get("added").map_err(err)?;
                Ok((PageKey { notification_id: id.clone(), city, page_no: page_no as u32 }, added as u64))
            })
            .collect()
    }

    async fn progress_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Vec<CityProgress>>> {
        let mut found: HashMap<NotificationId, Vec<CityProgress>> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT notification_id, city, matched, published, pages_published, pages_delivered, done, opted_out \
                 FROM send_tasks WHERE notification_id IN ",
            );
            push_list(&mut qb, chunk.iter().map(|id| id.as_str().to_owned()));
            qb.push(" ORDER BY notification_id, city");
            for row in qb.build().fetch_all(&self.db.read).await.map_err(err)? {
                let n = |c: &str| row.try_get::<i64, _>(c).map_err(err);
                let id = NotificationId::parse("id", row.try_get("notification_id").map_err(err)?).map_err(corrupt)?;
                found.entry(id).or_default().push(CityProgress {
                    city: City::parse("city", row.try_get("city").map_err(err)?).map_err(corrupt)?,
                    matched: n("matched")? as u64,
                    published: n("published")? as u64,
                    pages_published: n("pages_published")? as u32,
                    pages_delivered: n("pages_delivered")? as u32,
                    done: row.try_get("done").map_err(err)?,
                    opted_out: n("opted_out")? as u64,
                });
            }
        }
        Ok(found)
    }
}

/// The receiver actions kept per notification (read receipts, archives): one reading for both.
/// What a receiver did to a message, kept one row per (notification, receiver) in its own table.
#[derive(Clone, Copy)]
enum Action {
    Read,
    Archive,
}

impl Action {
    fn insert(self) -> &'static str {
        match self {
            Action::Read => {
                "INSERT OR IGNORE INTO read_receipts (notification_id, receiver_kind, receiver_id, read_at) "
            }
            Action::Archive => {
                "INSERT OR IGNORE INTO archives (notification_id, receiver_kind, receiver_id, archived_at) "
            }
        }
    }
}

impl SqliteStore {
    /// Records `action` by `receiver` on each of `ids` at `at`, once each however often it is
    /// asked; says how many were new. A new read changes the message's read rate: the search
    /// index hears of it.
    async fn record_actions(
        &self,
        action: Action,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        at: DateTime<Utc>,
    ) -> PortResult<u64> {
        let mut tx = self.write().await?;
        let mut added = 0;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(action.insert());
            qb.push_values(chunk, |mut row, id| {
                row.push_bind(id.as_str().to_owned())
                    .push_bind(receiver.kind.as_str())
                    .push_bind(receiver.id.as_str().to_owned())
                    .push_bind(millis(at));
            });
            let new = qb.build().execute(&mut *tx).await.map_err(err)?.rows_affected();
            if new > 0 && matches!(action, Action::Read) {
                log_changes(&mut tx, chunk).await?;
            }
            added += new;
        }
        tx.commit().await.map_err(err)?;
        Ok(added)
    }

    /// Who has a row of `table` for the notification, by (kind, id) after `after`, at most `limit`.
    async fn receivers_of(
        &self,
        table: &'static str,
        id: &NotificationId,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverRef>> {
        // By the primary key (notification_id, receiver_kind, receiver_id).
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT receiver_kind, receiver_id FROM {table} WHERE notification_id = "
        ));
        qb.push_bind(id.as_str().to_owned());
        if let Some(after) = after {
            qb.push(" AND (receiver_kind, receiver_id) > (").push_bind(after.kind.as_str());
            qb.push(", ").push_bind(after.id.as_str().to_owned()).push(")");
        }
        qb.push(" ORDER BY receiver_kind, receiver_id LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let kind = ReceiverKind::parse("kind", row.try_get("receiver_kind").map_err(err)?).map_err(corrupt)?;
                let id = ReceiverId::parse("id", row.try_get("receiver_id").map_err(err)?).map_err(corrupt)?;
                Ok(ReceiverRef { kind, id })
            })
            .collect()
    }
}

/// The logs read by position (revocations, search changes): one reading for both.
impl SqliteStore {
    /// `(position, notification)` rows of the log `sql` selects, after `after`, at most `limit`.
    async fn log_after(&self, sql: &'static str, after: u64, limit: usize) -> PortResult<Vec<(u64, NotificationId)>> {
        let rows =
            sqlx::query(sql).bind(after as i64).bind(limit as i64).fetch_all(&self.db.read).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let position: i64 = row.try_get("position").map_err(err)?;
                let id = NotificationId::parse("id", row.try_get("notification_id").map_err(err)?).map_err(corrupt)?;
                Ok((position as u64, id))
            })
            .collect()
    }

    async fn log_head(&self, sql: &'static str) -> PortResult<u64> {
        let head: i64 = sqlx::query_scalar(sql).fetch_one(&self.db.read).await.map_err(err)?;
        Ok(head as u64)
    }
}
