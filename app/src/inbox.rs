//! The apps' use cases on one receiver's inbox: a page of it, the unread count, the unread
//! force-read messages, marking one or every message read, archiving one or all, and sync. Every
//! one first catches up with the revocation log (`Catalog::catch_up`), so no revoked message is
//! ever shown, then reads one index range of the inbox store and the notifications it names
//! through the catalog.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_domain::ports::{Read, UnreadCount};
use herald_domain::template::Fields;
use herald_domain::{
    Category, InboxCursor, InboxEntry, InboxItem, Notification, NotificationId, Receiver, ReceiverRef, Status,
    SyncCursor, Viewer,
};

use crate::{AppError, AppResult, Herald};

/// Entries per sync response.
const SYNC_BATCH: usize = 100;
/// Revocations read per sync call.
const REVOCATION_BATCH: usize = 1000;
/// Entries read per page while archiving all (an inbox holds about its cap).
const ARCHIVE_BATCH: usize = 500;

/// What `me`'s placeholders are filled with: its record when the directory has it, else its id.
fn fields_of<'a>(me: &'a ReceiverRef, reader: Option<&'a Receiver>) -> Fields<'a> {
    Fields { id: &me.id, city: reader.map(|r| &r.city), attributes: reader.map(|r| &r.attributes) }
}

/// What `me`'s variant and translation are chosen by: its record's groups and locale, else none
/// (the default content, untranslated).
fn viewer_of(reader: Option<&Receiver>) -> Viewer<'_> {
    Viewer { groups: reader.map_or(&[], Receiver::groups), locale: reader.and_then(|r| r.locale.as_ref()) }
}

/// A page of an inbox.
#[derive(Debug, Clone)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// Where the next page starts; `None` when nothing follows.
    pub next: Option<InboxCursor>,
    pub has_more: bool,
}

/// A sync's news about one message.
#[derive(Debug, Clone)]
pub enum SyncNews {
    /// It arrived, changed (read elsewhere) or became visible (its window opened).
    Message(InboxItem),
    Revoked(NotificationId),
}

/// What a sync answers: the news in id order, and where the next sync starts.
#[derive(Debug, Clone)]
pub struct SyncBatch {
    pub items: Vec<SyncNews>,
    pub cursor: SyncCursor,
    pub has_more: bool,
}

impl Herald {
    /// The inbox after `cursor`, at most `limit` messages: pinned unread first, then newest first;
    /// only visible, unrevoked messages, and only of `category` when one is given (a tab).
    pub async fn inbox_page(
        &self,
        me: &ReceiverRef,
        cursor: Option<&InboxCursor>,
        limit: usize,
        category: Option<Category>,
    ) -> AppResult<InboxPage> {
        let now = self.now_caught_up().await?;
        // One more than a page tells whether anything follows, so `has_more` is never a false promise.
        let mut entries = self.ports.inbox.page(me, now, cursor, limit + 1, category).await?;
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        let next = if has_more { entries.last().map(|e| e.position.clone()) } else { None };
        Ok(InboxPage { items: self.items(me, &entries).await?, next, has_more })
    }

    /// How many visible messages are unread, how many of them must be read, how many are in each
    /// category, and how many are unseen.
    pub async fn unread_count(&self, me: &ReceiverRef) -> AppResult<UnreadCount> {
        let now = self.now_caught_up().await?;
        Ok(self.ports.inbox.unread_count(me, now).await?)
    }

    /// The receiver opened its inbox: what it holds now, and every window opened by now, is seen,
    /// so `unseen` (the app icon's badge) counts only what comes after. Its other devices are told
    /// the count changed.
    pub async fn mark_seen(&self, me: &ReceiverRef) -> AppResult<()> {
        let now = self.now_caught_up().await?;
        self.ports.inbox.mark_seen(me, now).await?;
        self.hints.changed(me.kind, std::slice::from_ref(&me.id));
        Ok(())
    }

    /// The unread force-read messages.
    pub async fn force_read_pending(&self, me: &ReceiverRef) -> AppResult<Vec<InboxItem>> {
        let now = self.now_caught_up().await?;
        let pending = self.ports.inbox.unread(me, now, true).await?;
        self.items(me, &pending).await
    }

    /// Marks one visible message of the inbox read; idempotent.
    pub async fn mark_read(&self, me: &ReceiverRef, id: NotificationId) -> AppResult<()> {
        let entry = self.shown_entry(me, &id).await?;
        if !entry.read {
            self.record_reads(me, &[id]).await?;
        }
        Ok(())
    }

    /// Marks every visible message read (only those of `category` when one is given); says how
    /// many were newly read.
    pub async fn mark_all_read(&self, me: &ReceiverRef, category: Option<Category>) -> AppResult<usize> {
        let now = self.now_caught_up().await?;
        let unread: Vec<NotificationId> = self
            .ports
            .inbox
            .unread(me, now, false)
            .await?
            .into_iter()
            .filter(|e| category.is_none_or(|c| e.category == c))
            .map(|e| e.notification_id)
            .collect();
        self.record_reads(me, &unread).await
    }

    /// Archives one visible message of the inbox (un-archives it when `archived` is false), for
    /// this receiver only; idempotent. An unread force-read message cannot be archived.
    pub async fn set_archived(&self, me: &ReceiverRef, id: NotificationId, archived: bool) -> AppResult<()> {
        let entry = self.shown_entry(me, &id).await?;
        if archived && entry.force_read && !entry.read {
            return Err(AppError::ForceReadUnread);
        }
        self.record_archives(me, &[id], archived).await?;
        Ok(())
    }

    /// Archives every listed message (only the read ones with `read_only`, only those of
    /// `category` when one is given), skipping unread force-read ones; says how many were newly
    /// archived. Reads the listed entries page by page: bounded by the inbox's cap.
    pub async fn archive_all(&self, me: &ReceiverRef, read_only: bool, category: Option<Category>) -> AppResult<usize> {
        let now = self.now_caught_up().await?;
        let mut ids = Vec::new();
        let mut after: Option<InboxCursor> = None;
        loop {
            let page = self.ports.inbox.page(me, now, after.as_ref(), ARCHIVE_BATCH, category).await?;
            // Read ones always; unread ones unless only read ones were asked for or one must be read.
            let archivable = |e: &&InboxEntry| e.read || !(read_only || e.force_read);
            ids.extend(page.iter().filter(archivable).map(|e| e.notification_id.clone()));
            match page.last() {
                Some(last) if page.len() == ARCHIVE_BATCH => after = Some(last.position.clone()),
                _ => break,
            }
        }
        self.record_archives(me, &ids, true).await
    }

    /// What arrived, changed (read or archived elsewhere), became visible (its window opened) or
    /// was revoked since the cursor. Without a cursor it starts from the beginning, so a new device
    /// fetches the whole inbox in batches.
    pub async fn sync(&self, me: &ReceiverRef, given: Option<SyncCursor>) -> AppResult<SyncBatch> {
        let now = self.now_caught_up().await?;
        // One more than a batch tells whether anything follows, so `has_more` is never a false promise.
        let mut changed = self.ports.inbox.changed_since(me, given.unwrap_or_default().version, SYNC_BATCH + 1).await?;
        let more_changes = changed.len() > SYNC_BATCH;
        changed.truncate(SYNC_BATCH);
        // A new device learns revoked messages from its entries; the revocation log is for deltas only.
        let (since, revocations) = match given {
            Some(since) => {
                (since, self.ports.notifications.revocations_since(since.revocation, REVOCATION_BATCH).await?)
            }
            None => {
                let head = self.ports.notifications.revocation_head().await?;
                (SyncCursor { revocation: head, ..SyncCursor::default() }, Vec::new())
            }
        };
        // Entries that arrived earlier but whose window opened since the last sync are news now.
        let opened: Vec<InboxEntry> = match given {
            Some(since) => {
                let last_sync = DateTime::from_timestamp_millis(since.at_ms).unwrap_or_default();
                let opened = self.ports.inbox.opened_between(me, last_sync, now).await?;
                opened.into_iter().filter(|e| e.version <= since.version).collect()
            }
            None => Vec::new(),
        };
        let revoked_ids: Vec<NotificationId> = revocations.iter().map(|(_, id)| id.clone()).collect();
        let held = self.ports.inbox.entries_of(me, &revoked_ids).await?;
        let mine: HashSet<&NotificationId> = held.iter().map(|e| &e.notification_id).collect();

        let ids: Vec<NotificationId> = changed.iter().chain(&opened).map(|e| e.notification_id.clone()).collect();
        let notifications: HashMap<NotificationId, Arc<Notification>> = if given.is_some() {
            self.catalog.get_many(&ids).await?
        } else {
            // The cursor starts past every revocation logged so far, so statuses must be read after
            // that point, from the store: a cached copy from before a revoke would hide it for good.
            let fresh = self.ports.notifications.notifications(&ids).await?;
            fresh.into_iter().map(|n| (n.id.clone(), Arc::new(n))).collect()
        };

        let reader = self.reader(me, notifications.values().map(|n| &**n)).await;
        let (fields, viewer) = (fields_of(me, reader.as_ref()), viewer_of(reader.as_ref()));
        let mut cursor = SyncCursor { at_ms: now.timestamp_millis(), ..since };
        let mut out: BTreeMap<NotificationId, SyncNews> = BTreeMap::new();
        let report = |entry: &InboxEntry, out: &mut BTreeMap<NotificationId, SyncNews>| {
            let Some(n) = notifications.get(&entry.notification_id) else { return };
            if n.status == Status::Revoked {
                out.insert(n.id.clone(), SyncNews::Revoked(n.id.clone()));
            } else if n.visible_at(now) {
                let item = InboxItem::new(n.clone(), entry, &fields, viewer);
                out.insert(n.id.clone(), SyncNews::Message(item));
            }
        };
        for entry in &changed {
            cursor.version = cursor.version.max(entry.version);
            report(entry, &mut out);
        }
        for entry in &opened {
            report(entry, &mut out);
        }
        for (seq, id) in &revocations {
            cursor.revocation = cursor.revocation.max(*seq);
            if mine.contains(id) {
                out.insert(id.clone(), SyncNews::Revoked(id.clone()));
            }
        }
        let has_more = more_changes || revocations.len() == REVOCATION_BATCH;
        Ok(SyncBatch { items: out.into_values().collect(), cursor, has_more })
    }

    /// The instant a read answers for, after every revocation logged so far is withheld in the
    /// inbox store (which then filters by itself).
    async fn now_caught_up(&self) -> AppResult<DateTime<Utc>> {
        self.catalog.catch_up().await?;
        Ok(self.clock.now())
    }

    /// The entries with their notifications, in the entries' order, rendered for `me`.
    async fn items(&self, me: &ReceiverRef, entries: &[InboxEntry]) -> AppResult<Vec<InboxItem>> {
        let ids: Vec<NotificationId> = entries.iter().map(|e| e.notification_id.clone()).collect();
        let notifications = self.catalog.get_many(&ids).await?;
        let reader = self.reader(me, notifications.values().map(|n| &**n)).await;
        let (fields, viewer) = (fields_of(me, reader.as_ref()), viewer_of(reader.as_ref()));
        Ok(entries
            .iter()
            .filter_map(|e| {
                let notification = notifications.get(&e.notification_id)?.clone();
                Some(InboxItem::new(notification, e, &fields, viewer))
            })
            .collect())
    }

    /// The reader's directory record, which placeholders are filled from and variants and
    /// translations chosen by: one lookup per read, and only when a notification read is personal
    /// (`NewNotification::is_personal`). A lookup that fails renders as for a receiver the
    /// directory does not know (the id alone, the default content untranslated) rather than
    /// failing the read.
    async fn reader<'n>(
        &self,
        me: &ReceiverRef,
        mut notifications: impl Iterator<Item = &'n Notification>,
    ) -> Option<Receiver> {
        if !notifications.any(|n| n.content.is_personal()) {
            return None;
        }
        match self.ports.receivers.lookup_receivers(me.kind, std::slice::from_ref(&me.id)).await {
            Ok(mut found) => found.pop(),
            Err(e) => {
                tracing::warn!(receiver = %me.key(), error = %e, "placeholders rendered without the receiver's record");
                None
            }
        }
    }

    /// The receiver's entry of `id` if it is shown now, else `NotFound`: a message one cannot see
    /// cannot be acted on. Only whether it is shown is asked: nothing is rendered, so the receiver's
    /// record is not looked up.
    async fn shown_entry(&self, me: &ReceiverRef, id: &NotificationId) -> AppResult<InboxEntry> {
        let now = self.now_caught_up().await?;
        let entry = self.ports.inbox.entries_of(me, std::slice::from_ref(id)).await?.pop();
        let entry = entry.ok_or(AppError::NotFound("message"))?;
        let found = self.catalog.get_many(std::slice::from_ref(&entry.notification_id)).await?;
        if !found.get(&entry.notification_id).is_some_and(|n| n.visible_at(now)) {
            return Err(AppError::NotFound("message"));
        }
        Ok(entry)
    }

    /// Records the reads in SQL (the truth), then in the inbox store, whose counters move only for
    /// entries that were unread: so the read count moves once per receiver, however often apps retry.
    /// A notification with variants counts the read for the content the reader is shown now (by
    /// its groups; the default when its record cannot be read, as it is then rendered).
    async fn record_reads(&self, me: &ReceiverRef, ids: &[NotificationId]) -> AppResult<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.ports.notifications.record_reads(me, ids, self.clock.now()).await?;
        let notifications = self.catalog.get_many(ids).await?;
        // Looked up only when a notification read has variants.
        let with_variants = notifications.values().map(|n| &**n).filter(|n| !n.content.variants.is_empty());
        let reader = self.reader(me, with_variants).await;
        let groups = reader.as_ref().map(Receiver::groups).unwrap_or_default();
        let reads: Vec<Read> = ids
            .iter()
            .map(|id| Read {
                id: id.clone(),
                shown: notifications.get(id).and_then(|n| n.content.variant_shown(groups)),
            })
            .collect();
        let marked = self.ports.inbox.mark_read_shown(me, &reads).await?.len();
        if marked > 0 {
            // The unread count changed: the receiver's other devices should fetch it.
            self.hints.changed(me.kind, std::slice::from_ref(&me.id));
        }
        Ok(marked)
    }

    /// Records the archives (or their removal) in SQL (the truth), then in the inbox store, which
    /// answers what changed state: archiving twice changes nothing. The inbox store is written
    /// whatever SQL answered, so a retry finishes what an interrupted call began.
    async fn record_archives(&self, me: &ReceiverRef, ids: &[NotificationId], archived: bool) -> AppResult<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        if archived {
            self.ports.notifications.record_archives(me, ids, self.clock.now()).await?;
        } else {
            self.ports.notifications.remove_archives(me, ids).await?;
        }
        let changed = self.ports.inbox.set_archived(me, ids, archived).await?.len();
        if changed > 0 {
            // The list and the unread count changed: the receiver's other devices should fetch them.
            self.hints.changed(me.kind, std::slice::from_ref(&me.id));
        }
        Ok(changed)
    }
}
