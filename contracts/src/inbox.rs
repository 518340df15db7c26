//! The `InboxStore` contract: idempotent delivery with exact counters, reads counted once.

use std::sync::Arc;

use async_trait::async_trait;
use herald_domain::ports::{InboxStore, PageDelivery};
use herald_domain::{City, NotificationId, Page, PageKey, ReceiverId, ReceiverKind, ReceiverRef};

#[async_trait]
pub trait InboxHarness: Send + Sync {
    async fn open(&self) -> Arc<dyn InboxStore>;
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
    assert_eq!(inbox.deliver(&sh).await.unwrap(), first(500));
    let again = inbox.deliver(&sh).await.unwrap();
    assert_eq!(again, PageDelivery { added: 500, repeated: true }, "a repeat reports the first outcome");
    // Another page naming half of the same receivers (one moved city mid-send) adds only the new half.
    assert_eq!(inbox.deliver(&page(&n, "bj", 0, 250..750)).await.unwrap(), first(250));
    assert_eq!(inbox.page_outcome(&sh.key).await.unwrap(), Some(500));
    assert_eq!(inbox.page_outcome(&page(&n, "bj", 1, 0..1).key).await.unwrap(), None, "never delivered");
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.sent, c.read), (750, 0));
    assert_eq!(c.sent_by_city.get("sh"), Some(&500));
    assert_eq!(c.sent_by_city.get("bj"), Some(&250));
    let other = NotificationId::generate();
    inbox.deliver(&page(&other, "sh", 0, 0..3)).await.unwrap();
    let many = inbox.counters_of(&[n.clone(), other.clone(), NotificationId::generate()]).await.unwrap();
    assert_eq!(many.get(&n), Some(&c), "one read for many gives what one read for each gives");
    assert_eq!(many.get(&other).map(|c| c.sent), Some(3));
    assert_eq!(many.len(), 2, "a notification never delivered is absent");
    assert_eq!(inbox.entries(&rider("r00000")).await.unwrap().len(), 2);
}

pub async fn a_withheld_notification_gets_no_more_entries(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    assert_eq!(inbox.deliver(&page(&n, "sh", 0, 0..10)).await.unwrap(), first(10));
    inbox.withhold(&n).await.unwrap();
    inbox.withhold(&n).await.unwrap();
    assert_eq!(inbox.deliver(&page(&n, "sh", 1, 10..20)).await.unwrap(), first(0), "nothing lands after");
    assert_eq!(inbox.page_outcome(&page(&n, "sh", 1, 10..20).key).await.unwrap(), Some(0));
    assert!(inbox.entries(&rider("r00015")).await.unwrap().is_empty());
    assert_eq!(inbox.entries(&rider("r00005")).await.unwrap().len(), 1, "what came before stays");
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10, "stats kept");
}

pub async fn a_page_delivered_after_withholding_records_zero_and_repeats_it(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    inbox.withhold(&n).await.unwrap();
    let p = page(&n, "sh", 0, 0..10);
    assert_eq!(inbox.deliver(&p).await.unwrap(), first(0), "withheld: recorded as adding nothing");
    assert_eq!(inbox.page_outcome(&p.key).await.unwrap(), Some(0));
    assert_eq!(inbox.deliver(&p).await.unwrap(), PageDelivery { added: 0, repeated: true }, "a redelivery agrees");
    assert!(inbox.entries(&rider("r00001")).await.unwrap().is_empty());
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 0);
}

pub async fn concurrent_redelivery_counts_once(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let sh = page(&n, "sh", 0, 0..500);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (inbox, sh) = (inbox.clone(), sh.clone());
        tasks.push(tokio::spawn(async move { inbox.deliver(&sh).await }));
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
    inbox.deliver(&merchant_page(&n, 0..1)).await.unwrap();
    assert!(inbox.entries(&rider("r00000")).await.unwrap().is_empty());
    let merchant = ReceiverRef { kind: ReceiverKind::Merchant, id: ReceiverId::parse("id", "r00000").unwrap() };
    assert_eq!(inbox.entries(&merchant).await.unwrap()[0].notification_id, n);
}

pub async fn reads_count_once_per_receiver(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    inbox.deliver(&page(&a, "sh", 0, 0..3)).await.unwrap();
    inbox.deliver(&page(&b, "sh", 0, 0..3)).await.unwrap();
    let me = rider("r00001");
    let stranger = NotificationId::generate();
    assert_eq!(inbox.mark_read(&me, &[a.clone(), stranger]).await.unwrap(), vec![a.clone()]);
    assert!(inbox.mark_read(&me, std::slice::from_ref(&a)).await.unwrap().is_empty(), "second read is not new");
    assert_eq!(inbox.counters(&a).await.unwrap().read, 1);
    assert_eq!(inbox.counters(&b).await.unwrap().read, 0);
    let entries = inbox.entries(&me).await.unwrap();
    assert!(entries.iter().find(|e| e.notification_id == a).unwrap().read);
    assert!(!entries.iter().find(|e| e.notification_id == b).unwrap().read);
}

pub async fn changes_are_versioned_for_sync(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let me = rider("r00000");
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    inbox.deliver(&page(&a, "sh", 0, 0..1)).await.unwrap();
    let after_a = inbox.changed_since(&me, 0, 100).await.unwrap();
    assert_eq!(after_a.len(), 1);
    let mark = after_a[0].version;
    inbox.deliver(&page(&b, "sh", 0, 0..1)).await.unwrap();
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
    h.open().await.deliver(&page(&n, "sh", 0, 0..10)).await.unwrap();
    let inbox = h.open().await;
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10);
    assert_eq!(inbox.deliver(&page(&n, "sh", 0, 0..10)).await.unwrap(), PageDelivery { added: 10, repeated: true });
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
    assert_eq!(inbox.deliver(&page(&n, "sh", 0, 0..10)).await.unwrap(), first(0), "withheld");
}

/// Erasing a receiver empties its inbox and nobody else's; the counters keep what was delivered and
/// read (stats are history), and a page delivered before the erasure, redelivered, adds nothing.
pub async fn an_erased_receiver_has_an_empty_inbox_and_the_counters_keep_history(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    let pa = page(&a, "sh", 0, 0..3);
    inbox.deliver(&pa).await.unwrap();
    inbox.deliver(&page(&b, "sh", 0, 0..2)).await.unwrap();
    let (me, other) = (rider("r00001"), rider("r00000"));
    inbox.mark_read(&me, std::slice::from_ref(&a)).await.unwrap();

    assert_eq!(inbox.erase_receiver(&me).await.unwrap(), 2, "both of its entries");
    assert!(inbox.changed_since(&me, 0, 100).await.unwrap().is_empty(), "nothing left to sync");
    assert_eq!(inbox.changed_since(&other, 0, 100).await.unwrap().len(), 2, "the others keep theirs");
    assert_eq!(inbox.erase_receiver(&me).await.unwrap(), 0, "erasing again finds nothing");
    let counters = inbox.counters(&a).await.unwrap();
    assert_eq!((counters.sent, counters.read), (3, 1));
    assert_eq!(inbox.deliver(&pa).await.unwrap(), PageDelivery { added: 3, repeated: true });
    assert!(inbox.changed_since(&me, 0, 100).await.unwrap().is_empty());
}

crate::suite!($ inbox, inbox_contract, [
    redelivery_changes_nothing,
    concurrent_redelivery_counts_once,
    a_withheld_notification_gets_no_more_entries,
    a_page_delivered_after_withholding_records_zero_and_repeats_it,
    applied_revocations_are_withheld_and_remembered,
    kinds_have_separate_inboxes,
    reads_count_once_per_receiver,
    changes_are_versioned_for_sync,
    entries_survive_a_restart,
    an_erased_receiver_has_an_empty_inbox_and_the_counters_keep_history,
]);
