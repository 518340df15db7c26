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

/// The queue payload: which notification, to whom. The notification itself stays in SQL. It has
/// one wire format, written by `to_message` and read by `decode`, nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub key: PageKey,
    pub receiver_kind: ReceiverKind,
    pub receivers: Vec<ReceiverId>,
}

/// The version of the page wire format `to_message` writes.
pub const PAGE_FORMAT: u32 = 1;

/// A page on the wire, version 1: JSON `{"v": 1, "key": {"notification_id", "city", "page_no"},
/// "receiver_kind", "receivers": [...]}`. A page from before the version field (no `v`) is version 1.
/// A new version gets its own variant of `decode`, so pages already in a queue stay readable.
#[derive(Serialize)]
struct WireOut<'a> {
    v: u32,
    key: &'a PageKey,
    receiver_kind: ReceiverKind,
    receivers: &'a [ReceiverId],
}

#[derive(Deserialize)]
struct WireIn {
    #[serde(default = "first_format")]
    v: u32,
    key: PageKey,
    receiver_kind: ReceiverKind,
    receivers: Vec<ReceiverId>,
}

fn first_format() -> u32 {
    1
}

/// A queue message body that is not a page this version of Herald can read.
#[derive(Debug, thiserror::Error)]
pub enum PageDecodeError {
    #[error("the page does not parse: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the page is in wire format {0}, which this version does not know (it writes {PAGE_FORMAT})")]
    UnknownFormat(u32),
}

impl Page {
    /// The queue message carrying this page on `topic`: tagged with the receiver kind, keyed by the
    /// page key, the body in the current wire format.
    pub fn to_message(&self, topic: Topic) -> Result<QueueMessage, serde_json::Error> {
        let wire =
            WireOut { v: PAGE_FORMAT, key: &self.key, receiver_kind: self.receiver_kind, receivers: &self.receivers };
        Ok(QueueMessage {
            topic: topic.name().to_string(),
            tag: self.receiver_kind.as_str().to_string(),
            key: self.key.to_string(),
            body: serde_json::to_vec(&wire)?,
        })
    }

    /// The page a queue message body carries.
    pub fn decode(body: &[u8]) -> Result<Page, PageDecodeError> {
        let wire: WireIn = serde_json::from_slice(body)?;
        match wire.v {
            1 => Ok(Page { key: wire.key, receiver_kind: wire.receiver_kind, receivers: wire.receivers }),
            other => Err(PageDecodeError::UnknownFormat(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Page {
        Page {
            key: PageKey {
                notification_id: NotificationId::generate(),
                city: City::parse("city", "bj").unwrap(),
                page_no: 7,
            },
            receiver_kind: ReceiverKind::Merchant,
            receivers: ["m1", "m2"].iter().map(|id| ReceiverId::parse("id", id).unwrap()).collect(),
        }
    }

    #[test]
    fn a_page_travels_intact_in_the_current_format() {
        let page = page();
        let message = page.to_message(Topic::Direct).unwrap();
        assert_eq!((message.topic.as_str(), message.tag.as_str()), ("herald_direct", "merchant"));
        assert_eq!(message.key, page.key.to_string());
        let body: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body["v"], PAGE_FORMAT);
        assert_eq!(Page::decode(&message.body).unwrap(), page);
    }

    #[test]
    fn a_page_without_a_version_is_the_first_format() {
        let page = page();
        let body = serde_json::json!({
            "key": {"notification_id": page.key.notification_id.as_str(), "city": "bj", "page_no": 7},
            "receiver_kind": "merchant",
            "receivers": ["m1", "m2"],
        });
        assert_eq!(Page::decode(body.to_string().as_bytes()).unwrap(), page);
    }

    #[test]
    fn an_unknown_format_or_a_malformed_body_is_refused() {
        let mut body: serde_json::Value =
            serde_json::from_slice(&page().to_message(Topic::Bulk).unwrap().body).unwrap();
        body["v"] = 2.into();
        let err = Page::decode(body.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, PageDecodeError::UnknownFormat(2)), "{err}");
        let err = Page::decode(b"not a page").unwrap_err();
        assert!(matches!(err, PageDecodeError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("does not parse"), "{err}");
    }
}
