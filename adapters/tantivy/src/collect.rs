//! A page of hits in the search's order — (score, created, id), greatest first — strictly after a
//! cursor (search_after), with the count of every match. The sort keys are read from fast fields.
//!
//! A broad query matches much of the index, and weighing every match was what a page cost (the
//! newest first of 1M: ~20 ms, p99 ~65 ms on a busy machine). So `page` counts the matches (which
//! tantivy does without scoring or reading sort keys, for an unfiltered search from the segment
//! sizes alone) and weighs only those in a window of creation times ending at the newest (or at
//! the cursor), widened until it holds a page whose every key has the best score any match after
//! the cursor can have: then no match outside it can rank before any of them, and the page is
//! exactly the one a search over every match would give. A window that does not hold one is
//! widened once; then every match is weighed.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use std::ops::Bound;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, ColumnIndex};
use tantivy::query::{BooleanQuery, ConstScoreQuery, InvertedIndexRangeQuery, Occur, Query};
use tantivy::schema::Field;
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

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

/// Below this many matches a page weighs them all: a window would not save much.
const WINDOW_FROM: u64 = 10_000;
/// The first window is sized to hold this many pages of matches at their average density over
/// time; each next one is this many times wider.
const WIDEN: f64 = 8.0;
/// Windows tried before weighing every match: a window costs a term per creation time in it, so a
/// search whose best score is rare (or never reached: no title holds every word) must give up
/// while its windows are still small.
const WINDOWS: usize = 2;

/// A page of `query`'s matches, and how many there are. `best` is the highest score a match can
/// have (0 unranked); `within` the creation times (ms) the query's own filter allows, from
/// (inclusive) and to (exclusive); `created` the creation time's field (indexed and fast).
pub fn page(
    searcher: &Searcher,
    created: Field,
    query: &dyn Query,
    page: &Page,
    best: Score,
    within: (Option<i64>, Option<i64>),
) -> tantivy::Result<Found> {
    let total = query.count(searcher)? as u64;
    if total < WINDOW_FROM {
        return searcher.search(query, page);
    }
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for segment in searcher.segment_readers().iter().filter(|s| s.num_docs() > 0) {
        let column = segment.fast_fields().i64(fields::CREATED)?;
        min = min.min(column.min_value());
        max = max.max(column.max_value());
    }
    let min = within.0.map_or(min, |from| from.max(min));
    let max = within.1.map_or(max, |to| to.saturating_sub(1).min(max));
    // After a cursor, no match scores above it; one that ties it and is newer came before it.
    let (ceiling, mut upper) = match page.after {
        Some(after) if after.score <= best => (after.score, after.created_ms.min(max)),
        _ => (best, max),
    };
    upper = upper.max(min);
    let density = total as f64 / ((max - min) as f64 + 1.0);
    let mut width = ((page.limit + 1) as f64 * WIDEN / density).ceil();
    for _ in 0..WINDOWS {
        if (upper - min) as f64 <= width {
            break;
        }
        let lower = upper - width as i64;
        let at = |ms: i64| Term::from_field_i64(created, ms);
        let range = InvertedIndexRangeQuery::new(Bound::Included(at(lower)), Bound::Included(at(upper)));
        let windowed = BooleanQuery::new(vec![
            (Occur::Must, query.box_clone()),
            (Occur::Must, Box::new(ConstScoreQuery::new(Box::new(range), 0.0))),
        ]);
        let found = searcher.search(&windowed, page)?;
        // Outside the window, a match is older than every kept key (or newer than the cursor
        // at its score, so before it) and scores no more than they do.
        if found.keys.len() > page.limit && found.keys.last().is_some_and(|least| least.score >= ceiling) {
            return Ok(Found { total, keys: found.keys });
        }
        width *= WIDEN;
    }
    let found = searcher.search(query, page)?;
    Ok(Found { total, keys: found.keys })
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
