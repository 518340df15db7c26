//! The `InboxStore` contract: idempotent delivery with exact counters, reads counted once.

use std::sync::Arc;

use async_trait::async_trait;
use herald_domain::ports::InboxStore;
use herald_domain::{City, NotificationId, ReceiverId, ReceiverKind, ReceiverRef};

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

fn rider(id: &str) -> ReceiverRef {
    ReceiverRef { kind: ReceiverKind::Rider, id: ReceiverId::parse("id", id).unwrap() }
}

pub async fn redelivery_changes_nothing(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let page = ids(0..500);
    assert_eq!(inbox.deliver(&n, ReceiverKind::Rider, &city("sh"), &page).await.unwrap(), 500);
    assert_eq!(inbox.deliver(&n, ReceiverKind::Rider, &city("sh"), &page).await.unwrap(), 0);
    // A page overlapping half of the first adds only the new half.
    assert_eq!(inbox.deliver(&n, ReceiverKind::Rider, &city("bj"), &ids(250..750)).await.unwrap(), 250);
    let c = inbox.counters(&n).await.unwrap();
    assert_eq!((c.sent, c.read), (750, 0));
    assert_eq!(c.sent_by_city.get("sh"), Some(&500));
    assert_eq!(c.sent_by_city.get("bj"), Some(&250));
    assert_eq!(inbox.entries(&rider("r00000")).await.unwrap().len(), 1);
}

pub async fn concurrent_redelivery_counts_once(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    let page = ids(0..500);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (inbox, n, page) = (inbox.clone(), n.clone(), page.clone());
        tasks.push(tokio::spawn(async move {
            inbox.deliver(&n, ReceiverKind::Rider, &City::parse("c", "sh").unwrap(), &page).await
        }));
    }
    let mut added = 0;
    for t in tasks {
        added += t.await.unwrap().unwrap();
    }
    assert_eq!(added, 500, "eight deliveries of one page add it once in total");
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 500);
}

pub async fn kinds_have_separate_inboxes(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let n = NotificationId::generate();
    inbox.deliver(&n, ReceiverKind::Merchant, &city("sh"), &ids(0..1)).await.unwrap();
    assert!(inbox.entries(&rider("r00000")).await.unwrap().is_empty());
    let merchant = ReceiverRef { kind: ReceiverKind::Merchant, id: ReceiverId::parse("id", "r00000").unwrap() };
    assert_eq!(inbox.entries(&merchant).await.unwrap()[0].notification_id, n);
}

pub async fn reads_count_once_per_receiver(h: &dyn InboxHarness) {
    let inbox = h.open().await;
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    inbox.deliver(&a, ReceiverKind::Rider, &city("sh"), &ids(0..3)).await.unwrap();
    inbox.deliver(&b, ReceiverKind::Rider, &city("sh"), &ids(0..3)).await.unwrap();
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
    inbox.deliver(&a, ReceiverKind::Rider, &city("sh"), &ids(0..1)).await.unwrap();
    let after_a = inbox.changed_since(&me, 0, 100).await.unwrap();
    assert_eq!(after_a.len(), 1);
    let mark = after_a[0].version;
    inbox.deliver(&b, ReceiverKind::Rider, &city("sh"), &ids(0..1)).await.unwrap();
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
    h.open().await.deliver(&n, ReceiverKind::Rider, &city("sh"), &ids(0..10)).await.unwrap();
    let inbox = h.open().await;
    assert_eq!(inbox.counters(&n).await.unwrap().sent, 10);
    assert_eq!(inbox.deliver(&n, ReceiverKind::Rider, &city("sh"), &ids(0..10)).await.unwrap(), 0);
}
