//! Listing notifications for the console: filters and the keyset cursor (newest first).

use chrono::{DateTime, Utc};

use crate::InvalidInput;
use crate::notification::{Category, NotificationId, Status};
use crate::receiver::{City, ReceiverKind};

/// Longest free-text query accepted.
pub const MAX_QUERY_CHARS: usize = 100;

/// What the console filters by; every field optional, all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Words every one of which the title or the body holds (Chinese words as words), as the
    /// search mirror matches them.
    pub text: Option<String>,
    /// Notifications whose audience names the city or that were sent to receivers there.
    pub city: Option<City>,
    pub status: Option<Status>,
    pub category: Option<Category>,
    pub receiver_kind: Option<ReceiverKind>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

impl NotificationFilter {
    pub fn parse_text(field: &str, raw: &str) -> Result<Option<String>, InvalidInput> {
        let text = raw.trim();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(InvalidInput::new(field, format!("must be at most {MAX_QUERY_CHARS} characters")));
        }
        Ok((!text.is_empty()).then(|| text.to_string()))
    }
}

/// Position in the newest-first list: the last notification returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub created_ms: i64,
    pub id: NotificationId,
}

impl ListCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_ms, self.id)
    }

    pub fn decode(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput::new(field, "not a cursor this API returned");
        let (ms, id) = raw.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            created_ms: ms.parse().map_err(|_| bad())?,
            id: NotificationId::parse(field, id).map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_text_is_bounded() {
        let c = ListCursor { created_ms: 1_700_000_000_123, id: NotificationId::generate() };
        assert_eq!(ListCursor::decode("cursor", &c.encode()).unwrap(), c);
        assert!(ListCursor::decode("cursor", "12").is_err());
        assert_eq!(NotificationFilter::parse_text("q", "  ").unwrap(), None);
        assert_eq!(NotificationFilter::parse_text("q", " 维护 ").unwrap().as_deref(), Some("维护"));
        assert!(NotificationFilter::parse_text("q", &"x".repeat(101)).is_err());
    }
}
