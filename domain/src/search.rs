//! The search port: the console's search over every notification, served by a mirror of the SQL
//! truth (an Elasticsearch-compatible server, or an embedded index). The mirror is fed by position
//! from a durable change log kept in SQL, and remembers how far it applied it, so an outage of the
//! search backend delays the mirror and loses nothing; it can always be rebuilt from SQL, beside the
//! index in use, which keeps answering until the rebuilt one takes over.

use async_trait::async_trait;

use crate::InvalidInput;
use crate::listing::{ListCursor, NotificationFilter};
use crate::notification::{Notification, NotificationId};
use crate::ports::PortResult;
use crate::receiver::City;

/// One notification as the mirror holds it: its content and status, and how far its sends went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDocument {
    pub notification: Notification,
    /// Cities its sends reached, beside those its audience names (a selection of every city names
    /// none): the city filter matches either.
    pub cities_reached: Vec<City>,
    pub matched: u64,
    pub sent: u64,
    pub read: u64,
}

/// Where a page of hits ended, in the order the search used: by relevance then newest first when
/// the filter has text, else newest first. Without a score it is written as a `ListCursor`, so
/// the console's cursors stay valid when its list moves from SQL to the mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCursor {
    /// The last hit's relevance score, when the search ranked by one.
    pub score: Option<f32>,
    pub last: ListCursor,
}

impl SearchCursor {
    pub fn encode(&self) -> String {
        match self.score {
            Some(score) => format!("r{:08x}.{}", score.to_bits(), self.last.encode()),
            None => self.last.encode(),
        }
    }

    pub fn decode(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        let Some(ranked) = raw.strip_prefix('r') else {
            return Ok(Self { score: None, last: ListCursor::decode(field, raw)? });
        };
        let bad = || InvalidInput::new(field, "not a cursor this API returned");
        let (bits, last) = ranked.split_once('.').ok_or_else(bad)?;
        let score = f32::from_bits(u32::from_str_radix(bits, 16).map_err(|_| bad())?);
        if !score.is_finite() {
            return Err(bad());
        }
        Ok(Self { score: Some(score), last: ListCursor::decode(field, last)? })
    }
}

/// A page of hits.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHits {
    /// In the search's order; the console reads each notification's details from the truth.
    pub ids: Vec<NotificationId>,
    /// Every match, on every page.
    pub total: u64,
    /// Where the next page starts; `None` when nothing follows.
    pub next: Option<SearchCursor>,
}

/// The mirror every adapter keeps. Atomicity asked of an adapter: per call of `index` only (its
/// documents and the position it applies); a crash between calls repeats a batch, which is
/// harmless because writing a document replaces it whole. What `index` wrote, and the mirror a
/// `finish` made current, are what searches answer once the call returns.
#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// Writes `documents` (each replacing what the mirror held for that notification; of two for one
    /// notification in a batch, the later wins) as the changes
    /// of the change log up to `position`, and remembers `position` as applied. The remembered
    /// position never goes back; a batch at or below it writes nothing.
    async fn index(&self, position: u64, documents: &[SearchDocument]) -> PortResult<()>;
    /// The highest change-log position applied (0 for an empty mirror).
    async fn applied(&self) -> PortResult<u64>;
    /// Up to `limit` notifications matching every part of `filter`, after `after`: ranked by
    /// relevance then newest first when `filter.text` is set (every word of it found in the title or
    /// the body; a word of Chinese text matches as a word, never one of its characters alone; English
    /// case-insensitively), else newest first. A hit's relevance depends on the text and its own
    /// document only, never on what else the mirror holds, so a cursor stays exact while other
    /// documents are written (counts refreshed during a send re-index them all the time).
    async fn search(
        &self,
        filter: &NotificationFilter,
        after: Option<&SearchCursor>,
        limit: usize,
    ) -> PortResult<SearchHits>;
    /// Starts building a fresh mirror beside the one in use, which keeps answering meanwhile.
    async fn begin_rebuild(&self) -> PortResult<Box<dyn SearchRebuild>>;
    /// Whether the backend answers.
    async fn ping(&self) -> PortResult<()>;
}

/// A mirror being rebuilt from the truth.
#[async_trait]
pub trait SearchRebuild: Send {
    async fn add(&mut self, documents: &[SearchDocument]) -> PortResult<()>;
    /// Makes the rebuilt mirror the one searches use, as having applied the change log up to
    /// `position` — read before the rebuild began, so what changed during it is applied again
    /// after it (harmless: documents are replaced whole).
    async fn finish(self: Box<Self>, position: u64) -> PortResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_an_unranked_one_is_a_list_cursor() {
        let last = ListCursor { created_ms: 1_700_000_000_123, id: NotificationId::generate() };
        let ranked = SearchCursor { score: Some(3.25), last: last.clone() };
        assert_eq!(SearchCursor::decode("cursor", &ranked.encode()).unwrap(), ranked);
        let newest = SearchCursor { score: None, last: last.clone() };
        assert_eq!(newest.encode(), last.encode());
        assert_eq!(SearchCursor::decode("cursor", &last.encode()).unwrap(), newest);
        let nan = format!("r{:08x}.{}", f32::NAN.to_bits(), last.encode());
        for bad in ["r", "rzz.1.x", &nan, "r40500000", "12"] {
            assert_eq!(SearchCursor::decode("cursor", bad).unwrap_err().field, "cursor", "{bad}");
        }
    }
}
