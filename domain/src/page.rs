//! A page: up to 500 receivers of one (notification, city), the unit the queue carries.

use serde::{Deserialize, Serialize};

use crate::notification::NotificationId;
use crate::ports::QueueMessage;
use crate::receiver::{City, ReceiverId, ReceiverKind};

/// Receivers per page: big enough to amortise a round trip, small enough that a page is one quick,
/// bounded write and a redelivery repeats little.
pub const PAGE_SIZE: usize = 500;

/// Broadcast pages and point-to-point pages travel apart, so a nationwide push never delays a
/// message meant for one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    Bulk,
    Direct,
}

impl Topic {
    /// Every topic, in the order it is served: point-to-point before broadcast, at every hop
    /// (outbox relay, queue, consumer).
    pub const ALL: [Topic; 2] = [Topic::Direct, Topic::Bulk];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Bulk => "herald_bulk",
            Topic::Direct => "herald_direct",
        }
    }
}

/// Identifies a page everywhere: the queue message key, the delivered-page ledger, the logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PageKey {
    pub notification_id: NotificationId,
    pub city: City,
    pub page_no: u32,
}

impl std::fmt::Display for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.notification_id, self.city, self.page_no)
    }
}

/// The queue payload: which notification, to whom. The notification itself stays in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub key: PageKey,
    pub receiver_kind: ReceiverKind,
    pub receivers: Vec<ReceiverId>,
}

impl Page {
    /// The queue message carrying this page on `topic`: tagged with the receiver kind, keyed by the
    /// page key.
    pub fn to_message(&self, topic: Topic) -> Result<QueueMessage, serde_json::Error> {
        Ok(QueueMessage {
            topic: topic.name().to_string(),
            tag: self.receiver_kind.as_str().to_string(),
            key: self.key.to_string(),
            body: serde_json::to_vec(self)?,
        })
    }
}
