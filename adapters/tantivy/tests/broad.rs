//! Broad searches (newest first, matching most of the index, so paged through windows of creation
//! times; and ranked ones): every page is the one a sort of every match gives, with cursors,
//! filters and replaced documents, and the total is exact.

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_contracts::search::document;
use herald_domain::NotificationId;
use herald_domain::listing::NotificationFilter;
use herald_domain::search::{SearchCursor, SearchDocument, SearchIndex};
use herald_tantivy::{TantivyConfig, TantivySearch};

const N: usize = 16_000;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// The `i`-th notification, created at minute `(i * 7919) % N` (an order unlike the order they
/// are indexed in): 骑手 in the title of two in three, and in the body of every second one of the
/// newer half, so the best-scoring ones (both) run out well before the oldest matches.
fn doc(i: usize, title_word: &str) -> SearchDocument {
    let minute = (i * 7_919) % N;
    let title = if i % 3 != 0 { format!("{title_word}通知{i}") } else { format!("商家公告{i}") };
    let body = if i % 2 == 0 && minute >= N / 2 { "请各位骑手注意" } else { "其他内容" };
    document(&title, body, start() + Duration::minutes(minute as i64))
}

/// What `text` 骑手 scores: 2 in the title, 1 in the body.
fn score(d: &SearchDocument) -> u32 {
    let n = &d.notification.content;
    2 * u32::from(n.title.as_str().contains("骑手")) + u32::from(n.body.as_str().contains("骑手"))
}

/// The ids of `docs` that `keep` keeps, sorted as the search orders them (score, created, id).
fn sorted(docs: &[SearchDocument], ranked: bool, keep: impl Fn(&SearchDocument) -> bool) -> Vec<NotificationId> {
    let mut kept: Vec<&SearchDocument> = docs.iter().filter(|d| keep(d)).collect();
    kept.sort_by_key(|d| {
        let n = &d.notification;
        std::cmp::Reverse((if ranked { score(d) } else { 0 }, n.created_at, n.id.as_str().to_string()))
    });
    kept.into_iter().map(|d| d.notification.id.clone()).collect()
}

/// Pages through every match by cursor, checking each total; returns the ids in order.
async fn every_page(index: &TantivySearch, filter: &NotificationFilter, expected_total: usize) -> Vec<NotificationId> {
    let (mut all, mut after): (Vec<NotificationId>, Option<SearchCursor>) = (Vec::new(), None);
    loop {
        let hits = index.search(filter, after.as_ref(), 500).await.unwrap();
        assert_eq!(hits.total, expected_total as u64, "after {} hits", all.len());
        all.extend(hits.ids);
        match hits.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

#[tokio::test]
async fn broad_pages_are_those_of_a_sort_of_every_match() {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivySearch::open(&TantivyConfig::in_data_dir(dir.path())).await.unwrap();
    let mut docs: Vec<SearchDocument> = (0..N).map(|i| doc(i, "骑手")).collect();
    let mut rebuild = index.begin_rebuild().await.unwrap();
    rebuild.add(&docs).await.unwrap();
    rebuild.finish(1).await.unwrap();
    // Some replaced by the feed: their old versions are deleted, not matched.
    for (i, d) in docs.iter_mut().enumerate().take(1_000) {
        let id = d.notification.id.clone();
        *d = doc(i, "商户");
        d.notification.id = id;
    }
    index.index(2, &docs[..1_000]).await.unwrap();

    let newest = NotificationFilter::default();
    assert_eq!(every_page(&index, &newest, N).await, sorted(&docs, false, |_| true));

    let text = NotificationFilter { text: Some("骑手".into()), ..Default::default() };
    let matching = sorted(&docs, true, |d| score(d) > 0);
    assert!(matching.len() > 10_000, "broad: {}", matching.len());
    assert_eq!(every_page(&index, &text, matching.len()).await, matching);

    let (from, to) = (start() + Duration::minutes(1_000), start() + Duration::minutes(13_000));
    let window = NotificationFilter { from: Some(from), to: Some(to), ..Default::default() };
    let within = sorted(&docs, false, |d| d.notification.created_at >= from && d.notification.created_at < to);
    assert_eq!(every_page(&index, &window, within.len()).await, within);

    // A small page from a cursor deep in the list, where the best score runs out.
    let top = docs.iter().filter(|d| score(d) == 3).count();
    let mut after = None;
    let mut seen = Vec::new();
    while seen.len() < top + 40 {
        let hits = index.search(&text, after.as_ref(), 20).await.unwrap();
        seen.extend(hits.ids);
        after = hits.next;
    }
    assert_eq!(seen, matching[..seen.len()]);
}
