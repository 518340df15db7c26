//! What one receiver sees: its inbox entries joined with their notifications, in the order the
//! contract gives (pinned unread first, then newest), and the cursors the apps page with.

use std::cmp::Reverse;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::InvalidInput;
use crate::notification::{Notification, NotificationId};

/// One message in one inbox, as the inbox store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub notification_id: NotificationId,
    /// Rises on every change to this entry (arrival, read): what incremental sync pages by.
    pub version: u64,
    pub read: bool,
}

/// An entry with its notification.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub notification: Arc<Notification>,
    pub read: bool,
    pub version: u64,
}

impl InboxItem {
    fn sort_key(&self) -> InboxCursor {
        InboxCursor {
            pinned_unread: self.notification.content.pinned && !self.read,
            sent_at_ms: self.notification.sent_at.map_or(0, |t| t.timestamp_millis()),
            id: self.notification.id.clone(),
        }
    }
}

/// Position in the inbox list: the sort key of the last item returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor {
    pinned_unread: bool,
    sent_at_ms: i64,
    id: NotificationId,
}

impl InboxCursor {
    /// Pinned-unread first, then newest first, then by id so the order is total.
    fn order(&self) -> (Reverse<bool>, Reverse<i64>, Reverse<&NotificationId>) {
        (Reverse(self.pinned_unread), Reverse(self.sent_at_ms), Reverse(&self.id))
    }

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

/// One receiver's visible inbox at one instant, sorted.
pub struct InboxView {
    items: Vec<InboxItem>,
}

impl InboxView {
    /// Keeps only what is visible at `now` (inside its window, not revoked) and sorts it.
    pub fn new(items: impl IntoIterator<Item = InboxItem>, now: DateTime<Utc>) -> Self {
        let mut items: Vec<_> = items.into_iter().filter(|i| i.notification.visible_at(now)).collect();
        items.sort_by(|a, b| a.sort_key().order().cmp(&b.sort_key().order()));
        Self { items }
    }

    /// Up to `limit` items after `cursor`, and the cursor of the next page when there is one.
    pub fn page(&self, after: Option<&InboxCursor>, limit: usize) -> (&[InboxItem], Option<InboxCursor>) {
        let start = after.map_or(0, |c| self.items.partition_point(|i| i.sort_key().order() <= c.order()));
        let end = (start + limit).min(self.items.len());
        let page = &self.items[start..end];
        let next = (end < self.items.len()).then(|| page.last().map(InboxItem::sort_key)).flatten();
        (page, next)
    }

    /// The visible message with this id, if the inbox holds one.
    pub fn get(&self, id: &NotificationId) -> Option<&InboxItem> {
        self.items.iter().find(|i| i.notification.id == *id)
    }

    pub fn unread(&self) -> impl Iterator<Item = &InboxItem> {
        self.items.iter().filter(|i| !i.read)
    }

    /// Unread messages the app must show before anything else.
    pub fn force_read_pending(&self) -> impl Iterator<Item = &InboxItem> {
        self.unread().filter(|i| i.notification.content.force_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::Audience;
    use crate::notification::*;
    use crate::receiver::ReceiverKind;
    use chrono::{Duration, TimeZone};

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
            },
            status: Status::Sent,
            created_at: sent,
            sent_at: Some(sent),
            revoked_at: None,
        })
    }

    fn item(n: &Arc<Notification>, read: bool) -> InboxItem {
        InboxItem { notification: n.clone(), read, version: 1 }
    }

    #[test]
    fn pinned_unread_first_then_newest_and_pages_without_gaps() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let old_pinned = notification(1, true, None);
        let new_plain = notification(5, false, None);
        let mid_plain = notification(3, false, None);
        let read_pinned = notification(9, true, None);
        let expired = notification(7, false, Some(now - Duration::hours(1)));
        let view = InboxView::new(
            [
                item(&mid_plain, false),
                item(&old_pinned, false),
                item(&new_plain, true),
                item(&read_pinned, true),
                item(&expired, false),
            ],
            now,
        );
        let (first, next) = view.page(None, 2);
        let ids: Vec<_> = first.iter().map(|i| i.notification.id.clone()).collect();
        assert_eq!(ids, vec![old_pinned.id.clone(), read_pinned.id.clone()]);
        let cursor = InboxCursor::decode("cursor", &next.unwrap().encode()).unwrap();
        let (rest, next) = view.page(Some(&cursor), 10);
        let ids: Vec<_> = rest.iter().map(|i| i.notification.id.clone()).collect();
        assert_eq!(ids, vec![new_plain.id.clone(), mid_plain.id.clone()]);
        assert!(next.is_none());
        assert_eq!(view.unread().count(), 2);
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
