//! The consumer role around one page: what becomes of a revoked notification's pages.

use chrono::Utc;
use herald::startup::Ports;
use herald_consumers::{Deliverer, Outcome};
use herald_domain::ports::{CityPlan, CreateOutcome, TransitionOutcome};
use herald_domain::{
    Audience, Body, Category, City, NewNotification, Notification, Page, PageKey, ReceiverId, ReceiverKind, Status,
    Title, Topic, ValidityWindow,
};

/// A broadcast to every rider, already sending in one city (`sh`, 10 matched).
async fn sending(ports: &Ports) -> Notification {
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
    };
    let CreateOutcome::Created(n) = ports.notifications.create_notification(&content, None, Utc::now()).await.unwrap()
    else {
        panic!("not created")
    };
    let plan = [CityPlan { city: City::parse("city", "sh").unwrap(), matched: 10, members: None }];
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
    let moved = ports.notifications.transition(&n.id, Status::Revoked, "revoked", Utc::now()).await.unwrap();
    assert!(matches!(moved, TransitionOutcome::Moved(_)), "{moved:?}");
}

fn deliverer(ports: &Ports) -> Deliverer {
    Deliverer::new(ports.notifications.clone(), ports.ledger.clone(), ports.inbox.clone(), 1)
}

#[tokio::test]
async fn a_revoked_notifications_page_is_recorded_alike_by_the_inbox_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::embedded(dir.path()).await.unwrap();
    let n = sending(&ports).await;
    revoke(&ports, &n).await;
    let page = page_of(&n, 0);
    assert_eq!(deliverer(&ports).deliver(&page, Topic::Bulk).await.unwrap(), Outcome::Withheld);
    assert_eq!(ports.inbox.page_outcome(&page.key).await.unwrap(), Some(0), "the inbox store decided: nothing added");
    // A delivery of the same page that read the status before the revoke asks the inbox and agrees.
    let racing = ports.inbox.deliver(&page).await.unwrap();
    assert_eq!((racing.added, racing.repeated), (0, true));
    let progress = ports.ledger.progress(&n.id).await.unwrap();
    assert_eq!(progress[0].pages_delivered, 1);
    assert_eq!(ports.inbox.counters(&n.id).await.unwrap().sent, 0);
}
