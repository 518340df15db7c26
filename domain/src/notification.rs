//! A notification: what operations write, and where it is in its life.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::audience::Audience;
use crate::content::{Actions, ImageUrl};
use crate::locale::Locales;
use crate::receiver::ReceiverKind;
use crate::variant::Variants;

/// Time-ordered (UUID v7), so ids sort by creation and index well.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationId(String);

impl NotificationId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    /// Accepts only the 32 lowercase hex digits `generate` makes, so a path segment is never trusted.
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        if raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(raw.to_string()))
        } else {
            Err(InvalidInput::new(field, "not a notification id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NotificationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters that change how the text around them is shown without being seen themselves: bidi
/// embeddings, overrides and isolates (which can make `gpj.exe` read as `exe.jpg`).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that take no room on screen: whitespace and the zero-width ones.
fn is_invisible(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}')
}

/// The rule every operator-written text follows: something visible, no control characters (C0, DEL,
/// C1) and no bidi controls — they would garble the console and the apps, or disguise the text.
/// `multiline` texts may hold line breaks and tabs.
fn check_text(field: &str, raw: &str, multiline: bool) -> Result<(), InvalidInput> {
    if let Some(bad) = raw.chars().find(|&c| {
        let allowed_break = multiline && matches!(c, '\n' | '\r' | '\t');
        (c.is_control() && !allowed_break) || is_bidi_control(c)
    }) {
        return Err(InvalidInput::new(field, format!("must not contain the control character U+{:04X}", bad as u32)));
    }
    if raw.chars().all(is_invisible) {
        return Err(InvalidInput::new(field, "must not be empty (it has no visible character)"));
    }
    Ok(())
}

/// Declares a bounded text type with something visible in it that parses on deserialization.
macro_rules! bounded_text {
    ($(#[$meta:meta])* $name:ident, $max:expr, multiline: $multiline:expr, templated: $templated:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
                check_text(field, raw, $multiline)?;
                if $templated {
                    crate::template::check(field, raw)?;
                }
                if raw.chars().count() > Self::MAX_CHARS {
                    return Err(InvalidInput::new(
                        field,
                        format!("must be at most {} characters", Self::MAX_CHARS),
                    ));
                }
                Ok(Self(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse("", &raw).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

bounded_text!(
    /// A notification's title, as the inbox list shows it: one line, with placeholders
    /// (`crate::template`) filled in per receiver.
    Title,
    200,
    multiline: false,
    templated: true
);
bounded_text!(
    /// A notification's text: plain text (never markup: apps and the console show it as text), line
    /// breaks and tabs allowed, with placeholders (`crate::template`) filled in per receiver.
    Body,
    10_000,
    multiline: true,
    templated: true
);
bounded_text!(
    /// An action button's label: one short line.
    ActionLabel,
    40,
    multiline: false,
    templated: false
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    System,
    Activity,
    Announcement,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::System, Category::Activity, Category::Announcement];

    /// Its place in `ALL`: a slot per category in counts, a small code in stores.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::System => "system",
            Category::Activity => "activity",
            Category::Announcement => "announcement",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        serde_json::from_value(serde_json::Value::String(raw.to_string()))
            .map_err(|_| InvalidInput::new(field, format!("unknown category {raw:?}")))
    }
}

/// Herald keeps times to the millisecond; finer digits are dropped where a time is parsed.
pub fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// When a notification may be shown. An open end is permanent; an end never precedes the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValidityWindow {
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl ValidityWindow {
    pub fn new(from: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Self, InvalidInput> {
        let (from, until) = (from.map(to_millis), until.map(to_millis));
        if let (Some(f), Some(u)) = (from, until)
            && u <= f
        {
            return Err(InvalidInput::new("valid_until", "must be later than valid_from"));
        }
        Ok(Self { from, until })
    }

    pub fn from(&self) -> Option<DateTime<Utc>> {
        self.from
    }

    pub fn until(&self) -> Option<DateTime<Utc>> {
        self.until
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f <= at) && self.until.is_none_or(|u| at < u)
    }
}

/// Where a notification is in its life. The only moves are those `Status::allowed_from` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Scheduled,
    Sending,
    Sent,
    Cancelled,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Draft, Status::Scheduled, Status::Sending, Status::Sent, Status::Cancelled, Status::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Scheduled => "scheduled",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Cancelled => "cancelled",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| InvalidInput::new(field, format!("unknown status {raw:?}")))
    }

    /// The statuses from which a move to `self` is allowed.
    pub fn allowed_from(self) -> &'static [Status] {
        match self {
            Status::Draft => &[],
            Status::Scheduled => &[Status::Draft],
            Status::Sending => &[Status::Scheduled],
            Status::Sent => &[Status::Sending],
            Status::Cancelled => &[Status::Draft, Status::Scheduled],
            Status::Revoked => &[Status::Sending, Status::Sent],
        }
    }
}

/// What operations submit, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub title: Title,
    pub body: Body,
    pub category: Category,
    pub receiver_kind: ReceiverKind,
    pub audience: Audience,
    pub pinned: bool,
    pub force_read: bool,
    pub validity: ValidityWindow,
    /// `None` sends now.
    pub send_at: Option<DateTime<Utc>>,
    pub draft: bool,
    /// An image the apps show with it.
    pub image: Option<ImageUrl>,
    /// Up to two buttons.
    pub actions: Actions,
    /// Title and body per locale (`crate::locale`).
    pub locales: Locales,
    /// Content per user group, tried in order (`crate::variant`).
    pub variants: Variants,
}

impl NewNotification {
    /// Refuses a notification nobody could ever see: one already expired, or one sent no earlier
    /// than it expires.
    pub fn check_visible_some_time(&self, now: DateTime<Utc>) -> Result<(), InvalidInput> {
        let Some(until) = self.validity.until() else { return Ok(()) };
        if until <= now {
            return Err(InvalidInput::new("valid_until", "is already past: nobody would ever see it"));
        }
        if self.send_at.is_some_and(|at| at >= until) {
            return Err(InvalidInput::new("send_at", "must be before valid_until"));
        }
        Ok(())
    }

    /// The status a new notification starts in.
    pub fn initial_status(&self) -> Status {
        if self.draft { Status::Draft } else { Status::Scheduled }
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: NotificationId,
    pub content: NewNotification,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    /// When sending began: the time an inbox shows.
    pub sent_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// When it was due to send: its `send_at` (not before it was created), or its creation when it
    /// sends at once. `None` for a draft sent without a `send_at`: the time it was released is not
    /// kept, so nothing can be measured from it.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.content.send_at {
            Some(at) => Some(at.max(self.created_at)),
            None if !self.content.draft => Some(self.created_at),
            None => None,
        }
    }

    /// Whether an inbox shows it at `now`.
    pub fn visible_at(&self, now: DateTime<Utc>) -> bool {
        self.status != Status::Revoked && self.content.validity.contains(now)
    }
}

/// One step of a notification's status flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub status: Status,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_category_index_is_its_place_in_all() {
        for (i, category) in Category::ALL.into_iter().enumerate() {
            assert_eq!(category.index(), i);
        }
    }

    #[test]
    fn validity_window_rejects_inverted_and_contains_half_open() {
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        assert_eq!(ValidityWindow::new(Some(t(2)), Some(t(1))).unwrap_err().field, "valid_until");
        let w = ValidityWindow::new(Some(t(1)), Some(t(3))).unwrap();
        assert!(!w.contains(t(0)) && w.contains(t(1)) && w.contains(t(2)) && !w.contains(t(3)));
        assert!(ValidityWindow::new(None, None).unwrap().contains(t(23)));
    }

    #[test]
    fn a_notification_nobody_could_see_is_refused() {
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        let mut n = NewNotification {
            title: Title::parse("", "t").unwrap(),
            body: Body::parse("", "b").unwrap(),
            category: Category::System,
            receiver_kind: ReceiverKind::Rider,
            audience: serde_json::from_str(r#"{"all": true}"#).unwrap(),
            pinned: false,
            force_read: false,
            validity: ValidityWindow::new(None, Some(t(10))).unwrap(),
            send_at: Some(t(9)),
            draft: false,
            image: None,
            actions: Actions::default(),
            locales: Default::default(),
            variants: Default::default(),
        };
        assert!(n.check_visible_some_time(t(8)).is_ok());
        assert_eq!(n.check_visible_some_time(t(10)).unwrap_err().field, "valid_until");
        n.send_at = Some(t(10));
        assert_eq!(n.check_visible_some_time(t(8)).unwrap_err().field, "send_at");
        n.validity = ValidityWindow::new(None, None).unwrap();
        assert!(n.check_visible_some_time(t(23)).is_ok(), "a permanent one is always fine");
    }

    #[test]
    fn due_at_is_send_at_or_creation_and_unknown_for_a_released_draft() {
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        let n = |send_at, draft| Notification {
            id: NotificationId::generate(),
            content: NewNotification {
                title: Title::parse("", "t").unwrap(),
                body: Body::parse("", "b").unwrap(),
                category: Category::System,
                receiver_kind: ReceiverKind::Rider,
                audience: serde_json::from_str(r#"{"all": true}"#).unwrap(),
                pinned: false,
                force_read: false,
                validity: ValidityWindow::new(None, None).unwrap(),
                send_at,
                draft,
                image: None,
                actions: Default::default(),
                locales: Default::default(),
                variants: Default::default(),
            },
            status: Status::Sending,
            created_at: t(5),
            sent_at: Some(t(9)),
            revoked_at: None,
        };
        assert_eq!(n(Some(t(8)), false).due_at(), Some(t(8)));
        assert_eq!(n(Some(t(8)), true).due_at(), Some(t(8)), "a draft with a time is due then");
        assert_eq!(n(Some(t(1)), false).due_at(), Some(t(5)), "never before it was created");
        assert_eq!(n(None, false).due_at(), Some(t(5)));
        assert_eq!(n(None, true).due_at(), None);
    }

    #[test]
    fn texts_refuse_controls_and_invisible_content() {
        for bad in ["a\u{0}b", "\u{1b}[31mred", "x\u{7f}", "x\u{9b}y", "pay \u{202e}gpj.exe", "a\u{2068}b", "a\nb"] {
            assert_eq!(Title::parse("title", bad).unwrap_err().field, "title", "{bad:?}");
        }
        for invisible in ["\u{200b}", "\u{200b} \u{feff}\u{2060}", "   "] {
            let e = Title::parse("title", invisible).unwrap_err();
            assert!(e.message.contains("empty"), "{invisible:?}: {e}");
        }
        assert!(Body::parse("body", "第一行\n\t第二行\r\n👋 ok").is_ok(), "line breaks and tabs in a body");
        assert!(Body::parse("body", "\n\u{200d}\t").is_err(), "a body needs something visible");
        assert!(Body::parse("body", "bell\u{7}").is_err());
        assert!(Title::parse("title", "维护 ‍ 通知 👨‍👩‍👧").is_ok(), "a joiner inside visible text is fine");
    }

    #[test]
    fn text_bounds() {
        assert!(Title::parse("title", " ").is_err());
        assert!(Title::parse("title", &"字".repeat(200)).is_ok());
        assert!(Title::parse("title", &"字".repeat(201)).is_err());
    }

    #[test]
    fn ids_are_parsed_strictly() {
        let id = NotificationId::generate();
        assert_eq!(NotificationId::parse("id", id.as_str()).unwrap(), id);
        assert!(NotificationId::parse("id", "../etc").is_err());
    }

    #[test]
    fn only_lawful_moves() {
        assert!(Status::Cancelled.allowed_from().contains(&Status::Scheduled));
        assert!(!Status::Cancelled.allowed_from().contains(&Status::Sent));
        assert!(!Status::Revoked.allowed_from().contains(&Status::Draft));
    }
}
