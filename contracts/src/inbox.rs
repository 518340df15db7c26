//! The `InboxStore` contract: idempotent delivery with exact counters, reads counted once, the list
//! order and visibility answered by the store, and the cap.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use herald_domain::ports::{Counters, InboxStore, PageDelivery, PageWrite, Read, Tally, UnreadCount};
use herald_domain::{
    Category, City, EntryMeta, InboxCap, InboxEntry, NotificationId, Page, PageKey, ReceiverId, ReceiverKind,
    ReceiverRef, ShownVariant,
};

#[async_trait]
pub trait InboxHarness: Send + Sync {
    /// The store, keeping at most `cap` entries per inbox; opening again reopens the same data.
    async fn open_capped(&self, cap: InboxCap) -> Arc<dyn InboxStore>;

    async fn open(&self) -> Arc<dyn InboxStore> {
        self.open_capped(InboxCap::default()).await
    }
}

/// A plain message sent at `sent`, always valid.
fn meta_at(sent: DateTime<Utc>) -> EntryMeta {
    EntryMeta {
        category: Category::System,
        pinned: false,
        force_read: false,
        sent_at_ms: sent.timestamp_millis(),
        valid_from_ms: None,
        valid_until_ms: None,
    }
}

fn plain() -> EntryMeta {
    meta_at(Utc::now())
}

/// Every entry the receiver holds, visible or not (a page of a visible inbox does not show all).
async fn held(inbox: &dyn InboxStore, me: &ReceiverRef, among: &[NotificationId]) -> Vec<NotificationId> {
    let mut ids: Vec<_> = inbox.entries_of(me, among).await.unwrap().into_iter().map(|e| e.notification_id).collect();
    ids.sort();
    ids
}

/// (unread, force-read) of a count.
fn counts(c: UnreadCount) -> (u64, u64) {
    (c.unread, c.force_read)
}

fn ids_of(entries: &[InboxEntry]) -> Vec<NotificationId> {
    entries.iter().map(|e| e.notification_id.clone()).collect()
}

fn ids(range: std::ops::Range<u32>) -> Vec<ReceiverId> {
    range.map(|i| ReceiverId::parse("id", &format!("r{i:05}")).unwrap()).collect()
}

fn city(name: &str) -> City {
    City::parse("city", name).unwrap()
}

/// Page `page_no` of notification `n` in `c`, to riders `range`.
fn page(n: &NotificationId, c: &str, page_no: u32, range: std::ops::Range<u32>) -> Page {
    Page {
        key: PageKey { notification_id: n.clone(), city: city(c), page_no },
        receiver_kind: ReceiverKind::Rider,
        receivers: ids(range),
    }
}

fn merchant_page(n: &NotificationId, range: std::ops::Range<u32>) -> Page {
    Page { receiver_kind: ReceiverKind::Merchant, ..page(n, "sh", 0, range) }
}

fn first(added: u64) -> PageDelivery {
    PageDelivery { added, repeated: false }
}

fn rider(id: &str) -> ReceiverRef {
    ReceiverRef { kind: ReceiverKind::Rider, id: ReceiverId::parse("id", id).unwrap() }
}

pub async fn redelivery_changes_nothing(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let sh = page(&n, "sh", 0, 0..500);
    assert_eq!(inbox.deliver(&sh, &plain()).await.unwrap(), first(500));
    let again = inbox.deliver(&sh, &plain()).await.unwrap();
    assert_eq!(again, PageDelivery { added: 500, repeated: true }, "a repeat reports the first outcome");
    // Another page naming half of the same receivers (one moved city mid-send) adds only the new half.
    assert_eq!(inbox.deliver(&page(&n, "bj", 0, 250..750), &plain()).await.unwrap(), first(250));
    assert_eq!(inbox.page_outcome(&sh.key).await.unwrap(), Some(500));
    assert_eq!(inbox.page_outcome(&page(&n, "bj", 1, 0..1).key).await.unwrap(), None, "never delivered");
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.sent, c.read), (750, 0));
    assert_eq!(c.sent_by_city.get("sh"), Some(&500));
    assert_eq!(c.sent_by_city.get("bj"), Some(&250));
    let other = NotificationId::generate();
    inbox.deliver(&page(&other, "sh", 0, 0..3), &plain()).await.unwrap();
    let many = inbox.counters_of(&[n.clone(), other.clone(), NotificationId::generate()]).await.unwrap();
    assert_eq!(many.get(&n), Some(&c), "one read for many gives what one read for each gives");
    assert_eq!(many.get(&other).map(|c| c.sent), Some(3));
    assert_eq!(many.len(), 2, "a notification never delivered is absent");
    assert_eq!(held(&*inbox, &rider("r00000"), &[n.clone(), other.clone()]).await.len(), 2);
}

pub async fn a_withheld_notification_gets_no_more_entries(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    assert_eq!(inbox.deliver(&page(&n, "sh", 0, 0..10), &plain()).await.unwrap(), first(10));
    inbox.withhold(&n).await.unwrap();
    inbox.withhold(&n).await.unwrap();
    assert_eq!(inbox.deliver(&page(&n, "sh", 1, 10..20), &plain()).await.unwrap(), first(0), "nothing lands after");
    assert_eq!(inbox.page_outcome(&page(&n, "sh", 1, 10..20).key).await.unwrap(), Some(0));
    assert!(held(&*inbox, &rider("r00015"), std::slice::from_ref(&n)).await.is_empty());
    assert_eq!(held(&*inbox, &rider("r00005"), std::slice::from_ref(&n)).await.len(), 1, "what came before stays");
    assert!(inbox.page(&rider("r00005"), Utc::now(), None, 10, None).await.unwrap().is_empty(), "but is not shown");
    assert_eq!(inbox.unread_count(&rider("r00005"), Utc::now()).await.unwrap(), UnreadCount::default());
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10, "stats kept");
}

pub async fn a_page_delivered_after_withholding_records_zero_and_repeats_it(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    inbox.withhold(&n).await.unwrap();
    let p = page(&n, "sh", 0, 0..10);
    assert_eq!(inbox.deliver(&p, &plain()).await.unwrap(), first(0), "withheld: recorded as adding nothing");
    assert_eq!(inbox.page_outcome(&p.key).await.unwrap(), Some(0));
    assert_eq!(
        inbox.deliver(&p, &plain()).await.unwrap(),
        PageDelivery { added: 0, repeated: true },
        "a redelivery agrees"
    );
    assert!(held(&*inbox, &rider("r00001"), std::slice::from_ref(&n)).await.is_empty());
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 0);
}

pub async fn concurrent_redelivery_counts_once(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let sh = page(&n, "sh", 0, 0..500);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (inbox, sh) = (inbox.clone(), sh.clone());
        tasks.push(tokio::spawn(async move { inbox.deliver(&sh, &plain()).await }));
    }
    let mut fresh = 0;
    for t in tasks {
        let d = t.await.unwrap().unwrap();
        assert_eq!(d.added, 500);
        fresh += u32::from(!d.repeated);
    }
    assert_eq!(fresh, 1, "eight deliveries of one page: one writes, seven are repeats");
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 500);
}

pub async fn kinds_have_separate_inboxes(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    inbox.deliver(&merchant_page(&n, 0..1), &plain()).await.unwrap();
    assert!(held(&*inbox, &rider("r00000"), std::slice::from_ref(&n)).await.is_empty());
    let merchant = ReceiverRef { kind: ReceiverKind::Merchant, id: ReceiverId::parse("id", "r00000").unwrap() };
    assert_eq!(inbox.page(&merchant, Utc::now(), None, 10, None).await.unwrap()[0].notification_id, n);
}

pub async fn reads_count_once_per_receiver(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    inbox.deliver(&page(&a, "sh", 0, 0..3), &plain()).await.unwrap();
    inbox.deliver(&page(&b, "sh", 0, 0..3), &plain()).await.unwrap();
    let me = rider("r00001");
    let stranger = NotificationId::generate();
    assert_eq!(inbox.mark_read(&me, &[a.clone(), stranger]).await.unwrap(), vec![a.clone()]);
    assert!(inbox.mark_read(&me, std::slice::from_ref(&a)).await.unwrap().is_empty(), "second read is not new");
    assert_eq!(inbox.counters(&a).await.unwrap().read, 1);
    assert_eq!(inbox.counters(&b).await.unwrap().read, 0);
    let entries = inbox.entries_of(&me, &[a.clone(), b.clone()]).await.unwrap();
    assert!(entries.iter().find(|e| e.notification_id == a).unwrap().read);
    assert!(!entries.iter().find(|e| e.notification_id == b).unwrap().read);
}

pub async fn changes_are_versioned_for_sync(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let me = rider("r00000");
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    inbox.deliver(&page(&a, "sh", 0, 0..1), &plain()).await.unwrap();
    let after_a = inbox.changed_since(&me, 0, 100).await.unwrap();
    assert_eq!(after_a.len(), 1);
    let mark = after_a[0].version;
    inbox.deliver(&page(&b, "sh", 0, 0..1), &plain()).await.unwrap();
    let since = inbox.changed_since(&me, mark, 100).await.unwrap();
    assert_eq!(since.iter().map(|e| &e.notification_id).collect::<Vec<_>>(), vec![&b]);
    inbox.mark_read(&me, std::slice::from_ref(&a)).await.unwrap();
    let since = inbox.changed_since(&me, since[0].version, 100).await.unwrap();
    assert_eq!(since.len(), 1, "a read is a change");
    assert!(since[0].notification_id == a && since[0].read);
    assert_eq!(inbox.changed_since(&me, 0, 1).await.unwrap().len(), 1, "limit holds");
}

pub async fn entries_survive_a_restart(h: &dyn InboxHarness) {
    let n = NotificationId::generate();
    h.open().await.deliver(&page(&n, "sh", 0, 0..10), &plain()).await.unwrap();
    let inbox = h.open().await;
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10);
    assert_eq!(
        inbox.deliver(&page(&n, "sh", 0, 0..10), &plain()).await.unwrap(),
        PageDelivery { added: 10, repeated: true }
    );
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10);
}

pub async fn applied_revocations_are_withheld_and_remembered(h: &dyn InboxHarness) {
    let n = NotificationId::generate();
    {
        let inbox = h.open().await;
        assert_eq!(inbox.revocations_applied().await.unwrap(), 0);
        inbox.apply_revocation(3, &n).await.unwrap();
        inbox.apply_revocation(3, &n).await.unwrap();
        inbox.apply_revocation(2, &NotificationId::generate()).await.unwrap();
        assert_eq!(inbox.revocations_applied().await.unwrap(), 3, "the position never goes back");
    }
    let inbox = h.open().await;
    assert_eq!(inbox.revocations_applied().await.unwrap(), 3, "kept across a restart");
    assert_eq!(inbox.deliver(&page(&n, "sh", 0, 0..10), &plain()).await.unwrap(), first(0), "withheld");
}

/// One receiver's messages, each delivered as a page of its own, sent a minute apart.
struct Timeline {
    inbox: Arc<dyn InboxStore>,
    me: ReceiverRef,
    start: DateTime<Utc>,
    sent: Vec<NotificationId>,
}

impl Timeline {
    async fn new(h: &dyn InboxHarness, cap: usize) -> Self {
        let inbox = h.open_capped(InboxCap::new("cap", cap).unwrap()).await;
        Self { inbox, me: rider("r00000"), start: Utc::now() - Duration::days(1), sent: Vec::new() }
    }

    /// Sends the next message (`adjust` sets its flags and window) to r00000; returns its id.
    async fn send(&mut self, adjust: impl FnOnce(&mut EntryMeta)) -> NotificationId {
        let n = NotificationId::generate();
        let mut meta = meta_at(self.start + Duration::minutes(self.sent.len() as i64 + 1));
        adjust(&mut meta);
        assert_eq!(self.inbox.deliver(&page(&n, "sh", 0, 0..1), &meta).await.unwrap(), first(1));
        self.sent.push(n.clone());
        n
    }

    async fn read(&self, n: &NotificationId) {
        assert_eq!(self.inbox.mark_read(&self.me, std::slice::from_ref(n)).await.unwrap().len(), 1);
    }

    /// What the inbox holds, visible or not, in the order sent.
    async fn held(&self) -> Vec<NotificationId> {
        let holds = held(&*self.inbox, &self.me, &self.sent).await;
        self.sent.iter().filter(|n| holds.contains(n)).cloned().collect()
    }

    /// The whole visible list, read a page of `limit` at a time.
    async fn list(&self, limit: usize) -> Vec<InboxEntry> {
        self.list_of(None, limit).await
    }

    /// The whole visible list of `category` (all of them if `None`), a page of `limit` at a time.
    async fn list_of(&self, category: Option<Category>, limit: usize) -> Vec<InboxEntry> {
        let mut all: Vec<InboxEntry> = Vec::new();
        loop {
            let after = all.last().map(|e| e.position.clone());
            let page = self.inbox.page(&self.me, Utc::now(), after.as_ref(), limit, category).await.unwrap();
            assert!(page.len() <= limit);
            let done = page.len() < limit;
            all.extend(page);
            if done {
                return all;
            }
        }
    }
}

fn pinned(m: &mut EntryMeta) {
    m.pinned = true;
}

fn force_read(m: &mut EntryMeta) {
    m.force_read = true;
}

fn expired(m: &mut EntryMeta) {
    m.valid_until_ms = Some((Utc::now() - Duration::hours(1)).timestamp_millis());
}

pub async fn the_list_pages_in_inbox_order_pinned_unread_first(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 1_000).await;
    let old_pinned = t.send(pinned).await;
    let a = t.send(|_| {}).await;
    let read_pinned = t.send(pinned).await;
    let b = t.send(|_| {}).await;
    let newest_pinned = t.send(pinned).await;
    // Two sent in the same millisecond: the id decides, descending.
    let same = t.start + Duration::minutes(30);
    let (x, y) = (NotificationId::generate(), NotificationId::generate());
    for n in [&x, &y] {
        t.inbox.deliver(&page(n, "sh", 0, 0..1), &meta_at(same)).await.unwrap();
        t.sent.push(n.clone());
    }
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    t.read(&read_pinned).await;
    let want = vec![
        newest_pinned.clone(),
        old_pinned.clone(),
        hi.clone(),
        lo.clone(),
        b.clone(),
        read_pinned.clone(),
        a.clone(),
    ];
    for limit in [1, 2, 3, 100] {
        assert_eq!(ids_of(&t.list(limit).await), want, "pages of {limit} follow the order without gaps");
    }
    let top = t.inbox.page(&t.me, Utc::now(), None, 1, None).await.unwrap();
    assert!(top[0].position.pinned_unread && !top[0].read);
    // Reading a pinned message moves it to its place by time.
    t.read(&newest_pinned).await;
    assert_eq!(ids_of(&t.list(3).await), vec![old_pinned, hi, lo, newest_pinned, b, read_pinned, a]);
}

pub async fn only_visible_entries_are_listed_and_counted_exactly(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 1_000).await;
    let shown = t.send(|_| {}).await;
    let must_read = t.send(force_read).await;
    let gone = t.send(expired).await;
    let later = t.send(|m| m.valid_from_ms = Some((Utc::now() + Duration::hours(1)).timestamp_millis())).await;
    let revoked = t.send(force_read).await;
    t.inbox.withhold(&revoked).await.unwrap();
    let now = Utc::now();
    assert_eq!(ids_of(&t.list(10).await), vec![must_read.clone(), shown.clone()]);
    assert_eq!(counts(t.inbox.unread_count(&t.me, now).await.unwrap()), (2, 1));
    assert_eq!(ids_of(&t.inbox.unread(&t.me, now, true).await.unwrap()), vec![must_read.clone()]);
    assert_eq!(ids_of(&t.inbox.unread(&t.me, now, false).await.unwrap()), vec![must_read.clone(), shown.clone()]);
    t.read(&must_read).await;
    assert_eq!(counts(t.inbox.unread_count(&t.me, now).await.unwrap()), (1, 0));
    // In an hour and a half the later one is shown too.
    let then = now + Duration::minutes(90);
    assert_eq!(counts(t.inbox.unread_count(&t.me, then).await.unwrap()), (2, 0));
    let listed = t.inbox.page(&t.me, then, None, 10, None).await.unwrap();
    assert_eq!(ids_of(&listed), vec![later.clone(), must_read.clone(), shown.clone()]);
    assert_eq!(t.held().await, vec![shown, must_read, gone, later, revoked], "invisible is not gone");
}

pub async fn sync_finds_windows_that_opened_without_the_whole_inbox(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 1_000).await;
    let now = Utc::now();
    let opens_at = now + Duration::minutes(10);
    let always = t.send(|_| {}).await;
    let opening = t.send(|m| m.valid_from_ms = Some(opens_at.timestamp_millis())).await;
    let stranger = NotificationId::generate();
    t.inbox
        .deliver(
            &page(&stranger, "sh", 0, 5..6),
            &EntryMeta { valid_from_ms: Some(opens_at.timestamp_millis()), ..plain() },
        )
        .await
        .unwrap();
    let opened = |after, until| t.inbox.opened_between(&t.me, after, until);
    assert!(opened(now, opens_at - Duration::milliseconds(1)).await.unwrap().is_empty(), "not open yet");
    assert_eq!(ids_of(&opened(now, opens_at).await.unwrap()), vec![opening.clone()], "only mine");
    assert!(opened(opens_at, opens_at + Duration::hours(1)).await.unwrap().is_empty(), "reported once");
    let changed = t.inbox.changed_since(&t.me, 0, 10).await.unwrap();
    assert_eq!(ids_of(&changed), vec![always, opening]);
}

pub async fn a_full_inbox_drops_gone_then_read_then_unread_oldest_first(h: &dyn InboxHarness) {
    // A cap of 10 trims an inbox of 11 down to 9.
    let mut t = Timeline::new(h, 10).await;
    let m1 = t.send(|_| {}).await;
    let m2 = t.send(pinned).await;
    let m3 = t.send(force_read).await;
    let m4 = t.send(force_read).await;
    let m5 = t.send(|_| {}).await;
    t.send(|m| {
        pinned(m);
        expired(m);
    })
    .await;
    let m7 = t.send(|_| {}).await;
    let m8 = t.send(force_read).await;
    let m9 = t.send(pinned).await;
    let m10 = t.send(|_| {}).await;
    for read in [&m1, &m4, &m7, &m9] {
        t.read(read).await;
    }
    t.inbox.withhold(&m3).await.unwrap();
    assert_eq!(t.held().await.len(), 10, "at the cap nothing goes");

    let m11 = t.send(|_| {}).await;
    let kept =
        vec![m1.clone(), m2.clone(), m4.clone(), m5.clone(), m7.clone(), m8.clone(), m9.clone(), m10.clone(), m11];
    assert_eq!(t.held().await, kept, "first what can never be shown again: revoked m3, expired (pinned) m6");

    let (m12, m13) = (t.send(|_| {}).await, t.send(|_| {}).await);
    let kept = vec![m2.clone(), m5.clone(), m7.clone(), m8.clone(), m9.clone(), m10.clone(), kept[8].clone(), m12, m13];
    assert_eq!(t.held().await, kept, "then the oldest read: m1 and the read force-read m4");

    t.send(|_| {}).await;
    t.send(|_| {}).await;
    let held = t.held().await;
    assert!(!held.contains(&m7) && !held.contains(&m5), "then the last read unpinned m7, then the oldest unread m5");
    assert!(held.contains(&m9), "a read pinned message stays");

    t.send(|_| {}).await;
    t.send(|_| {}).await;
    let held = t.held().await;
    assert_eq!(held.len(), 9);
    assert!(!held.contains(&m10), "unread plain messages go oldest first");
    assert!(held.contains(&m8) && held.contains(&m2), "an unread force-read or pinned one is older but stays");
    for n in &t.sent {
        assert_eq!(t.inbox.counters(n).await.unwrap().sent, 1, "dropping does not un-send");
    }
    let unread = t.inbox.unread_count(&t.me, Utc::now()).await.unwrap();
    assert_eq!(unread.unread, held.iter().filter(|n| **n != m9).count() as u64, "the count is of what remains");
    // More messages were delivered than an inbox keeps: sync from the start reads this inbox,
    // a recent cursor probes the few delivered since; both give what it holds, by version.
    let all = t.inbox.changed_since(&t.me, 0, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].version < w[1].version));
    let mut ids = ids_of(&all);
    ids.sort();
    let mut holds = held.clone();
    holds.sort();
    assert_eq!(ids, holds);
    let mark = all.last().unwrap().version;
    t.read(&m2).await;
    let newest = t.send(|_| {}).await;
    let delta = t.inbox.changed_since(&t.me, mark, 100).await.unwrap();
    assert_eq!(ids_of(&delta), vec![m2.clone(), newest], "the read, then the arrival");
    assert!(delta[0].read && !delta[0].position.pinned_unread);
}

fn in_category(category: Category) -> impl FnOnce(&mut EntryMeta) {
    move |m| m.category = category
}

/// Unread per category as the store counts it, in `Category::ALL`'s order, with the total.
async fn tabs(t: &Timeline) -> (u64, [u64; 3]) {
    let c = t.inbox.unread_count(&t.me, Utc::now()).await.unwrap();
    let by: Vec<u64> = Category::ALL.iter().map(|k| c.by_category.get(*k)).collect();
    assert_eq!(by.iter().sum::<u64>(), c.unread, "the tabs add up to the total");
    (c.unread, [by[0], by[1], by[2]])
}

/// Each category is a tab: listed on its own in the list's order (pinned unread first), paged by
/// the same cursors, and counted exactly through redelivery, a late page naming a holder again,
/// revokes, expiry, reads and reading a whole tab. The whole list is every tab merged.
pub async fn categories_are_listed_and_counted_apart_exactly(h: &dyn InboxHarness) {
    use Category::{Activity, Announcement, System};
    let mut t = Timeline::new(h, 1_000).await;
    let sys = t.send(in_category(System)).await;
    let act_pinned = t
        .send(|m| {
            m.category = Activity;
            m.pinned = true;
        })
        .await;
    let ann = t.send(in_category(Announcement)).await;
    let act = t.send(in_category(Activity)).await;
    let act_gone = t
        .send(|m| {
            m.category = Activity;
            expired(m);
        })
        .await;
    let sys_force = t
        .send(|m| {
            m.category = System;
            m.force_read = true;
        })
        .await;
    let ann_revoked = t.send(in_category(Announcement)).await;
    assert_eq!(tabs(&t).await, (6, [2, 2, 2]));

    // Redelivered, and paged again late (the receiver already holds it): counted once.
    let meta = EntryMeta { category: Activity, ..meta_at(t.start + Duration::minutes(4)) };
    assert_eq!(
        t.inbox.deliver(&page(&act, "sh", 0, 0..1), &meta).await.unwrap(),
        PageDelivery { added: 1, repeated: true }
    );
    assert_eq!(t.inbox.deliver(&page(&act, "bj", 3, 0..2), &meta).await.unwrap(), first(1), "only r00001 is new");
    // A late joiner of an activity sent earlier still lands in its tab, in its place by time.
    let late = NotificationId::generate();
    let late_meta = EntryMeta { category: Activity, ..meta_at(t.start + Duration::seconds(30)) };
    t.inbox.deliver(&page(&late, "sh", 0, 1..2), &late_meta).await.unwrap();
    t.inbox.deliver(&page(&late, "sh", 1, 0..1), &late_meta).await.unwrap();
    t.sent.push(late.clone());
    t.inbox.withhold(&ann_revoked).await.unwrap();
    assert_eq!(tabs(&t).await, (6, [2, 3, 1]), "the revoked one and the expired one count nowhere");
    assert_eq!(t.inbox.unread_count(&t.me, Utc::now()).await.unwrap().force_read, 1);

    for limit in [1, 2, 100] {
        assert_eq!(
            ids_of(&t.list_of(Some(Activity), limit).await),
            vec![act_pinned.clone(), act.clone(), late.clone()]
        );
        assert_eq!(ids_of(&t.list_of(Some(System), limit).await), vec![sys_force.clone(), sys.clone()]);
        assert_eq!(ids_of(&t.list_of(Some(Announcement), limit).await), vec![ann.clone()]);
        assert_eq!(
            ids_of(&t.list(limit).await),
            vec![act_pinned.clone(), sys_force.clone(), act.clone(), ann.clone(), sys.clone(), late.clone()],
            "the whole list is the tabs merged in list order"
        );
    }
    let listed = t.list_of(Some(Activity), 10).await;
    assert!(listed.iter().all(|e| e.category == Activity));
    let held = t.inbox.entries_of(&t.me, &[act_gone.clone(), sys.clone()]).await.unwrap();
    assert!(held.iter().any(|e| e.notification_id == act_gone && e.category == Activity), "held, just not shown");

    // Reading moves a pinned entry to its place by time in its tab too, and the tab's count.
    t.read(&act_pinned).await;
    assert_eq!(tabs(&t).await, (5, [2, 2, 1]));
    assert_eq!(ids_of(&t.list_of(Some(Activity), 1).await), vec![act.clone(), act_pinned.clone(), late.clone()]);
    // Reading a whole tab: the others keep their counts.
    let unread_activity: Vec<NotificationId> = t
        .inbox
        .unread(&t.me, Utc::now(), false)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.category == Activity)
        .map(|e| e.notification_id)
        .collect();
    assert_eq!(unread_activity.len(), 2);
    assert_eq!(t.inbox.mark_read(&t.me, &unread_activity).await.unwrap().len(), 2);
    assert_eq!(tabs(&t).await, (3, [2, 0, 1]));
    assert_eq!(t.inbox.counters(&act).await.unwrap().read, 1);
    // What another receiver got is theirs.
    let other = t.inbox.unread_count(&rider("r00001"), Utc::now()).await.unwrap();
    assert_eq!((other.unread, other.by_category.get(Activity)), (2, 2));
}

/// Archiving hides an entry from its receiver's list, tabs and counts but keeps it held: sync
/// reports the change, a later page adds nothing, reading it still counts once, and un-archiving
/// puts it back in its place.
pub async fn an_archived_entry_is_held_but_neither_listed_nor_counted(h: &dyn InboxHarness) {
    use Category::{Activity, System};
    let mut t = Timeline::new(h, 1_000).await;
    let sys = t.send(in_category(System)).await;
    let pinned_act = t
        .send(|m| {
            m.category = Activity;
            m.pinned = true;
        })
        .await;
    let act = t.send(in_category(Activity)).await;
    let before = t.list(10).await;
    let mark = before.iter().map(|e| e.version).max().unwrap();
    assert_eq!(tabs(&t).await, (3, [1, 2, 0]));

    let changed = t.inbox.set_archived(&t.me, &[pinned_act.clone(), NotificationId::generate()], true).await.unwrap();
    assert_eq!(changed, vec![pinned_act.clone()], "ids not held are ignored");
    assert!(t.inbox.set_archived(&t.me, std::slice::from_ref(&pinned_act), true).await.unwrap().is_empty(), "once");
    assert_eq!(ids_of(&t.list(1).await), vec![act.clone(), sys.clone()]);
    assert_eq!(ids_of(&t.list_of(Some(Activity), 1).await), vec![act.clone()]);
    assert_eq!(tabs(&t).await, (2, [1, 1, 0]));
    assert!(t.inbox.unread(&t.me, Utc::now(), false).await.unwrap().iter().all(|e| e.notification_id != pinned_act));
    let held = t.inbox.entries_of(&t.me, std::slice::from_ref(&pinned_act)).await.unwrap();
    assert!(held[0].archived && !held[0].read, "held, archived, still unread");
    let delta = t.inbox.changed_since(&t.me, mark, 10).await.unwrap();
    assert_eq!(ids_of(&delta), vec![pinned_act.clone()], "sync reports it");
    assert!(delta[0].archived);

    // A later page naming the receiver again (moved city, late joiner) adds nothing back.
    let meta = EntryMeta { category: Activity, pinned: true, ..meta_at(t.start + Duration::minutes(2)) };
    assert_eq!(t.inbox.deliver(&page(&pinned_act, "bj", 7, 0..2), &meta).await.unwrap(), first(1), "only r00001");
    assert_eq!(tabs(&t).await, (2, [1, 1, 0]));
    assert_eq!(t.held().await.len(), 3);
    // The other receiver's entry is theirs.
    assert_eq!(
        ids_of(&t.inbox.page(&rider("r00001"), Utc::now(), None, 10, None).await.unwrap()),
        vec![pinned_act.clone()]
    );

    // Read while archived: counted once, and it comes back read, in its place by time.
    t.read(&pinned_act).await;
    assert_eq!(t.inbox.counters(&pinned_act).await.unwrap().read, 1);
    let mark = t.inbox.changed_since(&t.me, 0, 100).await.unwrap().iter().map(|e| e.version).max().unwrap();
    assert_eq!(t.inbox.set_archived(&t.me, std::slice::from_ref(&pinned_act), false).await.unwrap().len(), 1);
    assert_eq!(ids_of(&t.list(2).await), vec![act.clone(), pinned_act.clone(), sys.clone()]);
    let delta = t.inbox.changed_since(&t.me, mark, 10).await.unwrap();
    assert_eq!(ids_of(&delta), vec![pinned_act.clone()], "sync reports the un-archive");
    assert!(!delta[0].archived && delta[0].read);
    // Un-archived unread, a pinned one is on top again.
    t.inbox.set_archived(&t.me, &[act.clone(), sys.clone()], true).await.unwrap();
    assert_eq!(tabs(&t).await, (0, [0, 0, 0]));
    let mark = t.inbox.changed_since(&t.me, 0, 100).await.unwrap().iter().map(|e| e.version).max().unwrap();
    t.inbox.set_archived(&t.me, std::slice::from_ref(&act), false).await.unwrap();
    assert_eq!(ids_of(&t.inbox.changed_since(&t.me, mark, 10).await.unwrap()), vec![act.clone()]);
    assert_eq!(tabs(&t).await, (1, [0, 1, 0]));
    assert_eq!(ids_of(&t.list(10).await), vec![act, pinned_act]);
}

/// `unseen` counts the unread entries that arrived, came back from the archive or opened their
/// window after the receiver last looked (`mark_seen`); everything unread before the first look.
/// The mark is the receiver's own, survives a reopen, never goes back and moves nothing else.
pub async fn unseen_counts_what_arrived_or_opened_since_the_inbox_was_seen(h: &dyn InboxHarness) {
    let unseen = |c: UnreadCount| (c.unread, c.unseen);
    let mut t = Timeline::new(h, 1_000).await;
    let a = t.send(|_| {}).await;
    t.send(force_read).await;
    let now = Utc::now();
    let opens_at = now + Duration::minutes(30);
    t.send(|m| m.valid_from_ms = Some(opens_at.timestamp_millis())).await;
    assert_eq!(unseen(t.inbox.unread_count(&t.me, now).await.unwrap()), (2, 2), "never looked: all unseen");

    let versions: Vec<u64> = t.list(10).await.iter().map(|e| e.version).collect();
    t.inbox.mark_seen(&t.me, now).await.unwrap();
    assert_eq!(unseen(t.inbox.unread_count(&t.me, now).await.unwrap()), (2, 0), "seen, still unread");
    assert_eq!(t.list(10).await.iter().map(|e| e.version).collect::<Vec<_>>(), versions, "no entry changed");
    assert_eq!(t.inbox.counters(&a).await.unwrap().read, 0);
    // Another receiver holding the same message has not looked.
    assert_eq!(t.inbox.deliver(&page(&a, "bj", 1, 1..2), &plain()).await.unwrap(), first(1));
    assert_eq!(unseen(t.inbox.unread_count(&rider("r00001"), now).await.unwrap()), (1, 1));

    let c = t.send(|_| {}).await;
    assert_eq!(unseen(t.inbox.unread_count(&t.me, now).await.unwrap()), (3, 1), "c arrived after the look");
    let then = opens_at + Duration::minutes(1);
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (4, 2), "and `later` opened after it");
    t.read(&c).await;
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (3, 1), "read is not unseen");

    // Reopened, the store still knows the look.
    let t = Timeline { inbox: h.open_capped(InboxCap::new("cap", 1_000).unwrap()).await, ..t };
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (3, 1));
    // A look with an earlier clock (another API process's) takes nothing back.
    t.inbox.mark_seen(&t.me, then).await.unwrap();
    t.inbox.mark_seen(&t.me, now).await.unwrap();
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (3, 0));
    // Archived it is not counted; un-archived it is back in the feed, news again.
    t.inbox.set_archived(&t.me, std::slice::from_ref(&a), true).await.unwrap();
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (2, 0));
    t.inbox.set_archived(&t.me, std::slice::from_ref(&a), false).await.unwrap();
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (3, 1));
    // An erased receiver created again has a new inbox that was never looked at.
    t.inbox.erase_receiver(&t.me).await.unwrap();
    let d = NotificationId::generate();
    assert_eq!(t.inbox.deliver(&page(&d, "sh", 0, 0..1), &plain()).await.unwrap(), first(1));
    assert_eq!(unseen(t.inbox.unread_count(&t.me, then).await.unwrap()), (1, 1));
}

/// Archived entries go first when the cap trims (after those that can never be shown), and an
/// inbox full of them still stays within the cap.
pub async fn archived_entries_count_against_the_cap_and_go_with_the_read_ones(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 10).await;
    for _ in 0..9 {
        t.send(|_| {}).await;
    }
    let archived: Vec<NotificationId> = t.sent.clone();
    assert_eq!(t.inbox.set_archived(&t.me, &archived, true).await.unwrap().len(), 9);
    for _ in 0..5 {
        t.send(|_| {}).await;
    }
    let held = t.held().await;
    assert!(held.len() <= 11, "within the cap: {}", held.len());
    let fresh: Vec<NotificationId> = t.sent[9..].to_vec();
    assert!(fresh.iter().all(|n| held.contains(n)), "the unread ones stay, the archived ones went first");
    assert_eq!(tabs(&t).await.0, 5);
}

/// A trimmed inbox counts what it still holds, tab by tab.
pub async fn the_cap_trims_across_categories_and_counts_stay_exact(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 10).await;
    for i in 0..30 {
        t.send(in_category(Category::ALL[i % 3])).await;
    }
    let held = t.held().await.len() as u64;
    assert!(held <= 11, "trimmed to about the cap, holds {held}");
    let (total, by) = tabs(&t).await;
    assert_eq!(total, held);
    for (i, category) in Category::ALL.iter().enumerate() {
        assert_eq!(by[i], t.list_of(Some(*category), 3).await.len() as u64, "{category:?} counts what it lists");
    }
    assert_eq!(t.list(4).await.len() as u64, held);
}

pub async fn pinned_and_unread_force_read_entries_are_kept_past_the_cap(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 10).await;
    for i in 0..12 {
        t.send(if i % 2 == 0 { pinned } else { force_read }).await;
    }
    assert_eq!(t.held().await.len(), 12, "none of them is dropped, whatever the cap");
    assert_eq!(counts(t.inbox.unread_count(&t.me, Utc::now()).await.unwrap()), (12, 6));
    assert_eq!(t.list(5).await.len(), 12);
}

pub async fn a_dropped_entry_never_comes_back_nor_counts_again(h: &dyn InboxHarness) {
    let mut t = Timeline::new(h, 10).await;
    let oldest = t.send(|_| {}).await;
    let meta = meta_at(t.start + Duration::minutes(1));
    for _ in 0..10 {
        t.send(|_| {}).await;
    }
    assert!(!t.held().await.contains(&oldest), "dropped by the cap");
    let first_page = page(&oldest, "sh", 0, 0..1);
    assert_eq!(t.inbox.deliver(&first_page, &meta).await.unwrap(), PageDelivery { added: 1, repeated: true });
    // The same message paged to this receiver again (it moved city) adds nothing here…
    assert_eq!(t.inbox.deliver(&page(&oldest, "bj", 0, 0..2), &meta).await.unwrap(), first(1));
    assert!(!t.held().await.contains(&oldest), "a dropped message never comes back");
    // …but reaches a receiver who never held it.
    assert_eq!(held(&*t.inbox, &rider("r00001"), std::slice::from_ref(&oldest)).await, vec![oldest.clone()]);
    let c = t.inbox.counters(&oldest).await.unwrap();
    assert_eq!((c.sent, c.sent_by_city.get("bj")), (2, Some(&1)), "counted once per receiver that got it");
    // After a restart too.
    let inbox = h.open_capped(InboxCap::new("cap", 10).unwrap()).await;
    assert_eq!(inbox.deliver(&page(&oldest, "gz", 0, 0..1), &meta).await.unwrap(), first(0));
}

/// Erasing a receiver empties its inbox and nobody else's; the counters keep what was delivered and
/// read (stats are history), and a page delivered before the erasure, redelivered, adds nothing.
pub async fn an_erased_receiver_has_an_empty_inbox_and_the_counters_keep_history(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    let pa = page(&a, "sh", 0, 0..3);
    inbox.deliver(&pa, &plain()).await.unwrap();
    inbox.deliver(&page(&b, "sh", 0, 0..2), &plain()).await.unwrap();
    let (me, other) = (rider("r00001"), rider("r00000"));
    inbox.mark_read(&me, std::slice::from_ref(&a)).await.unwrap();

    assert_eq!(inbox.erase_receiver(&me).await.unwrap(), 2, "both of its entries");
    assert!(inbox.changed_since(&me, 0, 100).await.unwrap().is_empty(), "nothing left to sync");
    assert_eq!(inbox.changed_since(&other, 0, 100).await.unwrap().len(), 2, "the others keep theirs");
    assert_eq!(inbox.erase_receiver(&me).await.unwrap(), 0, "erasing again finds nothing");
    let counters = inbox.counters(&a).await.unwrap();
    assert_eq!((counters.sent, counters.read), (3, 1));
    assert_eq!(inbox.deliver(&pa, &plain()).await.unwrap(), PageDelivery { added: 3, repeated: true });
    assert!(inbox.changed_since(&me, 0, 100).await.unwrap().is_empty());
}

/// A receiver erased and created again still gets versions above what a device synced from the
/// old inbox, or that device would miss its new messages.
pub async fn an_erased_inbox_refilled_is_synced_past_an_old_cursor(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    let me = rider("r00000");
    inbox.deliver(&page(&a, "sh", 0, 0..1), &plain()).await.unwrap();
    inbox.mark_read(&me, std::slice::from_ref(&a)).await.unwrap();
    let cursor = inbox.changed_since(&me, 0, 10).await.unwrap().last().unwrap().version;
    assert_eq!(inbox.erase_receiver(&me).await.unwrap(), 1);
    inbox.deliver(&page(&b, "sh", 0, 0..1), &plain()).await.unwrap();
    let news = inbox.changed_since(&me, cursor, 10).await.unwrap();
    assert_eq!(ids_of(&news), vec![b], "the new inbox's arrival is news to the old cursor");
}

pub async fn pages_delivered_together_are_delivered_as_one_by_one(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (n, m) = (NotificationId::generate(), NotificationId::generate());
    let (sh, bj, other) = (page(&n, "sh", 0, 0..500), page(&n, "bj", 0, 250..750), page(&m, "sh", 0, 0..10));
    let (meta, pinned) = (plain(), EntryMeta { pinned: true, ..plain() });
    let writes = [PageWrite::new(&sh, &meta), PageWrite::new(&bj, &meta), PageWrite::new(&other, &pinned)];
    let together = inbox.deliver_pages(&[writes[0], writes[1], writes[2], writes[0]]).await.unwrap();
    assert_eq!(
        together,
        vec![first(500), first(250), first(10), PageDelivery { added: 500, repeated: true }],
        "each page adds what it would alone, and a page listed twice is repeated the second time"
    );
    assert_eq!(inbox.deliver(&bj, &meta).await.unwrap(), PageDelivery { added: 250, repeated: true });
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.sent, c.sent_by_city.get("sh"), c.sent_by_city.get("bj")), (750, Some(&500), Some(&250)));
    assert_eq!(inbox.counters(&m).await.unwrap().sent, 10);
    assert_eq!(held(&*inbox, &rider("r00005"), &[n.clone(), m.clone()]).await.len(), 2);
    assert_eq!(inbox.deliver_pages(&[]).await.unwrap(), vec![], "no pages, nothing to do");
}

/// A notification with variants: each variant's `sent` rises by exactly the receivers a page added
/// that were shown it (a redelivery or an overlapping page moves only what is new), each one's
/// `read` with a read of it; a notification without variants has no split.
pub async fn sent_and_read_are_split_by_the_variant_shown_exactly(h: &dyn InboxHarness) {
    use ShownVariant::{Default as D, Variant as V};
    let inbox = h.open().await;
    let (n, plain_n) = (NotificationId::generate(), NotificationId::generate());
    let meta = plain();
    let (first_page, overlapping) = (page(&n, "sh", 0, 0..6), page(&n, "sh", 1, 4..8));
    let first_shown = [V(0), V(0), V(1), D, V(0), D];
    let write = PageWrite { page: &first_page, meta: &meta, shown: &first_shown };
    let plain_page = page(&plain_n, "sh", 0, 0..3);
    let delivered = inbox.deliver_pages(&[write, PageWrite::new(&plain_page, &meta)]).await.unwrap();
    assert_eq!(delivered, vec![first(6), first(3)]);
    let split = |sent: [u64; 3], read: [u64; 3]| -> std::collections::BTreeMap<ShownVariant, Tally> {
        [V(0), V(1), D]
            .into_iter()
            .zip(sent.into_iter().zip(read))
            .filter(|(_, (sent, read))| sent + read > 0)
            .map(|(shown, (sent, read))| (shown, Tally { sent, read }))
            .collect()
    };
    assert_eq!(inbox.counters(&n).await.unwrap().variants, split([3, 1, 2], [0; 3]));
    assert_eq!(inbox.deliver_pages(&[write]).await.unwrap()[0], PageDelivery { added: 6, repeated: true });
    // r00004 and r00005 hold it already: only r00006 and r00007 are new.
    let overlapping_shown = [V(0), D, V(1), V(1)];
    let write = PageWrite { page: &overlapping, meta: &meta, shown: &overlapping_shown };
    assert_eq!(inbox.deliver_pages(&[write]).await.unwrap(), vec![first(2)]);
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.sent, c.variants), (8, split([3, 3, 2], [0; 3])));

    let read_v1 = [Read { id: n.clone(), shown: Some(V(1)) }];
    assert_eq!(inbox.mark_read_shown(&rider("r00002"), &read_v1).await.unwrap(), vec![n.clone()]);
    assert!(inbox.mark_read_shown(&rider("r00002"), &read_v1).await.unwrap().is_empty(), "read once");
    inbox.mark_read_shown(&rider("r00003"), &[Read { id: n.clone(), shown: Some(D) }]).await.unwrap();
    inbox.mark_read_shown(&rider("r00009"), &[Read { id: n.clone(), shown: Some(D) }]).await.unwrap();
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.read, c.variants.clone()), (2, split([3, 3, 2], [0, 1, 1])), "r00009 holds none: no read");
    let both = inbox.counters_of(&[n.clone(), plain_n.clone()]).await.unwrap();
    assert_eq!(both[&n], c, "one read of many answers the same");
    inbox.mark_read(&rider("r00000"), std::slice::from_ref(&plain_n)).await.unwrap();
    let c = inbox.counters(&plain_n).await.unwrap();
    assert_eq!((c.sent, c.read, c.variants.len()), (3, 1, 0), "no variants, no split");
}

/// A rebuild from SQL restores entries page by page without recording pages or moving counters;
/// a later page of the same notification counts only the receivers that were not restored.
pub async fn a_restored_page_adds_entries_and_moves_no_counter(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let meta = EntryMeta { pinned: true, ..plain() };
    let sh = page(&n, "sh", 0, 0..10);
    assert_eq!(inbox.restore(&sh, &meta).await.unwrap(), 10);
    assert_eq!(inbox.restore(&sh, &meta).await.unwrap(), 0, "restoring again changes nothing");
    let me = rider("r00003");
    let listed = inbox.page(&me, Utc::now(), None, 10, None).await.unwrap();
    assert_eq!(ids_of(&listed), vec![n.clone()]);
    assert!(listed[0].position.pinned_unread, "the restored entry is ordered by its meta");
    assert_eq!(inbox.unread_count(&me, Utc::now()).await.unwrap().unread, 1);
    assert!(inbox.counters_of(std::slice::from_ref(&n)).await.unwrap().is_empty(), "no counter moved");
    assert_eq!(inbox.page_outcome(&sh.key).await.unwrap(), None, "no page recorded");
    assert_eq!(inbox.deliver(&page(&n, "sh", 1, 5..15), &meta).await.unwrap(), first(5), "only the new ones count");
    assert_eq!(inbox.mark_read(&me, std::slice::from_ref(&n)).await.unwrap(), vec![n.clone()]);
    assert_eq!(inbox.restore(&sh, &meta).await.unwrap(), 0);
    assert!(inbox.entries_of(&me, std::slice::from_ref(&n)).await.unwrap()[0].read, "a restore keeps a read flag");

    let revoked = NotificationId::generate();
    inbox.withhold(&revoked).await.unwrap();
    assert_eq!(inbox.restore(&page(&revoked, "sh", 0, 0..10), &plain()).await.unwrap(), 10);
    assert_eq!(held(&*inbox, &me, std::slice::from_ref(&revoked)).await, vec![revoked.clone()], "held, as before");
    assert_eq!(ids_of(&inbox.page(&me, Utc::now(), None, 10, None).await.unwrap()), vec![n.clone()], "but not shown");
    assert!(inbox.counters_of(std::slice::from_ref(&revoked)).await.unwrap().is_empty());
}

/// A rebuild gives the counters and the delivered pages exactly the ledger's values.
pub async fn restored_counters_and_pages_are_exactly_the_ledgers(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let (sh, bj) = (page(&n, "sh", 0, 0..10), page(&n, "bj", 0, 10..14));
    inbox.deliver(&bj, &plain()).await.unwrap();
    inbox.mark_read(&rider("r00010"), std::slice::from_ref(&n)).await.unwrap();
    let exact = Counters {
        sent: 12,
        read: 3,
        sent_by_city: [("sh".to_string(), 12)].into(),
        variants: [
            (ShownVariant::Variant(1), Tally { sent: 5, read: 2 }),
            (ShownVariant::Default, Tally { sent: 7, read: 1 }),
        ]
        .into(),
    };
    inbox.set_counters(&n, &exact).await.unwrap();
    assert_eq!(inbox.counters(&n).await.unwrap(), exact, "bj's count is gone: the ledger has none");
    inbox.set_counters(&n, &exact).await.unwrap();
    assert_eq!(inbox.counters(&n).await.unwrap(), exact, "idempotent");
    let plain_counters = Counters { variants: Default::default(), ..exact.clone() };
    inbox.set_counters(&n, &plain_counters).await.unwrap();
    assert_eq!(inbox.counters(&n).await.unwrap(), plain_counters, "a variant not given has no counters");
    inbox.set_counters(&n, &exact).await.unwrap();
    let other = NotificationId::generate();
    inbox
        .restore_pages(&[(sh.key.clone(), 12), (bj.key.clone(), 0), (page(&other, "sh", 3, 0..1).key, 1)])
        .await
        .unwrap();
    assert_eq!(inbox.page_outcome(&sh.key).await.unwrap(), Some(12));
    assert_eq!(inbox.page_outcome(&bj.key).await.unwrap(), Some(0), "what was recorded is replaced");
    assert_eq!(inbox.page_outcome(&page(&other, "sh", 3, 0..1).key).await.unwrap(), Some(1));
    assert_eq!(inbox.deliver(&sh, &plain()).await.unwrap(), PageDelivery { added: 12, repeated: true });
    assert!(
        held(&*inbox, &rider("r00001"), std::slice::from_ref(&n)).await.is_empty(),
        "a restored page writes nothing"
    );
    assert_eq!(inbox.counters(&n).await.unwrap(), exact);
}

crate::suite!($ inbox, inbox_contract, [
    redelivery_changes_nothing,
    pages_delivered_together_are_delivered_as_one_by_one,
    sent_and_read_are_split_by_the_variant_shown_exactly,
    concurrent_redelivery_counts_once,
    a_withheld_notification_gets_no_more_entries,
    a_page_delivered_after_withholding_records_zero_and_repeats_it,
    applied_revocations_are_withheld_and_remembered,
    kinds_have_separate_inboxes,
    reads_count_once_per_receiver,
    changes_are_versioned_for_sync,
    entries_survive_a_restart,
    an_erased_receiver_has_an_empty_inbox_and_the_counters_keep_history,
    an_erased_inbox_refilled_is_synced_past_an_old_cursor,
    the_list_pages_in_inbox_order_pinned_unread_first,
    only_visible_entries_are_listed_and_counted_exactly,
    sync_finds_windows_that_opened_without_the_whole_inbox,
    a_full_inbox_drops_gone_then_read_then_unread_oldest_first,
    pinned_and_unread_force_read_entries_are_kept_past_the_cap,
    a_dropped_entry_never_comes_back_nor_counts_again,
    a_restored_page_adds_entries_and_moves_no_counter,
    restored_counters_and_pages_are_exactly_the_ledgers,
    categories_are_listed_and_counted_apart_exactly,
    the_cap_trims_across_categories_and_counts_stay_exact,
    an_archived_entry_is_held_but_neither_listed_nor_counted,
    archived_entries_count_against_the_cap_and_go_with_the_read_ones,
    unseen_counts_what_arrived_or_opened_since_the_inbox_was_seen,
]);
