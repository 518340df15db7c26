//! Herald's domain: the types a notification, an audience and an inbox are made of, parsed once at the
//! edge so that nothing further in can hold a bad value, and the ports (traits) every adapter implements.
//!
//! This crate knows no SQL, no Redis, no HTTP and no async runtime.

pub mod audience;
pub mod completion;
pub mod content;
pub mod history;
pub mod inbox;
pub mod listing;
pub mod locale;
pub mod notification;
pub mod page;
pub mod plan;
pub mod ports;
pub mod preferences;
pub mod receiver;
pub mod search;
pub mod template;
mod text;
pub mod variant;

pub use audience::{Audience, Selection};
pub use content::{Action, ActionKind, Actions, AppSchemes, ImageUrl};
pub use history::HistoryEvent;
pub use inbox::{DEFAULT_INBOX_CAP, EntryMeta, InboxCap, InboxCursor, InboxEntry, InboxItem, SyncCursor};
pub use locale::{Locale, Locales, LocalizedText};
pub use notification::{
    ActionLabel, Body, Category, HistoryEntry, NewNotification, Notification, NotificationId, Status, Title,
    ValidityWindow,
};
pub use page::{PAGE_FORMAT, PAGE_SIZE, Page, PageDecodeError, PageKey, Topic};
pub use preferences::Preferences;
pub use receiver::{AttributeName, Attributes, City, Group, Receiver, ReceiverId, ReceiverKind, ReceiverRef};
pub use text::MAX_IDENT_LEN;
pub use variant::{Shown, ShownVariant, Variant, Variants, Viewer};

/// A value that failed to parse, with the path of the field at fault (`audience.cities[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct InvalidInput {
    pub field: String,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error, seen from one level up (`cities[2]` inside `audience` → `audience.cities[2]`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}
