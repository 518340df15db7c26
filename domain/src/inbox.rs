//! What one receiver sees: its inbox entries in the order the contract gives (pinned unread first,
//! then newest), what the inbox store keeps of each notification to answer that order and the
//! validity window without loading notifications, the cap that bounds an inbox, and the cursors
//! the apps page with.

use std::sync::Arc;

use crate::InvalidInput;
use crate::content::{Actions, ImageUrl};
use crate::locale::Locale;
use crate::notification::{Category, Notification, NotificationId};
use crate::template::{self, Fields};
use crate::variant::{Variant, Viewer};

/// Entries one inbox keeps by default (see [`InboxCap`]).
pub const DEFAULT_INBOX_CAP: usize = 1_000;

/// The most entries an inbox keeps. When a delivery finds an inbox past it (a store may look at each
/// inbox only every so many deliveries, letting it pass the cap by a bounded slack), the inbox store
/// drops entries until a tenth of the cap is free again (so it trims once per many deliveries, not
/// on each), in this order:
/// 1. entries that can never be shown again: their window closed, or their notification was revoked;
/// 2. read entries that are not pinned, oldest (`sent_at`) first;
/// 3. unread entries that are neither pinned nor force-read, oldest first.
///
/// Pinned entries and unread force-read entries are never dropped while they can still be shown:
/// an inbox exceeds the cap rather than lose one. A message dropped from an inbox stays sent (the
/// counters do not move) and is never added to that inbox again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCap(usize);

impl InboxCap {
    /// A cap below 10 would trim on nearly every delivery.
    pub const MIN: usize = 10;

    pub fn new(field: &str, cap: usize) -> Result<Self, InvalidInput> {
        if cap < Self::MIN {
            return Err(InvalidInput::new(field, format!("an inbox cap is at least {}", Self::MIN)));
        }
        Ok(Self(cap))
    }

    pub fn get(self) -> usize {
        self.0
    }

    /// Entries an inbox holds after it was trimmed: nine tenths of the cap.
    pub fn after_trim(self) -> usize {
        self.0 - self.0 / 10
    }
}

impl std::fmt::Display for InboxCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Default for InboxCap {
    fn default() -> Self {
        Self(DEFAULT_INBOX_CAP)
    }
}

/// What an inbox store keeps of a notification to order and filter its entries by itself. Fixed
/// for the notification's life (its content, window and `sent_at` never change once it is
/// sending), so every page of it, late ones included, carries the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// The tab it is listed and counted under.
    pub category: Category,
    pub pinned: bool,
    pub force_read: bool,
    /// When sending began, in Unix milliseconds: the list's "newest first".
    pub sent_at_ms: i64,
    /// The validity window, in Unix milliseconds: shown from `valid_from_ms` (inclusive) to
    /// `valid_until_ms` (exclusive); `None` is open.
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
}

impl EntryMeta {
    pub fn of(n: &Notification) -> Self {
        Self {
            category: n.content.category,
            pinned: n.content.pinned,
            force_read: n.content.force_read,
            sent_at_ms: n.sent_at.map_or(0, |t| t.timestamp_millis()),
            valid_from_ms: n.content.validity.from().map(|t| t.timestamp_millis()),
            valid_until_ms: n.content.validity.until().map(|t| t.timestamp_millis()),
        }
    }

    /// Where an entry of this notification stands in the list, read or not.
    pub fn position(&self, id: &NotificationId, read: bool) -> InboxCursor {
        InboxCursor { pinned_unread: self.pinned && !read, sent_at_ms: self.sent_at_ms, id: id.clone() }
    }
}

/// One message in one inbox, as the inbox store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub notification_id: NotificationId,
    /// Rises on every change to this entry (arrival, read, archive): what incremental sync pages by.
    pub version: u64,
    pub read: bool,
    pub force_read: bool,
    pub category: Category,
    /// Archived by its receiver: held (sync reports it) but neither listed nor counted.
    pub archived: bool,
    /// Its place in the list: what a cursor after it is.
    pub position: InboxCursor,
}

/// An entry with its notification, and what this inbox's receiver is shown of it: the variant of
/// its groups and the translation of its locale (`crate::variant`), placeholders filled in
/// (`crate::template`).
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub notification: Arc<Notification>,
    pub read: bool,
    /// Archived by its receiver (only sync reports such an entry).
    pub archived: bool,
    pub version: u64,
    pub title: String,
    pub body: String,
    /// The variant shown (its place in the notification's variants); `None` for the default.
    pub variant: Option<usize>,
    /// The translation shown; `None` for the untranslated text.
    pub locale: Option<Locale>,
}

impl InboxItem {
    /// The item of `entry` for the receiver `fields` and `viewer` describe: the notification
    /// shared, only its texts rendered.
    pub fn new(notification: Arc<Notification>, entry: &InboxEntry, fields: &Fields<'_>, viewer: Viewer<'_>) -> Self {
        let shown = notification.content.shown_to(viewer);
        let title = template::render(shown.title.as_str(), fields).into_owned();
        let body = template::render(shown.body.as_str(), fields).into_owned();
        let (variant, locale) = (shown.variant, shown.locale.cloned());
        Self {
            read: entry.read,
            archived: entry.archived,
            version: entry.version,
            title,
            body,
            variant,
            locale,
            notification,
        }
    }

    /// The image of the content shown.
    pub fn image(&self) -> Option<&ImageUrl> {
        match self.shown_variant() {
            Some(v) => v.image.as_ref(),
            None => self.notification.content.image.as_ref(),
        }
    }

    /// The buttons of the content shown.
    pub fn actions(&self) -> &Actions {
        match self.shown_variant() {
            Some(v) => &v.actions,
            None => &self.notification.content.actions,
        }
    }

    fn shown_variant(&self) -> Option<&Variant> {
        self.variant.and_then(|i| self.notification.content.variants.as_slice().get(i))
    }
}

/// Position in the inbox list: the sort key of the last item returned. The list runs
/// pinned-unread first, then newest (`sent_at`) first, then by id descending so the order is total.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InboxCursor {
    pub pinned_unread: bool,
    pub sent_at_ms: i64,
    pub id: NotificationId,
}

impl InboxCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", u8::from(self.pinned_unread), self.sent_at_ms, self.id)
    }

    pub fn decode(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput::new(field, "not a cursor this API returned");
        let mut parts = raw.splitn(3, '.');
        let (Some(p), Some(t), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(Self {
            pinned_unread: match p {
                "0" => false,
                "1" => true,
                _ => return Err(bad()),
            },
            sent_at_ms: t.parse().map_err(|_| bad())?,
            id: NotificationId::parse(field, id).map_err(|_| bad())?,
        })
    }
}

/// The incremental-sync position: the last entry version and the last revocation seen, and when
/// the sync happened (a message whose validity window opened since then is news too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncCursor {
    pub version: u64,
    pub revocation: u64,
    pub at_ms: i64,
}

impl SyncCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.version, self.revocation, self.at_ms)
    }

    /// Every part must be one this API could have made: versions and log positions fit a signed
    /// 64-bit column (a larger one would wrap in a store and replay the inbox for ever), and the time
    /// lies between the epoch and the year 9999.
    pub fn decode(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let bad = || InvalidInput::new(field, "not a cursor this API returned");
        let mut parts = raw.split('.');
        let mut next = |max: u64| {
            let part = parts.next().ok_or_else(bad)?;
            part.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(bad)
        };
        let cursor = Self {
            version: next(i64::MAX as u64)?,
            revocation: next(i64::MAX as u64)?,
            at_ms: next(MAX_MS as u64)? as i64,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::Audience;
    use crate::notification::*;
    use crate::receiver::ReceiverKind;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn notification(minute: u32, pinned: bool, until: Option<DateTime<Utc>>) -> Arc<Notification> {
        let sent = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        Arc::new(Notification {
            id: NotificationId::generate(),
            content: NewNotification {
                title: Title::parse("", "t").unwrap(),
                body: Body::parse("", "b").unwrap(),
                category: Category::System,
                receiver_kind: ReceiverKind::Rider,
                audience: serde_json::from_str::<Audience>(r#"{"all":true}"#).unwrap(),
                pinned,
                force_read: false,
                validity: ValidityWindow::new(None, until).unwrap(),
                send_at: None,
                draft: false,
                image: None,
                actions: Default::default(),
                locales: Default::default(),
                variants: Default::default(),
            },
            status: Status::Sent,
            created_at: sent,
            sent_at: Some(sent),
            revoked_at: None,
        })
    }

    #[test]
    fn positions_order_pinned_unread_first_then_newest() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let old_pinned = notification(1, true, None);
        let new_plain = notification(5, false, Some(now + Duration::hours(1)));
        let read_pinned = notification(9, true, None);
        let mut positions = [
            EntryMeta::of(&new_plain).position(&new_plain.id, false),
            EntryMeta::of(&read_pinned).position(&read_pinned.id, true),
            EntryMeta::of(&old_pinned).position(&old_pinned.id, false),
        ];
        positions.sort_by(|a, b| b.cmp(a));
        let ids: Vec<_> = positions.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids, vec![old_pinned.id.clone(), read_pinned.id.clone(), new_plain.id.clone()]);
        let meta = EntryMeta::of(&new_plain);
        assert_eq!(meta.valid_until_ms, Some((now + Duration::hours(1)).timestamp_millis()));
        assert_eq!(meta.valid_from_ms, None);
        let cursor = InboxCursor::decode("cursor", &positions[1].encode()).unwrap();
        assert_eq!(cursor, positions[1]);
    }

    #[test]
    fn a_cap_trims_to_nine_tenths_and_is_not_tiny() {
        assert_eq!(InboxCap::default().get(), DEFAULT_INBOX_CAP);
        assert_eq!(InboxCap::new("cap", 1_000).unwrap().after_trim(), 900);
        assert!(InboxCap::new("cap", 9).is_err());
    }

    #[test]
    fn cursors_reject_garbage() {
        assert!(InboxCursor::decode("cursor", "x").is_err());
        assert!(SyncCursor::decode("since", "1").is_err());
        assert!(SyncCursor::decode("since", "1.2.3.4").is_err());
        assert!(SyncCursor::decode("since", "18446744073709551615.0.1").is_err(), "beyond i64 would wrap");
        assert!(SyncCursor::decode("since", "9223372036854775807.9223372036854775807.0").is_ok());
        assert!(SyncCursor::decode("since", "0.0.-1").is_err());
        let c = SyncCursor { version: 4, revocation: 2, at_ms: 1_700_000_000_000 };
        assert_eq!(SyncCursor::decode("since", &c.encode()).unwrap(), c);
    }
}
