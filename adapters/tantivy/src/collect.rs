//! A page of hits in the search's order — (score, created, id), greatest first — strictly after a
//! cursor (search_after), with the count of every match. The sort keys are read from fast fields,
//! so a page costs the matches it counts and nothing per hit beyond them.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, ColumnIndex};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use crate::fields;

/// Where a hit stands in the search's order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    /// 0 when the search ranks by none.
    pub score: Score,
    pub created_ms: i64,
    pub id: u128,
}

impl Eq for Key {}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(self.created_ms.cmp(&other.created_ms)).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The greatest `limit + 1` keys below `after` (one more than a page, to tell whether one follows).
pub struct Page {
    pub ranked: bool,
    pub after: Option<Key>,
    pub limit: usize,
}

/// Every match counted, and the page's keys, greatest first.
pub struct Found {
    pub total: u64,
    pub keys: Vec<Key>,
}

pub struct SegmentPage {
    ranked: bool,
    after: Option<Key>,
    keep: usize,
    created: Column<i64>,
    id_hi: Column<u64>,
    id_lo: Column<u64>,
    total: u64,
    best: BinaryHeap<Reverse<Key>>,
}

impl Collector for Page {
    type Fruit = Found;
    type Child = SegmentPage;

    fn for_segment(&self, _: SegmentOrdinal, segment: &SegmentReader) -> tantivy::Result<SegmentPage> {
        let fast = segment.fast_fields();
        Ok(SegmentPage {
            ranked: self.ranked,
            after: self.after,
            keep: self.limit + 1,
            created: fast.i64(fields::CREATED)?,
            id_hi: fast.u64(fields::ID_HI)?,
            id_lo: fast.u64(fields::ID_LO)?,
            total: 0,
            best: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.ranked
    }

    fn merge_fruits(&self, segments: Vec<Found>) -> tantivy::Result<Found> {
        let total = segments.iter().map(|s| s.total).sum();
        let mut keys: Vec<Key> = segments.into_iter().flat_map(|s| s.keys).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.truncate(self.limit + 1);
        Ok(Found { total, keys })
    }
}

/// A single-valued column's value for `doc` (every document has one of each sort key).
fn value<T: PartialOrd + Copy + Default + std::fmt::Debug + Send + Sync + 'static>(
    column: &Column<T>,
    doc: DocId,
) -> T {
    match column.index {
        ColumnIndex::Full => column.values.get_val(doc),
        _ => column.first(doc).unwrap_or_default(),
    }
}

impl SegmentPage {
    fn id(&self, doc: DocId) -> u128 {
        (u128::from(value(&self.id_hi, doc)) << 64) | u128::from(value(&self.id_lo, doc))
    }

    /// Weighs one match. Most matches fall below the page's least key (or the cursor) on score
    /// and creation time alone, so the id is read only when those tie or the key is kept.
    fn weigh(&mut self, doc: DocId, score: Score, created_ms: i64) {
        self.total += 1;
        let score = if self.ranked { score } else { 0.0 };
        let first_keys = |k: &Key| score.total_cmp(&k.score).then(created_ms.cmp(&k.created_ms));
        let full = |this: &Self| Key { score, created_ms, id: this.id(doc) };
        if let Some(after) = self.after {
            match first_keys(&after) {
                Ordering::Greater => return,
                Ordering::Equal if full(self) >= after => return,
                _ => {}
            }
        }
        if self.best.len() < self.keep {
            let key = full(self);
            self.best.push(Reverse(key));
            return;
        }
        let Some(Reverse(least)) = self.best.peek().copied() else { return };
        if first_keys(&least) == Ordering::Less {
            return;
        }
        let key = full(self);
        if key > least {
            self.best.pop();
            self.best.push(Reverse(key));
        }
    }
}

impl SegmentCollector for SegmentPage {
    type Fruit = Found;

    fn collect(&mut self, doc: DocId, score: Score) {
        let created_ms = value(&self.created, doc);
        self.weigh(doc, score, created_ms);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        let mut created = vec![None; docs.len()];
        self.created.first_vals(docs, &mut created);
        for (doc, created_ms) in docs.iter().zip(created) {
            self.weigh(*doc, 0.0, created_ms.unwrap_or_default());
        }
    }

    fn harvest(self) -> Found {
        let mut keys: Vec<Key> = self.best.into_iter().map(|Reverse(k)| k).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        Found { total: self.total, keys }
    }
}
