//! The consumer role around one page: what becomes of a page that can never be delivered, of a
//! revoked notification's pages, and of a revocation the inbox store never heard of.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{TestServers, test_settings};
use herald::startup::{Ports, Roles, open_ports, start_with};
use herald_consumers::{Deliverer, Outcome};
use herald_domain::ports::{CityPlan, CreateOutcome, QueueMessage, TransitionOutcome};
use herald_domain::{
    Audience, Body, Category, City, EntryMeta, HistoryEvent, NewNotification, Notification, Page, PageKey, Receiver,
    ReceiverId, ReceiverKind, ShownVariant, Status, Title, Topic, ValidityWindow, Variants,
};

/// A broadcast to every rider, already sending in one city (`sh`, 10 matched).
async fn sending(ports: &Ports) -> Notification {
    sending_with(ports, Variants::default()).await
}

async fn sending_with(ports: &Ports, variants: Variants) -> Notification {
    let content = NewNotification {
        title: Title::parse("title", "delivery").unwrap(),
        body: Body::parse("body", "delivery test").unwrap(),
        category: Category::System,
        receiver_kind: ReceiverKind::Rider,
        audience: serde_json::from_str::<Audience>(r#"{"all": true}"#).unwrap(),
        pinned: false,
        force_read: false,
        validity: ValidityWindow::new(None, None).unwrap(),
        send_at: None,
        draft: false,
        image: None,
        actions: Default::default(),
        locales: Default::default(),
        variants,
    };
    let CreateOutcome::Created(n) = ports.notifications.create_notification(&content, None, Utc::now()).await.unwrap()
    else {
        panic!("not created")
    };
    let plan = [CityPlan { city: City::parse("city", "sh").unwrap(), matched: 10, members: None, opted_out: 0 }];
    assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    n
}

fn page_of(n: &Notification, page_no: u32) -> Page {
    Page {
        key: PageKey { notification_id: n.id.clone(), city: City::parse("city", "sh").unwrap(), page_no },
        receiver_kind: ReceiverKind::Rider,
        receivers: (0..10).map(|i| ReceiverId::parse("id", &format!("r{i}")).unwrap()).collect(),
    }
}

async fn revoke(ports: &Ports, n: &Notification) {
    let moved =
        ports.notifications.transition(&n.id, Status::Revoked, &HistoryEvent::Revoked, Utc::now()).await.unwrap();
    assert!(matches!(moved, TransitionOutcome::Moved(_)), "{moved:?}");
}

fn deliverer(ports: &Ports) -> Deliverer {
    Deliverer::new(ports.notifications.clone(), ports.ledger.clone(), ports.inbox.clone(), ports.receivers.clone(), 1)
}

#[tokio::test]
async fn a_page_that_does_not_parse_is_dead_lettered_counted_and_noted_in_its_history_and_holds_back_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let settings = test_settings(dir.path(), &servers);
    let ports = open_ports(&settings).await.unwrap();
    let n = sending(&ports).await;
    let key = format!("{}/sh/0", n.id);
    ports.queue.declare(&herald_consumers::subscription()).await.unwrap();
    let garbage = QueueMessage {
        topic: Topic::Bulk.name().into(),
        tag: "rider".into(),
        key: key.clone(),
        body: b"not a page".to_vec(),
    };
    // Pulled in one batch with pages that do parse, which are delivered beside it.
    let good = |page_no| {
        let page = Page {
            receivers: vec![ReceiverId::parse("id", &format!("good{page_no}")).unwrap()],
            ..page_of(&n, page_no)
        };
        page.to_message(Topic::Bulk).unwrap()
    };
    ports.queue.publish(&[good(1), garbage, good(2)]).await.unwrap();

    let running =
        start_with(&settings, Roles { api: true, scheduler: false, consumer: true }, ports.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ports.queue.lag(&herald_consumers::subscription()).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the page was never taken off the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics =
        reqwest::get(format!("http://{}/metrics", running.addr.unwrap())).await.unwrap().text().await.unwrap();
    running.stop().await.unwrap();

    assert!(metrics.contains("herald_pages_dead_lettered_total 1"), "{metrics}");
    assert!(metrics.contains("herald_deliveries_total 2"), "{metrics}");
    assert_eq!(ports.inbox.counters(&n.id).await.unwrap().sent, 2, "the batch's good pages were delivered");
    let history = ports.notifications.history(&n.id).await.unwrap();
    let last = history.last().unwrap();
    assert!(last.detail.contains(&key) && last.detail.contains("dead-letter"), "{history:?}");
    assert_eq!(last.status, Status::Sending, "the notification is not silently done");

    let sql = servers.sql_by_hand(dir.path()).await;
    let rows = sql.dead_letters().await;
    sql.close().await;
    assert_eq!(rows.len(), 1);
    let (msg_key, reason, body) = &rows[0];
    assert_eq!(msg_key, &key);
    assert!(!reason.is_empty());
    assert_eq!(body, b"not a page");
}

/// A page of a notification with variants splits `sent` by what each receiver's groups choose
/// (a receiver the directory no longer knows counts for the default), and its redelivery moves
/// no part.
#[tokio::test]
async fn a_redelivered_page_moves_no_variants_count() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let ports = open_ports(&test_settings(dir.path(), &servers)).await.unwrap();
    let variants: Variants = serde_json::from_value(serde_json::json!([
        {"groups": ["vip"], "title": "VIP", "body": "vip"},
        {"groups": ["new"], "title": "新人", "body": "new"}
    ]))
    .unwrap();
    let n = sending_with(&ports, variants).await;
    // r0..r3 vip (r0 new too: the first variant wins), r4 new, r5..r7 none, r8 and r9 unknown.
    let groups = |i: usize| match i {
        0 => vec!["vip", "new"],
        1..=3 => vec!["vip"],
        4 => vec!["new"],
        _ => vec![],
    };
    let receivers: Vec<Receiver> = (0..8)
        .map(|i| Receiver::parse_fields("rider", &format!("r{i}"), "sh", &groups(i).join(";")).unwrap())
        .collect();
    ports.receivers.upsert_receivers(&receivers).await.unwrap();
    let page = page_of(&n, 0);
    let deliverer = deliverer(&ports);
    assert_eq!(deliverer.deliver(&page, Topic::Bulk).await.unwrap(), Outcome::Delivered(10));
    assert_eq!(deliverer.deliver(&page, Topic::Bulk).await.unwrap(), Outcome::Repeated);
    let c = ports.inbox.counters(&n.id).await.unwrap();
    let split: Vec<(ShownVariant, u64)> = c.variants.iter().map(|(shown, t)| (*shown, t.sent)).collect();
    let expected = vec![(ShownVariant::Variant(0), 4), (ShownVariant::Variant(1), 1), (ShownVariant::Default, 5)];
    assert_eq!((c.sent, split), (10, expected));
}

#[tokio::test]
async fn a_revoked_notifications_page_is_recorded_alike_by_the_inbox_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let settings = test_settings(dir.path(), &servers);
    let ports = open_ports(&settings).await.unwrap();
    let n = sending(&ports).await;
    revoke(&ports, &n).await;
    let page = page_of(&n, 0);
    assert_eq!(deliverer(&ports).deliver(&page, Topic::Bulk).await.unwrap(), Outcome::Withheld);
    assert_eq!(ports.inbox.page_outcome(&page.key).await.unwrap(), Some(0), "the inbox store decided: nothing added");
    // A delivery of the same page that read the status before the revoke asks the inbox and agrees.
    let racing = ports.inbox.deliver(&page, &EntryMeta::of(&n)).await.unwrap();
    assert_eq!((racing.added, racing.repeated), (0, true));
    let progress = ports.ledger.progress(&n.id).await.unwrap();
    assert_eq!(progress[0].pages_delivered, 1);
    assert_eq!(ports.inbox.counters(&n.id).await.unwrap().sent, 0);
}

#[tokio::test]
async fn a_revocation_the_inbox_never_heard_of_is_applied_by_the_reconciler() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let settings = test_settings(dir.path(), &servers);
    let ports = open_ports(&settings).await.unwrap();
    let n = sending(&ports).await;
    // Logged in SQL, never withheld: the API's withhold failed after the revoke committed.
    revoke(&ports, &n).await;
    let position = ports.notifications.revocation_head().await.unwrap();
    let reconcile = async || herald_consumers::reconcile_revocations(&*ports.notifications, &*ports.inbox).await;
    assert_eq!(reconcile().await.unwrap(), 1);
    assert_eq!(ports.inbox.revocations_applied().await.unwrap(), position);
    assert_eq!(reconcile().await.unwrap(), 0, "applied once");
    let late = ports.inbox.deliver(&page_of(&n, 0), &EntryMeta::of(&n)).await.unwrap();
    assert_eq!(late.added, 0, "a page arriving later adds nothing");
    assert_eq!(ports.inbox.counters(&n.id).await.unwrap().sent, 0);
}
