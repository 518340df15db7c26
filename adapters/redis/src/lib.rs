//! The inbox store on Redis, one server or a Redis Cluster. Keys carry hash tags so that one
//! receiver's keys share a slot and one notification's keys share another, and no script touches
//! two slots (ARCHITECTURE.md has the layout):
//!
//! - per notification `{n:<id>}`: `m` (what its entries need: pinned, force_read, sent_ms, window;
//!   and `withheld`), `c` (the counters: `sent`, `read`, `sent:<city>`,
//!   `variant:<code>:sent|read`), `p` (delivered pages and
//!   what each added), `h:<bucket>` (who holds it, split over small hashes so each stays compact)
//!   and `w:<city>/<page>` (receivers a page added whose entries may not be written yet);
//! - per receiver `{r:<kind>:<id>}`: `l:<category>` (its entries of that category scored by list
//!   order: a tab is one range, the whole list the categories' ranges merged), `v` (every entry
//!   scored by version, odd once read: sync's index) and `t` (only once the cap trimmed it: the
//!   newest message dropped and the highest version dropped);
//! - global, read by inbox reads: `withheld` (a set of revoked notifications), `opening` (the
//!   notifications with a window start, by it) and `revocations` (the applied log position).
//!
//! A page is one script in the notification's slot (decides who is new, counts exactly them), then
//! its new entries: on one server all in one script, on a cluster one script per receivers' slot,
//! sent concurrently so they share round trips.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use herald_domain::ports::{Counters, InboxStore, PageDelivery, PageWrite, PortError, PortResult, Read, UnreadCount};
use herald_domain::{
    Category, EntryMeta, InboxCap, InboxCursor, InboxEntry, NotificationId, Page, PageKey, ReceiverRef, ShownVariant,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, ParsingError, Pipeline, RedisError, RedisFuture, Value};

mod config;
mod hints;
mod raw;
mod scripts;

pub use config::{RedisConfig, RedisConfigError, RedisServer};
pub use hints::RedisHints;
pub use raw::{raw_write_seconds, used_memory};
use scripts::PINNED_UNREAD;

const BACKEND: &str = "redis inbox";
/// A notification's holders are split by receiver over this many hashes: each stays small enough
/// for Redis's compact encoding (listpack, ≤ 128 fields by default) up to about half a million
/// receivers, at roughly a third of what one set would cost per receiver.
const HOLDER_BUCKETS: u64 = 4096;
/// Most entries one script writes: a page's, so a script holds the server for about a
/// millisecond at most.
const ENTRIES_PER_SCRIPT: usize = 500;
/// How long opening the store waits for the server before saying it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for its answer. The client's default (500 ms) failed calls that merely
/// queued behind others on a loaded machine: each failed delivery is redone (more load), each
/// failed poll is a 503. A server that does not answer at all is still found out in seconds.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

fn err(e: RedisError) -> PortError {
    PortError::new(BACKEND, e)
}

/// One server or a cluster, behind one connection type (both multiplex: concurrent commands share
/// round trips, and both connect again by themselves after the server was gone: a command fails
/// while it is down, the next ones reach it once it is back; a plain multiplexed connection
/// answers "broken pipe" forever once its socket is gone).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection to the server or cluster, failing if it does not answer within the timeout.
async fn connect(server: &RedisServer) -> anyhow::Result<Conn> {
    let connect = async {
        anyhow::Ok(match server {
            RedisServer::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Conn::Single(redis::Client::open(url.as_str())?.get_connection_manager_with_config(config).await?)
            }
            RedisServer::Cluster(nodes) => Conn::Cluster(
                redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .build()?
                    .get_async_connection()
                    .await?,
            ),
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|c| c)
        .context("cannot reach Redis")
}

/// Key names under one prefix.
struct Keys {
    prefix: String,
}

/// One receiver's keys: a list per category (in `Category::ALL`'s order), versions, trims.
struct ReceiverKeys {
    lists: Vec<String>,
    versions: String,
    trims: String,
    /// The entries its receiver archived: in versions, in no list.
    archived: String,
    /// When its receiver last looked at the inbox: `version` (the top version then) and `at` (ms).
    seen: String,
}

impl ReceiverKeys {
    fn list(&self, category: Category) -> &str {
        &self.lists[Category::ALL.iter().position(|c| *c == category).expect("every category is in ALL")]
    }
}

impl Keys {
    /// What a receiver's keys hash by (their hash tag's content).
    fn receiver_tag(&self, receiver: &str) -> String {
        format!("r:{receiver}")
    }

    fn receiver(&self, receiver: &str) -> ReceiverKeys {
        let tag = format!("{}:{{{}}}", self.prefix, self.receiver_tag(receiver));
        ReceiverKeys {
            lists: Category::ALL.iter().map(|c| format!("{tag}:l:{}", c.as_str())).collect(),
            versions: format!("{tag}:v"),
            trims: format!("{tag}:t"),
            archived: format!("{tag}:a"),
            seen: format!("{tag}:s"),
        }
    }

    fn notification(&self, id: &str, what: &str) -> String {
        format!("{}:{{n:{id}}}:{what}", self.prefix)
    }

    fn global(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }
}

/// What the store keeps of a notification (its first page's `EntryMeta`; never changes).
#[derive(Debug, Clone, Copy)]
struct Stored {
    category: Category,
    pinned: bool,
    force_read: bool,
    sent_ms: i64,
    valid_from_ms: Option<i64>,
    valid_until_ms: Option<i64>,
}

impl Stored {
    fn in_window(&self, now_ms: i64) -> bool {
        self.valid_from_ms.is_none_or(|f| f <= now_ms) && self.valid_until_ms.is_none_or(|u| now_ms < u)
    }
}

/// An entry as one receiver's two sorted sets hold it (its category's list, and versions).
struct Raw {
    id: String,
    category: Category,
    list_score: f64,
    version_score: f64,
    archived: bool,
}

impl Raw {
    fn read(&self) -> bool {
        self.version_score % 2.0 == 1.0
    }

    fn entry(&self, meta: Option<&Stored>) -> PortResult<InboxEntry> {
        let id = NotificationId::parse("id", &self.id).map_err(|e| PortError::new(BACKEND, e))?;
        let pinned_unread = self.list_score >= PINNED_UNREAD;
        let sent_at_ms = if pinned_unread { self.list_score - PINNED_UNREAD } else { self.list_score } as i64;
        Ok(InboxEntry {
            version: (self.version_score / 2.0).floor() as u64,
            read: self.read(),
            force_read: meta.is_some_and(|m| m.force_read),
            category: self.category,
            archived: self.archived,
            position: InboxCursor { pinned_unread, sent_at_ms, id: id.clone() },
            notification_id: id,
        })
    }
}

/// The list score of an entry at `position`: pinned unread ones above all, then by time (the id
/// breaks ties: Redis orders equal scores by member).
fn list_score(pinned_unread: bool, sent_ms: i64) -> i64 {
    if pinned_unread { PINNED_UNREAD as i64 + sent_ms } else { sent_ms }
}

/// The cluster slot of keys whose hash tag holds `tag`: CRC16 (XMODEM) of it, mod 16384.
fn slot_of(tag: &str) -> u16 {
    let crc = tag.bytes().fold(0u16, |crc, b| {
        (0..8).fold(crc ^ (u16::from(b) << 8), |c, _| if c & 0x8000 != 0 { (c << 1) ^ 0x1021 } else { c << 1 })
    });
    crc % 16384
}

/// A hash that stays the same across processes and versions (std's does not promise to).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A meta hash's fields: pinned, force_read, sent_ms, valid_from, valid_until, category.
type MetaFields = (Option<u8>, Option<u8>, Option<i64>, Option<i64>, Option<i64>, Option<String>);
/// A category as the store keeps it (its name).
fn category_of(raw: &str) -> PortResult<Category> {
    Category::parse("category", raw).map_err(|e| PortError::new(BACKEND, e))
}

/// List order: by score, then by id, both descending (Redis orders equal scores by member).
fn list_order(a: &Raw, b: &Raw) -> std::cmp::Ordering {
    b.list_score.total_cmp(&a.list_score).then_with(|| b.id.cmp(&a.id))
}

/// Members of a receiver's sorted set with their scores.
type Scored = Vec<(Member, f64)>;

/// A notification id as a receiver's sorted sets hold it: its 16 bytes rather than its 32 hex
/// digits, which halves what each entry costs; the bytes sort as the hex does, so equal scores
/// still order by id.
struct Member(String);

impl FromRedisValue for Member {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let bytes: Vec<u8> = FromRedisValue::from_redis_value(v)?;
        Ok(Member(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// The member of a notification id (32 hex digits, as `NotificationId` guarantees).
fn member(id: &str) -> Vec<u8> {
    id.as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0))
        .collect()
}

fn members(ids: &[&str]) -> Vec<Vec<u8>> {
    ids.iter().map(|id| member(id)).collect()
}

/// The notification metas kept in memory: they never change, so a read looks each up once.
const META_CACHE: usize = 100_000;

pub struct RedisInbox {
    conn: Conn,
    keys: Keys,
    cap: InboxCap,
    metas: Mutex<HashMap<String, Stored>>,
}

impl RedisInbox {
    /// Connects to the server (or cluster) `config` names, failing if it does not answer.
    pub async fn open(config: &RedisConfig) -> anyhow::Result<Self> {
        let conn = connect(&config.server).await?;
        let inbox = Self {
            conn,
            keys: Keys { prefix: config.prefix.clone() },
            cap: config.cap,
            metas: Mutex::new(HashMap::new()),
        };
        inbox.ping().await?;
        Ok(inbox)
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The stored metas of `ids` (those never delivered are absent).
    async fn metas(&self, ids: &[&str]) -> PortResult<HashMap<String, Stored>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.metas.lock().expect("meta cache");
            for id in ids {
                match cache.get(*id) {
                    Some(m) => {
                        found.insert(id.to_string(), *m);
                    }
                    None => missing.push(*id),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let fetched = try_join_all(missing.iter().map(|id| async move {
            let fields: MetaFields = redis::cmd("HMGET")
                .arg(self.keys.notification(id, "m"))
                .arg(&["pinned", "force_read", "sent_ms", "valid_from", "valid_until", "category"])
                .query_async(&mut self.conn())
                .await
                .map_err(err)?;
            PortResult::Ok((*id, fields))
        }))
        .await?;
        let mut cache = self.metas.lock().expect("meta cache");
        if cache.len() > META_CACHE {
            cache.clear();
        }
        for (id, (pinned, force_read, sent_ms, valid_from_ms, valid_until_ms, category)) in fetched {
            if let (Some(pinned), Some(force_read), Some(sent_ms), Some(category)) =
                (pinned, force_read, sent_ms, category)
            {
                let meta = Stored {
                    category: category_of(&category)?,
                    pinned: pinned == 1,
                    force_read: force_read == 1,
                    sent_ms,
                    valid_from_ms,
                    valid_until_ms,
                };
                cache.insert(id.to_string(), meta);
                found.insert(id.to_string(), meta);
            }
        }
        Ok(found)
    }

    /// Which of `ids` are withheld.
    async fn withheld_among(&self, ids: &[&str]) -> PortResult<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(self.keys.global("withheld"))
            .arg(ids)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(ids.iter().zip(flags).filter(|(_, w)| *w).map(|(id, _)| id.to_string()).collect())
    }

    /// Which of `ids` are visible at `now_ms`, with every meta found.
    async fn visibility(&self, ids: &[&str], now_ms: i64) -> PortResult<(HashSet<String>, HashMap<String, Stored>)> {
        let metas = self.metas(ids).await?;
        let withheld = self.withheld_among(ids).await?;
        let visible = ids
            .iter()
            .filter(|id| !withheld.contains(**id) && metas.get(**id).is_some_and(|m| m.in_window(now_ms)))
            .map(|id| id.to_string())
            .collect();
        Ok((visible, metas))
    }

    /// One receiver's entries among `ids` (absent ones skipped).
    async fn raw_of(&self, receiver: &str, ids: &[&str]) -> PortResult<Vec<Raw>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys.receiver(receiver);
        let mut pipe = redis::pipe();
        pipe.cmd("ZMSCORE").arg(&k.versions).arg(members(ids));
        for list in &k.lists {
            pipe.cmd("ZMSCORE").arg(list).arg(members(ids));
        }
        let (mut scores, archived): (Vec<Vec<Option<f64>>>, Vec<bool>) = {
            pipe.cmd("SMISMEMBER").arg(&k.archived).arg(members(ids));
            let mut values: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(err)?;
            let archived = FromRedisValue::from_redis_value(values.pop().expect("SMISMEMBER's answer"))
                .map_err(|e| PortError::new(BACKEND, e))?;
            let scores = values
                .into_iter()
                .map(FromRedisValue::from_redis_value)
                .collect::<Result<_, _>>()
                .map_err(|e| PortError::new(BACKEND, e))?;
            (scores, archived)
        };
        let versions = scores.remove(0);
        // An archived entry is in no list: its category and place come from its notification's meta.
        let archived_ids: Vec<&str> = ids.iter().zip(&archived).filter(|(_, a)| **a).map(|(id, _)| *id).collect();
        let metas = self.metas(&archived_ids).await?;
        Ok(ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let version_score = versions[i]?;
                let (category, list_score) = if archived[i] {
                    let m = metas.get(*id)?;
                    let unread = version_score % 2.0 == 0.0;
                    (m.category, list_score(m.pinned && unread, m.sent_ms) as f64)
                } else {
                    Category::ALL.iter().zip(&scores).find_map(|(c, list)| Some((*c, list[i]?)))?
                };
                Some(Raw { id: id.to_string(), category, list_score, version_score, archived: archived[i] })
            })
            .collect())
    }

    /// Every entry of one receiver, in list order.
    async fn all_raw(&self, receiver: &str) -> PortResult<Vec<Raw>> {
        let k = self.keys.receiver(receiver);
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE").arg(&k.versions).arg(0).arg(-1).arg("WITHSCORES");
        for list in &k.lists {
            pipe.cmd("ZRANGE").arg(list).arg(0).arg(-1).arg("WITHSCORES");
        }
        let mut sets: Vec<Scored> = pipe.query_async(&mut self.conn()).await.map_err(err)?;
        let versions: HashMap<String, f64> = sets.remove(0).into_iter().map(|(m, v)| (m.0, v)).collect();
        let mut raws: Vec<Raw> = Category::ALL
            .iter()
            .zip(sets)
            .flat_map(|(category, list)| {
                let versions = &versions;
                list.into_iter().filter_map(move |(Member(id), list_score)| {
                    let version_score = *versions.get(&id)?;
                    Some(Raw { id, category: *category, list_score, version_score, archived: false })
                })
            })
            .collect();
        raws.sort_by(list_order);
        Ok(raws)
    }

    /// Up to `limit` visible entries of one category's list after `cursor`, in list order: walks
    /// the list downwards from the cursor's score (inclusive: entries at that score with an id at
    /// or above the cursor's are behind it); `offset` skips entries of the bound's score already
    /// seen, so any number of ties still advances.
    async fn page_of(
        &self,
        list: &str,
        category: Category,
        now_ms: i64,
        cursor: Option<&(f64, String)>,
        limit: usize,
    ) -> PortResult<Vec<(String, Category, f64)>> {
        let batch = (limit * 2).max(32);
        let mut bound = cursor.map(|(score, _)| *score);
        let mut offset = 0;
        let mut found = Vec::new();
        loop {
            let max = bound.map_or_else(|| "+inf".to_string(), |s| format!("{s:.0}"));
            let rows: Scored = redis::cmd("ZRANGE")
                .arg(list)
                .arg(&max)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(offset)
                .arg(batch)
                .arg("WITHSCORES")
                .query_async(&mut self.conn())
                .await
                .map_err(err)?;
            let rows: Vec<(String, f64)> = rows.into_iter().map(|(m, score)| (m.0, score)).collect();
            let candidates: Vec<&str> = rows
                .iter()
                .filter(|(id, score)| !cursor.is_some_and(|(cs, cid)| score == cs && id.as_str() >= cid.as_str()))
                .map(|(id, _)| id.as_str())
                .collect();
            let (visible, _) = self.visibility(&candidates, now_ms).await?;
            for (id, score) in &rows {
                if found.len() < limit && candidates.contains(&id.as_str()) && visible.contains(id) {
                    found.push((id.clone(), category, *score));
                }
            }
            if found.len() >= limit || rows.len() < batch {
                break;
            }
            let last = rows.last().map(|(_, s)| *s).expect("a full batch");
            let at_last = rows.iter().filter(|(_, s)| *s == last).count();
            offset = if bound == Some(last) { offset + at_last } else { at_last };
            bound = Some(last);
        }
        Ok(found)
    }

    async fn entries(&self, raws: &[Raw]) -> PortResult<Vec<InboxEntry>> {
        let ids: Vec<&str> = raws.iter().map(|r| r.id.as_str()).collect();
        let metas = self.metas(&ids).await?;
        raws.iter().map(|r| r.entry(metas.get(&r.id))).collect()
    }

    /// Writes a delivered page's entries into `receivers`' inboxes: one script per slot (on one
    /// server, all in one; at most `ENTRIES_PER_SCRIPT` each), sent concurrently. Answers the
    /// receivers whose inbox it took past the cap.
    async fn add_entries<'r>(
        &self,
        receivers: &'r [String],
        id: &str,
        category: Category,
        score: i64,
        sent_ms: i64,
    ) -> PortResult<Vec<&'r str>> {
        let mut by_slot: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for receiver in receivers {
            let slot = if self.conn.is_cluster() { slot_of(&self.keys.receiver_tag(receiver)) } else { 0 };
            by_slot.entry(slot).or_default().push(receiver);
        }
        let groups: Vec<&[&str]> = by_slot.values().flat_map(|g| g.chunks(ENTRIES_PER_SCRIPT)).collect();
        let over = try_join_all(groups.iter().map(|group| async move {
            let mut add = scripts::ADD_ENTRIES.prepare_invoke();
            for receiver in *group {
                let k = self.keys.receiver(receiver);
                add.key(k.list(category)).key(&k.versions).key(&k.trims);
            }
            add.arg(member(id)).arg(score).arg(sent_ms).arg(self.cap.get());
            let over: Vec<usize> = add.invoke_async(&mut self.conn()).await.map_err(err)?;
            PortResult::Ok(over.into_iter().filter_map(|i| group.get(i.checked_sub(1)?).copied()).collect::<Vec<_>>())
        }))
        .await?;
        Ok(over.into_iter().flatten().collect())
    }

    /// Trims an inbox found past the cap back to `cap.after_trim()`, in `InboxCap`'s order.
    async fn trim(&self, receiver: &str, now_ms: i64) -> PortResult<()> {
        let k = self.keys.receiver(receiver);
        let mut raws = self.all_raw(receiver).await?;
        let archived: Vec<Member> =
            redis::cmd("SMEMBERS").arg(&k.archived).query_async(&mut self.conn()).await.map_err(err)?;
        let archived: Vec<&str> = archived.iter().map(|m| m.0.as_str()).collect();
        raws.extend(self.raw_of(receiver, &archived).await?);
        let ids: Vec<&str> = raws.iter().map(|r| r.id.as_str()).collect();
        let metas = self.metas(&ids).await?;
        let withheld = self.withheld_among(&ids).await?;
        // (class, sent_ms, id): 0 can never be shown again, 1 read, 2 unread; pinned entries and
        // unread force-read ones are kept while they can be shown.
        let mut victims: Vec<(u8, i64, &str)> = raws
            .iter()
            .filter_map(|r| {
                let Some(m) = metas.get(&r.id) else { return Some((0, i64::MIN, r.id.as_str())) };
                let gone = withheld.contains(&r.id) || m.valid_until_ms.is_some_and(|u| u <= now_ms);
                let class = if gone {
                    0
                } else if r.archived {
                    1
                } else if m.pinned || (!r.read() && m.force_read) {
                    return None;
                } else if r.read() {
                    1
                } else {
                    2
                };
                Some((class, m.sent_ms, r.id.as_str()))
            })
            .collect();
        victims.sort_unstable();
        let mut trim = scripts::TRIM.key(&k.versions);
        trim.key(&k.trims).key(&k.archived).key(&k.lists).arg(self.cap.after_trim());
        for (class, sent_ms, id) in &victims {
            trim.arg(member(id)).arg(*sent_ms).arg(u8::from(*class != 0));
        }
        let _: i64 = trim.invoke_async(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }

    /// Writes a notification's entries into `receivers`' inboxes (a page's, after its script in
    /// the notification's slot decided them), registering its window's start for sync, and trims
    /// the inboxes this took past the cap.
    async fn write_entries(
        &self,
        receivers: &[String],
        id: &str,
        meta: &EntryMeta,
        stored: (bool, i64, Category),
    ) -> PortResult<()> {
        let (pinned, sent_ms, category) = stored;
        if let Some(from) = meta.valid_from_ms {
            let _: () = redis::cmd("ZADD")
                .arg(self.keys.global("opening"))
                .arg("NX")
                .arg(from)
                .arg(id)
                .query_async(&mut self.conn())
                .await
                .map_err(err)?;
        }
        let over = self.add_entries(receivers, id, category, list_score(pinned, sent_ms), sent_ms).await?;
        let now_ms = millis(Utc::now());
        try_join_all(over.into_iter().map(|receiver| self.trim(receiver, now_ms))).await?;
        Ok(())
    }

    async fn withhold_now(&self, notification: &NotificationId) -> PortResult<()> {
        let id = notification.as_str();
        // The flag deliveries check first, then the set reads check.
        let _: () = redis::cmd("HSET")
            .arg(self.keys.notification(id, "m"))
            .arg("withheld")
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        let _: () = redis::cmd("SADD")
            .arg(self.keys.global("withheld"))
            .arg(id)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// What the DELIVER and RESTORE scripts read of a notification's `EntryMeta`, in their ARGV order.
fn meta_args<'a, 'b>(
    script: &'b mut redis::ScriptInvocation<'a>,
    meta: &EntryMeta,
) -> &'b mut redis::ScriptInvocation<'a> {
    script
        .arg(u8::from(meta.pinned))
        .arg(u8::from(meta.force_read))
        .arg(meta.sent_at_ms)
        .arg(meta.valid_from_ms.map(|t| t.to_string()).unwrap_or_default())
        .arg(meta.valid_until_ms.map(|t| t.to_string()).unwrap_or_default())
        .arg(meta.category.as_str())
}

/// The holder buckets `receivers` fall in, each once in order of first appearance, and for each
/// receiver the position (from 1) of its bucket in that list.
fn holder_buckets(receivers: &[String]) -> (Vec<u64>, Vec<usize>) {
    let mut buckets: BTreeMap<u64, usize> = BTreeMap::new();
    let bucket_of: Vec<usize> = receivers
        .iter()
        .map(|r| {
            let next = buckets.len() + 1;
            *buckets.entry(fnv1a(r.as_bytes()) % HOLDER_BUCKETS).or_insert(next)
        })
        .collect();
    let mut ordered: Vec<(usize, u64)> = buckets.iter().map(|(b, i)| (*i, *b)).collect();
    ordered.sort_unstable();
    (ordered.into_iter().map(|(_, b)| b).collect(), bucket_of)
}

/// Deletes every key under `prefix` from the server or cluster `url` names (on each node it lists:
/// list every master of a cluster), one key at a time (a cluster node refuses one command across
/// slots); answers how many. Blocking, for tests and tools: what a test run or a measurement wrote
/// goes, and nothing else on a shared server.
pub fn erase_prefix(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let nodes = match RedisServer::parse(url)? {
        RedisServer::Single(url) => vec![url],
        RedisServer::Cluster(nodes) => nodes,
    };
    let pattern: String =
        prefix.chars().flat_map(|c| if "*?[]\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
    let mut erased = 0;
    for node in nodes {
        let mut conn = redis::Client::open(node.as_str())?.get_connection()?;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{pattern}:*"))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)?;
            for key in keys {
                erased += redis::cmd("UNLINK").arg(key).query::<u64>(&mut conn)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(erased)
}

impl RedisInbox {
    /// One page (`InboxStore::deliver`): its step in the notification's slot, then its entries.
    async fn deliver_one(&self, page_write: &PageWrite<'_>) -> PortResult<PageDelivery> {
        let PageWrite { page, meta, .. } = *page_write;
        let key = &page.key;
        let id = key.notification_id.as_str();
        let field = format!("{}/{}", key.city, key.page_no);
        let pending_key = self.keys.notification(id, &format!("w:{field}"));
        let receivers: Vec<String> =
            page.receivers.iter().map(|r| ReceiverRef::key_of(page.receiver_kind, r)).collect();
        let (buckets, bucket_of) = holder_buckets(&receivers);
        let mut deliver = scripts::DELIVER.key(self.keys.notification(id, "m"));
        deliver.key(self.keys.notification(id, "c")).key(self.keys.notification(id, "p")).key(&pending_key);
        for bucket in &buckets {
            deliver.key(self.keys.notification(id, &format!("h:{bucket}")));
        }
        deliver.arg(&field).arg(key.city.as_str());
        meta_args(&mut deliver, meta).arg(receivers.len());
        for (receiver, bucket) in receivers.iter().zip(&bucket_of) {
            deliver.arg(receiver).arg(*bucket);
        }
        let shown: String = page_write.split().unwrap_or_default().iter().map(|s| s.code()).collect();
        deliver.arg(shown);
        let (repeated, added, pinned, sent_ms, category, pending): (i64, u64, i64, i64, String, Vec<String>) =
            deliver.invoke_async(&mut self.conn()).await.map_err(err)?;
        if !pending.is_empty() {
            self.write_entries(&pending, id, meta, (pinned == 1, sent_ms, category_of(&category)?)).await?;
            let _: () = redis::cmd("DEL").arg(&pending_key).query_async(&mut self.conn()).await.map_err(err)?;
        }
        Ok(PageDelivery { added, repeated: repeated == 1 })
    }
}

#[async_trait]
impl InboxStore for RedisInbox {
    async fn deliver_pages(&self, pages: &[PageWrite<'_>]) -> PortResult<Vec<PageDelivery>> {
        let mut deliveries = Vec::with_capacity(pages.len());
        for page in pages {
            deliveries.push(self.deliver_one(page).await?);
        }
        Ok(deliveries)
    }

    async fn restore(&self, page: &Page, meta: &EntryMeta) -> PortResult<u64> {
        let id = page.key.notification_id.as_str();
        let receivers: Vec<String> =
            page.receivers.iter().map(|r| ReceiverRef::key_of(page.receiver_kind, r)).collect();
        let (buckets, bucket_of) = holder_buckets(&receivers);
        let mut restore = scripts::RESTORE.key(self.keys.notification(id, "m"));
        for bucket in &buckets {
            restore.key(self.keys.notification(id, &format!("h:{bucket}")));
        }
        meta_args(&mut restore, meta).arg(receivers.len());
        for (receiver, bucket) in receivers.iter().zip(&bucket_of) {
            // The holder buckets follow the meta among KEYS: from 2.
            restore.arg(receiver).arg(*bucket + 1);
        }
        let (new, pinned, sent_ms, category, write): (u64, i64, i64, String, Vec<String>) =
            restore.invoke_async(&mut self.conn()).await.map_err(err)?;
        if !write.is_empty() {
            self.write_entries(&write, id, meta, (pinned == 1, sent_ms, category_of(&category)?)).await?;
        }
        Ok(new)
    }

    async fn restore_pages(&self, pages: &[(PageKey, u64)]) -> PortResult<()> {
        let mut by_notification: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
        for (key, added) in pages {
            by_notification
                .entry(key.notification_id.as_str())
                .or_default()
                .push((format!("{}/{}", key.city, key.page_no), *added));
        }
        try_join_all(by_notification.iter().map(|(id, fields)| async move {
            redis::cmd("HSET")
                .arg(self.keys.notification(id, "p"))
                .arg(fields)
                .query_async::<i64>(&mut self.conn())
                .await
                .map_err(err)
        }))
        .await?;
        Ok(())
    }

    async fn set_counters(&self, notification: &NotificationId, counters: &Counters) -> PortResult<()> {
        let mut set = scripts::SET_COUNTERS.key(self.keys.notification(notification.as_str(), "c"));
        for (field, value) in counters.fields() {
            set.arg(field).arg(value);
        }
        let _: i64 = set.invoke_async(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }

    async fn page_outcome(&self, page: &PageKey) -> PortResult<Option<u64>> {
        redis::cmd("HGET")
            .arg(self.keys.notification(page.notification_id.as_str(), "p"))
            .arg(format!("{}/{}", page.city, page.page_no))
            .query_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn withhold(&self, notification: &NotificationId) -> PortResult<()> {
        self.withhold_now(notification).await
    }

    async fn apply_revocation(&self, position: u64, notification: &NotificationId) -> PortResult<()> {
        self.withhold_now(notification).await?;
        let _: i64 = scripts::RAISE
            .key(self.keys.global("revocations"))
            .arg(position)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn revocations_applied(&self) -> PortResult<u64> {
        let position: Option<u64> =
            redis::cmd("GET").arg(self.keys.global("revocations")).query_async(&mut self.conn()).await.map_err(err)?;
        Ok(position.unwrap_or(0))
    }

    async fn page(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        after: Option<&InboxCursor>,
        limit: usize,
        category: Option<Category>,
    ) -> PortResult<Vec<InboxEntry>> {
        let receiver = receiver.key();
        let k = self.keys.receiver(&receiver);
        let now_ms = millis(now);
        let cursor = after.map(|c| (list_score(c.pinned_unread, c.sent_at_ms) as f64, c.id.as_str().to_owned()));
        // A tab is its category's list; the whole inbox the first `limit` of each list, merged.
        let categories = category.map_or_else(|| Category::ALL.to_vec(), |c| vec![c]);
        let parts =
            try_join_all(categories.iter().map(|c| self.page_of(k.list(*c), *c, now_ms, cursor.as_ref(), limit)))
                .await?;
        let mut found: Vec<(String, Category, f64)> = parts.into_iter().flatten().collect();
        found.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
        found.truncate(limit);
        let ids: Vec<&str> = found.iter().map(|(id, _, _)| id.as_str()).collect();
        let raws = self.raw_of(&receiver, &ids).await?;
        self.entries(&raws).await
    }

    async fn unread_count(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<UnreadCount> {
        let k = self.keys.receiver(&receiver.key());
        let (versions, archived, (seen_version, seen_at)): (Scored, Vec<Member>, (Option<f64>, Option<i64>)) =
            redis::pipe()
                .cmd("ZRANGE")
                .arg(&k.versions)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .cmd("SMEMBERS")
                .arg(&k.archived)
                .cmd("HMGET")
                .arg(&k.seen)
                .arg("version")
                .arg("at")
                .query_async(&mut self.conn())
                .await
                .map_err(err)?;
        let archived: HashSet<String> = archived.into_iter().map(|m| m.0).collect();
        // An unread entry's version score is its version times two.
        let unread: Vec<(&str, f64)> = versions
            .iter()
            .filter(|(id, v)| v % 2.0 == 0.0 && !archived.contains(&id.0))
            .map(|(id, v)| (id.0.as_str(), *v))
            .collect();
        let ids: Vec<&str> = unread.iter().map(|(id, _)| *id).collect();
        let (visible, metas) = self.visibility(&ids, millis(now)).await?;
        let seen_score = seen_version.unwrap_or(0.0) * 2.0;
        let mut count = UnreadCount::default();
        for (id, score) in &unread {
            let Some(meta) = metas.get(*id).filter(|_| visible.contains(*id)) else { continue };
            count.unread += 1;
            count.force_read += u64::from(meta.force_read);
            count.by_category.add(meta.category, 1);
            let opened_since = seen_at.is_some_and(|at| meta.valid_from_ms.is_some_and(|from| from > at));
            count.unseen += u64::from(*score > seen_score || opened_since);
        }
        Ok(count)
    }

    async fn unread(
        &self,
        receiver: &ReceiverRef,
        now: DateTime<Utc>,
        force_read_only: bool,
    ) -> PortResult<Vec<InboxEntry>> {
        let raws: Vec<Raw> = self.all_raw(&receiver.key()).await?.into_iter().filter(|r| !r.read()).collect();
        let ids: Vec<&str> = raws.iter().map(|r| r.id.as_str()).collect();
        let (visible, metas) = self.visibility(&ids, millis(now)).await?;
        raws.iter()
            .filter(|r| visible.contains(&r.id) && (!force_read_only || metas.get(&r.id).is_some_and(|m| m.force_read)))
            .map(|r| r.entry(metas.get(&r.id)))
            .collect()
    }

    async fn entries_of(&self, receiver: &ReceiverRef, ids: &[NotificationId]) -> PortResult<Vec<InboxEntry>> {
        let ids: Vec<&str> = ids.iter().map(NotificationId::as_str).collect();
        let raws = self.raw_of(&receiver.key(), &ids).await?;
        self.entries(&raws).await
    }

    async fn changed_since(&self, receiver: &ReceiverRef, version: u64, limit: usize) -> PortResult<Vec<InboxEntry>> {
        let receiver = receiver.key();
        let k = self.keys.receiver(&receiver);
        // Version v scores 2v (unread) or 2v + 1 (read): above 2·version + 1 is above `version`.
        let changed: Scored = redis::cmd("ZRANGE")
            .arg(&k.versions)
            .arg(format!("({}", version * 2 + 1))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        let ids: Vec<&str> = changed.iter().map(|(id, _)| id.0.as_str()).collect();
        let mut raws = self.raw_of(&receiver, &ids).await?;
        raws.sort_by(|a, b| a.version_score.total_cmp(&b.version_score));
        self.entries(&raws).await
    }

    async fn opened_between(
        &self,
        receiver: &ReceiverRef,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<InboxEntry>> {
        let opened: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.global("opening"))
            .arg(format!("({}", millis(after)))
            .arg(millis(until))
            .arg("BYSCORE")
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        let ids: Vec<&str> = opened.iter().map(String::as_str).collect();
        let raws = self.raw_of(&receiver.key(), &ids).await?;
        self.entries(&raws).await
    }

    async fn mark_seen(&self, receiver: &ReceiverRef, now: DateTime<Utc>) -> PortResult<()> {
        let k = self.keys.receiver(&receiver.key());
        let () = scripts::MARK_SEEN
            .key(&k.versions)
            .key(&k.trims)
            .key(&k.seen)
            .arg(millis(now))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn mark_read_shown(&self, receiver: &ReceiverRef, reads: &[Read]) -> PortResult<Vec<NotificationId>> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys.receiver(&receiver.key());
        let mut mark = scripts::MARK_READ.key(&k.versions);
        mark.key(&k.trims).key(&k.lists);
        for read in reads {
            mark.arg(member(read.id.as_str()));
        }
        let newly: Vec<Member> = mark.invoke_async(&mut self.conn()).await.map_err(err)?;
        let newly: Vec<String> = newly.into_iter().map(|m| m.0).collect();
        let shown: HashMap<&str, ShownVariant> =
            reads.iter().filter_map(|read| Some((read.id.as_str(), read.shown?))).collect();
        try_join_all(newly.iter().map(|id| {
            let mut count = scripts::COUNT_READ.key(self.keys.notification(id, "c"));
            count.arg("read");
            if let Some(shown) = shown.get(id.as_str()) {
                count.arg(Counters::variant_field(*shown, true));
            }
            async move { count.invoke_async::<i64>(&mut self.conn()).await.map_err(err) }
        }))
        .await?;
        newly.iter().map(|id| NotificationId::parse("id", id).map_err(|e| PortError::new(BACKEND, e))).collect()
    }

    async fn set_archived(
        &self,
        receiver: &ReceiverRef,
        ids: &[NotificationId],
        archived: bool,
    ) -> PortResult<Vec<NotificationId>> {
        let strs: Vec<&str> = ids.iter().map(NotificationId::as_str).collect();
        let metas = self.metas(&strs).await?;
        // Only entries of a delivered notification can be held.
        let known: Vec<(&str, &Stored)> = strs.iter().filter_map(|id| Some((*id, metas.get(*id)?))).collect();
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let k = self.keys.receiver(&receiver.key());
        let mut script = scripts::ARCHIVE.key(&k.versions);
        script.key(&k.trims).key(&k.archived).arg(if archived { "1" } else { "0" });
        for (id, meta) in &known {
            script.key(k.list(meta.category));
            script.arg(member(id)).arg(meta.sent_ms).arg(u8::from(meta.pinned));
        }
        let changed: Vec<Member> = script.invoke_async(&mut self.conn()).await.map_err(err)?;
        changed.iter().map(|m| NotificationId::parse("id", &m.0).map_err(|e| PortError::new(BACKEND, e))).collect()
    }

    async fn counters_of(&self, ids: &[NotificationId]) -> PortResult<HashMap<NotificationId, Counters>> {
        let hashes = try_join_all(ids.iter().map(|id| async move {
            let fields: HashMap<String, u64> = redis::cmd("HGETALL")
                .arg(self.keys.notification(id.as_str(), "c"))
                .query_async(&mut self.conn())
                .await
                .map_err(err)?;
            PortResult::Ok((id.clone(), fields))
        }))
        .await?;
        Ok(hashes
            .into_iter()
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(id, fields)| {
                let mut counters = Counters::default();
                for (field, value) in fields {
                    counters.set_field(&field, value);
                }
                (id, counters)
            })
            .collect())
    }

    async fn erase_receiver(&self, receiver: &ReceiverRef) -> PortResult<u64> {
        let k = self.keys.receiver(&receiver.key());
        let erased: u64 = scripts::ERASE
            .key(&k.versions)
            .key(&k.trims)
            .key(&k.archived)
            .key(&k.seen)
            .key(&k.lists)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(erased)
    }

    async fn ping(&self) -> PortResult<()> {
        redis::cmd("PING").query_async::<String>(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::slot_of;

    #[test]
    fn slots_are_redis_clusters() {
        // CLUSTER KEYSLOT's answers.
        assert_eq!(slot_of("123456789"), 0x31c3);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("r:rider:r1"), 15343);
    }
}
