//! The SQL store contract: `ReceiverDirectory`, `NotificationStore` and `SendLedger`.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use herald_domain::ports::*;
use herald_domain::{
    Action, Actions, AppSchemes, Attributes, Audience, Body, Category, City, Group, HistoryEvent, ImageUrl, Locale,
    Locales, LocalizedText, NewNotification, NotificationId, PageKey, Preferences, Receiver, ReceiverId, ReceiverKind,
    ReceiverRef, Selection, Status, Title, ValidityWindow, Variant, Variants,
};

/// The three ports of the SQL truth, as one adapter implements them (on one database).
#[derive(Clone)]
pub struct SqlPorts {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
}

#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// The adapter under test: receivers, notifications and ledger on the same database.
    async fn open(&self) -> SqlPorts;
    /// The same database as `open`, through the adapter's limited pool (`with_read_limits`): no
    /// statement may run longer than `statement_timeout`, as for the console.
    async fn open_within(&self, statement_timeout: std::time::Duration) -> SqlPorts;
}

/// The console's limit on one statement (herald's default `console.statement_timeout`).
const CONSOLE_STATEMENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

fn rid(s: &str) -> ReceiverId {
    ReceiverId::parse("id", s).unwrap()
}

fn city(s: &str) -> City {
    City::parse("city", s).unwrap()
}

fn group(s: &str) -> Group {
    Group::parse("group", s).unwrap()
}

fn rider(id: &str, c: &str, groups: &[&str]) -> Receiver {
    Receiver::new(ReceiverKind::Rider, rid(id), city(c), groups.iter().map(|g| group(g)).collect()).unwrap()
}

fn content(audience: &str) -> NewNotification {
    NewNotification {
        title: Title::parse("title", "停运通知").unwrap(),
        body: Body::parse("body", "明日系统维护").unwrap(),
        category: Category::Announcement,
        receiver_kind: ReceiverKind::Rider,
        audience: serde_json::from_str::<Audience>(audience).unwrap(),
        pinned: true,
        force_read: false,
        validity: ValidityWindow::new(None, Some(Utc::now() + Duration::days(1))).unwrap(),
        send_at: None,
        draft: false,
        image: None,
        actions: Default::default(),
        locales: Default::default(),
        variants: Default::default(),
    }
}

async fn created(ports: &SqlPorts, c: &NewNotification) -> herald_domain::Notification {
    match ports.notifications.create_notification(c, None, Utc::now()).await.unwrap() {
        CreateOutcome::Created(n) => n,
        other => panic!("expected a new notification, got {other:?}"),
    }
}

pub async fn keyset_pages_cover_a_city_exactly_once(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let all: Vec<Receiver> = (0..1234)
        .map(|i| {
            rider(&format!("r{i:05}"), if i % 3 == 0 { "bj" } else { "sh" }, if i % 2 == 0 { &["vip"] } else { &[] })
        })
        .collect();
    ports.receivers.upsert_receivers(&all).await.unwrap();
    let everyone = Selection::everyone();
    let counts = ports.receivers.count_selection(ReceiverKind::Rider, &everyone).await.unwrap();
    assert_eq!(counts, vec![(city("bj"), 412), (city("sh"), 822)]);

    let mut seen = Vec::new();
    let mut after: Option<ReceiverId> = None;
    loop {
        let page = ports
            .receivers
            .page_selection(ReceiverKind::Rider, &everyone, &city("sh"), after.as_ref(), 500)
            .await
            .unwrap();
        seen.extend(page.iter().cloned());
        if page.len() < 500 {
            break;
        }
        after = page.last().cloned();
    }
    let expected: Vec<ReceiverId> = all.iter().filter(|r| r.city == city("sh")).map(|r| r.id.clone()).collect();
    assert_eq!(seen, expected, "pages in id order, no gap, no repeat");

    let vip = Selection { cities: Some(BTreeSet::from([city("bj")])), groups: BTreeSet::from([group("vip")]) };
    assert_eq!(ports.receivers.count_selection(ReceiverKind::Rider, &vip).await.unwrap(), vec![(city("bj"), 206)]);
    let page = ports.receivers.page_selection(ReceiverKind::Rider, &vip, &city("bj"), None, 500).await.unwrap();
    assert_eq!(page.len(), 206);
    assert!(page.iter().all(|id| id.as_str()[1..].parse::<u32>().unwrap() % 6 == 0));
    let none = ports.receivers.count_selection(ReceiverKind::Merchant, &everyone).await.unwrap();
    assert!(none.is_empty(), "kinds do not mix");
}

pub async fn upsert_replaces_city_and_groups(h: &dyn StoreHarness) {
    let ports = h.open().await;
    ports.receivers.upsert_receivers(&[rider("r1", "sh", &["vip", "new"])]).await.unwrap();
    ports.receivers.upsert_receivers(&[rider("r1", "bj", &["old"])]).await.unwrap();
    let found = ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("r1"), rid("ghost")]).await.unwrap();
    assert_eq!(found, vec![rider("r1", "bj", &["old"])]);
    let vip = Selection { cities: None, groups: BTreeSet::from([group("vip")]) };
    assert!(ports.receivers.count_selection(ReceiverKind::Rider, &vip).await.unwrap().is_empty());
}

pub async fn group_names_are_matched_whole(h: &dyn StoreHarness) {
    let ports = h.open().await;
    ports.receivers.upsert_receivers(&[rider("a", "sh", &["vip_gold"]), rider("b", "sh", &["vip"])]).await.unwrap();
    let vip = Selection { cities: None, groups: BTreeSet::from([group("vip")]) };
    let page = ports.receivers.page_selection(ReceiverKind::Rider, &vip, &city("sh"), None, 500).await.unwrap();
    assert_eq!(page, vec![rid("b")], "vip does not match vip_gold");
}

pub async fn selections_of_ten_thousand_cities_and_groups_are_answered(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let all: Vec<Receiver> =
        (0..20).map(|i| rider(&format!("m{i:02}"), &format!("c{}", i % 2), &[&format!("g{i}")])).collect();
    ports.receivers.upsert_receivers(&all).await.unwrap();
    // Every even rider's group, among 10,000 named groups and 10,000 named cities.
    let groups = (0..10_000).map(|i| group(&format!("g{}", i * 2))).collect();
    let cities = (0..10_000).map(|i| city(&format!("c{i}"))).collect();
    let wide = Selection { cities: Some(cities), groups };
    let counts = ports.receivers.count_selection(ReceiverKind::Rider, &wide).await.unwrap();
    assert_eq!(counts, vec![(city("c0"), 10)]);
    let page = ports.receivers.page_selection(ReceiverKind::Rider, &wide, &city("c0"), None, 500).await.unwrap();
    assert_eq!(page.len(), 10);
    let elsewhere = city("elsewhere");
    let unnamed = ports.receivers.page_selection(ReceiverKind::Rider, &wide, &elsewhere, None, 500).await.unwrap();
    assert!(unnamed.is_empty(), "a city the selection does not name is empty");
}

/// A selection of 10,000 groups over 12,000 receivers is counted, paged by keyset and started
/// (with a city joined since its plan) within the console's limit on one statement: a plan that
/// reads the named groups once per receiver is stopped there, and the case fails on its error.
pub async fn ten_thousand_groups_over_many_receivers_are_answered_within_the_console_limit(h: &dyn StoreHarness) {
    let ports = h.open_within(CONSOLE_STATEMENT_LIMIT).await;
    // Every third rider is in a named group, the others each in an unnamed one; bj and sh alternate.
    let all: Vec<Receiver> = (0..12_000)
        .map(|i| {
            let g = if i % 3 == 0 { format!("g{}", i % 10_000) } else { format!("x{i}") };
            rider(&format!("r{i:05}"), if i % 2 == 0 { "bj" } else { "sh" }, &[&g])
        })
        .collect();
    ports.receivers.upsert_receivers(&all).await.unwrap();
    let names: Vec<String> = (0..10_000).map(|i| format!("g{i}")).collect();
    let selection = Selection { cities: None, groups: names.iter().map(|g| group(g)).collect() };
    let counts = ports.receivers.count_selection(ReceiverKind::Rider, &selection).await.unwrap();
    assert_eq!(counts, vec![(city("bj"), 2000), (city("sh"), 2000)]);

    // Counted before gz had riders: the send starts with gz's task too, but not xa's (no match).
    let audience = serde_json::json!({ "groups": names }).to_string();
    let n = created(&ports, &content(&audience)).await;
    let joined = [rider("z1", "gz", &["g7"]), rider("z2", "xa", &["x"])];
    ports.receivers.upsert_receivers(&joined).await.unwrap();
    let plan: Vec<CityPlan> =
        counts.iter().map(|(c, m)| CityPlan { city: c.clone(), matched: *m, members: None, opted_out: 0 }).collect();
    assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    let open = ports.ledger.open_tasks(false, None, 100).await.unwrap();
    let cities: Vec<String> = open.iter().map(|t| t.city.to_string()).collect();
    assert_eq!(cities, ["bj", "gz", "sh"]);

    // bj and sh: four pages of 500 each; gz: one.
    assert_eq!(page_every_task(ports.clone(), selection).await, 9);
    let mut reached = BTreeSet::new();
    for m in ports.ledger.outbox("herald_bulk", 100).await.unwrap() {
        for r in herald_domain::Page::decode(&m.message.body).unwrap().receivers {
            assert!(reached.insert(r.to_string()), "{r} paged twice");
        }
    }
    let mut expected: BTreeSet<String> = (0..12_000).filter(|i| i % 3 == 0).map(|i| format!("r{i:05}")).collect();
    expected.insert("z1".to_owned());
    assert_eq!(reached, expected, "exactly the riders in a named group");
}

pub async fn upsert_counts_only_new_or_changed_receivers(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let first = [rider("u1", "sh", &["vip"]), rider("u2", "sh", &[])];
    assert_eq!(ports.receivers.upsert_receivers(&first).await.unwrap(), 2);
    assert_eq!(ports.receivers.upsert_receivers(&first).await.unwrap(), 0, "unchanged: nothing written");
    let moved = [rider("u1", "sh", &["new", "vip"]), rider("u2", "bj", &[]), rider("u3", "bj", &[])];
    assert_eq!(ports.receivers.upsert_receivers(&moved).await.unwrap(), 3);
    let vip_new = Selection { cities: None, groups: BTreeSet::from([group("new")]) };
    let page = ports.receivers.page_selection(ReceiverKind::Rider, &vip_new, &city("sh"), None, 500).await.unwrap();
    assert_eq!(page, vec![rid("u1")], "the changed groups are selected");
}

pub async fn idempotent_create_and_lawful_transitions(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let c = content(r#"{"all": true}"#);
    let key = Idempotency { key: "k1".into(), fingerprint: "f1".into() };
    let CreateOutcome::Created(n) = ports.notifications.create_notification(&c, Some(&key), Utc::now()).await.unwrap()
    else {
        panic!("created")
    };
    assert_eq!(n.status, Status::Scheduled);
    let again = ports.notifications.create_notification(&c, Some(&key), Utc::now()).await.unwrap();
    assert_eq!(again, CreateOutcome::Replayed(n.clone()));
    let other = Idempotency { key: "k1".into(), fingerprint: "f2".into() };
    assert_eq!(
        ports.notifications.create_notification(&c, Some(&other), Utc::now()).await.unwrap(),
        CreateOutcome::KeyReused
    );
    let stored = ports.notifications.notification(&n.id).await.unwrap().unwrap();
    assert_eq!(stored.content, c, "content round-trips exactly");

    let refused =
        ports.notifications.transition(&n.id, Status::Revoked, &HistoryEvent::Revoked, Utc::now()).await.unwrap();
    assert_eq!(refused, TransitionOutcome::Refused(Status::Scheduled));
    let TransitionOutcome::Moved(moved) =
        ports.notifications.transition(&n.id, Status::Cancelled, &HistoryEvent::Cancelled, Utc::now()).await.unwrap()
    else {
        panic!("moved")
    };
    assert_eq!(moved.status, Status::Cancelled);
    let ghost = NotificationId::generate();
    let missing =
        ports.notifications.transition(&ghost, Status::Cancelled, &HistoryEvent::Cancelled, Utc::now()).await.unwrap();
    assert_eq!(missing, TransitionOutcome::NotFound);
    let history: Vec<_> =
        ports.notifications.history(&n.id).await.unwrap().into_iter().map(|e| (e.status, e.detail)).collect();
    let rendered = |e: HistoryEvent| e.to_string();
    assert_eq!(
        history,
        vec![
            (Status::Scheduled, rendered(HistoryEvent::ScheduledNow)),
            (Status::Cancelled, rendered(HistoryEvent::Cancelled))
        ],
        "each entry keeps its event as the domain renders it"
    );
}

pub async fn an_event_is_recorded_under_the_current_status(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    let failed = HistoryEvent::Retrying { step: "planning".into(), error: "sql: timed out".into() };
    assert!(ports.notifications.record_event(&n.id, &failed, Utc::now()).await.unwrap());
    let history = ports.notifications.history(&n.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.status, last.detail.as_str()), (Status::Scheduled, "planning failed, will retry: sql: timed out"));
    assert_eq!(ports.notifications.notification(&n.id).await.unwrap().unwrap().status, Status::Scheduled);
    let ghost = NotificationId::generate();
    assert!(!ports.notifications.record_event(&ghost, &failed, Utc::now()).await.unwrap(), "no such notification");
}

pub async fn revocations_are_logged_in_order(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let start = ports.notifications.revocations_since(0, 1000).await.unwrap().last().map_or(0, |(s, _)| *s);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let n = created(&ports, &content(r#"{"all": true}"#)).await;
        assert!(ports.ledger.start_sending(&n.id, &[], Utc::now()).await.unwrap());
        ports.notifications.transition(&n.id, Status::Revoked, &HistoryEvent::Revoked, Utc::now()).await.unwrap();
        ids.push(n.id);
    }
    let log = ports.notifications.revocations_since(start, 1000).await.unwrap();
    assert_eq!(log.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), ids);
    assert!(log[0].0 < log[1].0);
    assert_eq!(ports.notifications.revocations_since(log[0].0, 1000).await.unwrap().len(), 1);
    assert_eq!(ports.notifications.revocation_head().await.unwrap(), log[1].0);
}

pub async fn read_receipts_count_new_ones(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let me = ReceiverRef { kind: ReceiverKind::Rider, id: rid("r1") };
    let (a, b) = (NotificationId::generate(), NotificationId::generate());
    assert_eq!(ports.notifications.record_reads(&me, std::slice::from_ref(&a), Utc::now()).await.unwrap(), 1);
    assert_eq!(ports.notifications.record_reads(&me, &[a, b], Utc::now()).await.unwrap(), 1);
}

/// What a rebuild of the inbox store reads: who read a notification, and each page the ledger
/// recorded with what it added, both by keyset (page numbers compared as numbers).
pub async fn read_receipts_and_delivered_pages_are_listed_by_keyset(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let n = created(&ports, &content(r#"{"cities": ["bj", "sh"]}"#)).await;
    let other = created(&ports, &content(r#"{"cities": ["bj", "sh"]}"#)).await;
    let plan = [
        CityPlan { city: city("bj"), matched: 5000, members: None, opted_out: 0 },
        CityPlan { city: city("sh"), matched: 5000, members: None, opted_out: 0 },
    ];
    for id in [&n.id, &other.id] {
        assert!(ports.ledger.start_sending(id, &plan, Utc::now()).await.unwrap());
    }
    let key = |id: &NotificationId, c: &str, page_no| PageKey { notification_id: id.clone(), city: city(c), page_no };
    let pages =
        [(key(&n.id, "sh", 10), 7), (key(&n.id, "bj", 0), 500), (key(&n.id, "sh", 2), 3), (key(&n.id, "sh", 0), 1)];
    ports.ledger.pages_delivered(&pages, Utc::now()).await.unwrap();
    ports.ledger.page_delivered(&key(&other.id, "bj", 1), 9, Utc::now()).await.unwrap();
    let mut listed = Vec::new();
    let mut after: Option<(City, u32)> = None;
    loop {
        let batch = ports.ledger.delivered_pages(&n.id, after.as_ref().map(|(c, p)| (c, *p)), 2).await.unwrap();
        let Some((last, _)) = batch.last() else { break };
        after = Some((last.city.clone(), last.page_no));
        listed.extend(batch);
    }
    let expected =
        [(key(&n.id, "bj", 0), 500), (key(&n.id, "sh", 0), 1), (key(&n.id, "sh", 2), 3), (key(&n.id, "sh", 10), 7)];
    assert_eq!(listed, expected, "each page once, by (city, page number), with what it added");
    assert!(ports.ledger.delivered_pages(&NotificationId::generate(), None, 10).await.unwrap().is_empty());

    let reader = |kind, id: &str| ReceiverRef { kind, id: rid(id) };
    let (r1, r2, m1) =
        (reader(ReceiverKind::Rider, "r1"), reader(ReceiverKind::Rider, "r2"), reader(ReceiverKind::Merchant, "m1"));
    ports.notifications.record_reads(&r2, std::slice::from_ref(&n.id), Utc::now()).await.unwrap();
    ports.notifications.record_reads(&r1, &[n.id.clone(), other.id.clone()], Utc::now()).await.unwrap();
    ports.notifications.record_reads(&m1, std::slice::from_ref(&n.id), Utc::now()).await.unwrap();
    let first = ports.notifications.read_receipts(&n.id, None, 2).await.unwrap();
    assert_eq!(first, [m1.clone(), r1.clone()], "by (kind, id)");
    let rest = ports.notifications.read_receipts(&n.id, first.last(), 2).await.unwrap();
    assert_eq!(rest, std::slice::from_ref(&r2));
    assert!(ports.notifications.read_receipts(&n.id, Some(&r2), 2).await.unwrap().is_empty());
    assert_eq!(ports.notifications.read_receipts(&other.id, None, 10).await.unwrap(), [r1]);
}

/// Archives, the truth a rebuild restores archived entries from: a row per receiver action, kept
/// once however often it is recorded, gone when un-archived, listed per notification by keyset
/// (kind, id), moving nothing the console's search shows, and gone with a deleted receiver.
pub async fn archives_are_kept_per_receiver_listed_by_keyset_and_dropped_by_unarchive(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    let other = created(&ports, &content(r#"{"all": true}"#)).await;
    let reader = |kind, id: &str| ReceiverRef { kind, id: rid(id) };
    let (r1, r2, m1) =
        (reader(ReceiverKind::Rider, "r1"), reader(ReceiverKind::Rider, "r2"), reader(ReceiverKind::Merchant, "m1"));
    let head = ports.notifications.change_head().await.unwrap();
    let both = [n.id.clone(), other.id.clone()];
    assert_eq!(ports.notifications.record_archives(&r2, std::slice::from_ref(&n.id), Utc::now()).await.unwrap(), 1);
    assert_eq!(ports.notifications.record_archives(&r1, &both, Utc::now()).await.unwrap(), 2);
    assert_eq!(ports.notifications.record_archives(&r1, &both, Utc::now()).await.unwrap(), 0, "once");
    assert_eq!(ports.notifications.record_archives(&m1, std::slice::from_ref(&n.id), Utc::now()).await.unwrap(), 1);
    assert_eq!(ports.notifications.change_head().await.unwrap(), head, "the search shows no archive");

    let first = ports.notifications.archives(&n.id, None, 2).await.unwrap();
    assert_eq!(first, [m1.clone(), r1.clone()], "by (kind, id)");
    let rest = ports.notifications.archives(&n.id, first.last(), 2).await.unwrap();
    assert_eq!(rest, std::slice::from_ref(&r2));
    assert!(ports.notifications.archives(&n.id, Some(&r2), 2).await.unwrap().is_empty());

    let unknown = NotificationId::generate();
    assert_eq!(ports.notifications.remove_archives(&r1, &[n.id.clone(), unknown]).await.unwrap(), 1);
    assert_eq!(ports.notifications.remove_archives(&r1, std::slice::from_ref(&n.id)).await.unwrap(), 0, "once");
    assert_eq!(ports.notifications.archives(&n.id, None, 10).await.unwrap(), [m1.clone(), r2.clone()]);
    assert_eq!(
        ports.notifications.archives(&other.id, None, 10).await.unwrap(),
        std::slice::from_ref(&r1),
        "the other stays"
    );
    assert_eq!(ports.notifications.change_head().await.unwrap(), head);

    ports.receivers.upsert_receivers(&[rider("r2", "sh", &[])]).await.unwrap();
    assert!(ports.receivers.delete_receiver(ReceiverKind::Rider, &rid("r2")).await.unwrap());
    assert_eq!(ports.notifications.archives(&n.id, None, 10).await.unwrap(), [m1], "a deleted receiver's went");
}

fn page_message(n: &NotificationId, c: &str, page_no: u32) -> QueueMessage {
    let key = PageKey { notification_id: n.clone(), city: city(c), page_no };
    QueueMessage { topic: "t".into(), tag: "rider".into(), key: key.to_string(), body: b"{}".to_vec() }
}

/// The relay reads the outbox one topic at a time, oldest first, so a direct page written after a
/// broadcast's backlog is the first of its own topic.
pub async fn the_outbox_is_read_per_topic_oldest_first(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let bulk = created(&ports, &content(r#"{"all": true}"#)).await;
    let direct = created(&ports, &content(r#"{"include": ["x"]}"#)).await;
    for n in [&bulk, &direct] {
        let plan = [CityPlan { city: city("sh"), matched: 1000, members: None, opted_out: 0 }];
        assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    }
    let mut tasks = ports.ledger.open_tasks(false, None, 10).await.unwrap();
    tasks.extend(ports.ledger.open_tasks(true, None, 10).await.unwrap());
    for task in &tasks {
        let (n, topic, pages) =
            if task.notification_id == bulk.id { (&bulk, "bulk_topic", 3) } else { (&direct, "direct_topic", 1) };
        let mut task = task.clone();
        for page_no in 0..pages {
            let mut message = page_message(&n.id, "sh", page_no);
            message.topic = topic.into();
            let last = rid(&format!("r{page_no}"));
            let step =
                PageStep { page: Some((message, 1)), last_receiver: Some(last.clone()), finished: false, opted_out: 0 };
            assert!(ports.ledger.advance(&task, &step).await.unwrap());
            task.pages_published += 1;
            task.last_receiver = Some(last);
        }
    }
    let keys = |rows: Vec<OutboxMessage>| rows.into_iter().map(|m| m.message.key).collect::<Vec<_>>();
    let page = |n: &herald_domain::Notification, p| {
        PageKey { notification_id: n.id.clone(), city: city("sh"), page_no: p }.to_string()
    };
    assert_eq!(keys(ports.ledger.outbox("direct_topic", 10).await.unwrap()), [page(&direct, 0)]);
    assert_eq!(keys(ports.ledger.outbox("bulk_topic", 2).await.unwrap()), [page(&bulk, 0), page(&bulk, 1)]);
    assert!(ports.ledger.outbox("other", 10).await.unwrap().is_empty());
}

pub async fn a_send_is_resumable_and_completes_once(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let mut later = content(r#"{"all": true}"#);
    later.send_at = Some(Utc::now() + Duration::hours(1));
    let later = created(&ports, &later).await;
    let n = created(&ports, &content(r#"{"cities": ["sh", "bj"]}"#)).await;
    let due: Vec<_> = ports.ledger.due(Utc::now(), 100).await.unwrap().into_iter().map(|d| d.id).collect();
    assert!(due.contains(&n.id) && !due.contains(&later.id), "only what is due");

    let plan = [
        CityPlan { city: city("bj"), matched: 0, members: None, opted_out: 0 },
        CityPlan { city: city("sh"), matched: 600, members: None, opted_out: 0 },
    ];
    assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    assert!(!ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap(), "starts once");
    let tasks: Vec<SendTask> = ports
        .ledger
        .open_tasks(false, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.notification_id == n.id)
        .collect();
    assert_eq!(tasks.len(), 2);
    let (bj, sh) = (&tasks[0], &tasks[1]);
    assert_eq!((bj.city.as_str(), sh.city.as_str(), sh.pages_published), ("bj", "sh", 0));

    // bj: nothing to page, finished at once.
    let empty = PageStep { page: None, last_receiver: None, finished: true, opted_out: 0 };
    assert!(ports.ledger.advance(bj, &empty).await.unwrap());
    // sh: two pages.
    let first = PageStep {
        page: Some((page_message(&n.id, "sh", 0), 500)),
        last_receiver: Some(rid("r499")),
        finished: false,
        opted_out: 0,
    };
    assert!(ports.ledger.advance(sh, &first).await.unwrap());
    assert!(!ports.ledger.advance(sh, &first).await.unwrap(), "a stale task cannot advance twice");
    let sh = ports
        .ledger
        .open_tasks(false, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.notification_id == n.id)
        .unwrap();
    assert_eq!((sh.pages_published, sh.last_receiver.clone()), (1, Some(rid("r499"))));
    let last = PageStep {
        page: Some((page_message(&n.id, "sh", 1), 90)),
        last_receiver: Some(rid("r589")),
        finished: true,
        opted_out: 0,
    };
    assert!(ports.ledger.advance(&sh, &last).await.unwrap());
    assert!(ports.ledger.open_tasks(false, None, 100).await.unwrap().iter().all(|t| t.notification_id != n.id));

    let outbox = ports.ledger.outbox("t", 100).await.unwrap();
    let mine: Vec<_> = outbox.iter().filter(|m| m.message.key.starts_with(n.id.as_str())).collect();
    assert_eq!(mine.len(), 2);
    ports.ledger.outbox_published(&mine.iter().map(|m| m.id).collect::<Vec<_>>()).await.unwrap();
    assert!(ports.ledger.outbox("t", 100).await.unwrap().iter().all(|m| !m.message.key.starts_with(n.id.as_str())));

    let key = |p| PageKey { notification_id: n.id.clone(), city: city("sh"), page_no: p };
    // Recorded together (a consumer's batch): each as if alone, a page listed twice absorbed.
    let together = ports.ledger.pages_delivered(&[(key(0), 500), (key(0), 0)], Utc::now()).await.unwrap();
    assert_eq!(together, [false, false], "a redelivered page is absorbed");
    let status = |ports: SqlPorts, id: NotificationId| async move {
        ports.notifications.notification(&id).await.unwrap().unwrap().status
    };
    assert_eq!(status(ports.clone(), n.id.clone()).await, Status::Sending);
    let together = ports.ledger.pages_delivered(&[(key(1), 90), (key(1), 0), (key(0), 0)], Utc::now()).await.unwrap();
    assert_eq!(together, [true, false, false], "the last page completes the send, and only once");
    assert!(!ports.ledger.page_delivered(&key(1), 0, Utc::now()).await.unwrap(), "and only once");
    assert_eq!(status(ports.clone(), n.id.clone()).await, Status::Sent);

    let progress = ports.ledger.progress(&n.id).await.unwrap();
    let never_sent = NotificationId::generate();
    let many = ports.ledger.progress_of(&[n.id.clone(), never_sent.clone()]).await.unwrap();
    assert_eq!(many.get(&n.id), Some(&progress), "one read for many gives what one read for each gives");
    assert!(!many.contains_key(&never_sent));
    let sh = progress.iter().find(|p| p.city == city("sh")).unwrap();
    assert_eq!((sh.matched, sh.published, sh.pages_published, sh.pages_delivered, sh.done), (590, 590, 2, 2, true));
    assert!(progress.iter().all(|p| p.done));
    let history: Vec<_> = ports.notifications.history(&n.id).await.unwrap().into_iter().map(|e| e.status).collect();
    assert_eq!(history, vec![Status::Scheduled, Status::Sending, Status::Sent]);
}

pub async fn a_late_joiner_is_paged_into_the_broadcasts_it_now_matches(h: &dyn StoreHarness) {
    let ports = h.open().await;
    ports.receivers.upsert_receivers(&[rider("early", "sh", &[])]).await.unwrap();
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    let direct = created(&ports, &content(r#"{"include": ["early"]}"#)).await;
    let snapshot = [CityPlan { city: city("sh"), matched: 1, members: Some(vec![rid("early")]), opted_out: 0 }];
    assert!(ports.ledger.start_sending(&direct.id, &snapshot, Utc::now()).await.unwrap());
    assert!(
        ports
            .ledger
            .start_sending(&n.id, &[CityPlan { city: city("sh"), matched: 1, members: None, opted_out: 0 }], Utc::now())
            .await
            .unwrap()
    );
    let task = ports.ledger.open_tasks(false, None, 10).await.unwrap().remove(0);
    let step = PageStep {
        page: Some((page_message(&n.id, "sh", 0), 1)),
        last_receiver: Some(rid("early")),
        finished: true,
        opted_out: 0,
    };
    assert!(ports.ledger.advance(&task, &step).await.unwrap());
    let key = |c: &str, page_no| PageKey { notification_id: n.id.clone(), city: city(c), page_no };
    assert!(ports.ledger.page_delivered(&key("sh", 0), 1, Utc::now()).await.unwrap(), "sent");
    let published: Vec<i64> = ports.ledger.outbox("t", 100).await.unwrap().iter().map(|m| m.id).collect();
    ports.ledger.outbox_published(&published).await.unwrap();

    // One joins in a new city, one in sh; the include list is a snapshot and gets neither.
    let joiners = [rider("late1", "bj", &[]), rider("late2", "sh", &[])];
    assert_eq!(ports.receivers.upsert_receivers(&joiners).await.unwrap(), 2);
    let outbox = ports.ledger.outbox("herald_bulk", 100).await.unwrap();
    let keys: Vec<&str> = outbox.iter().map(|m| m.message.key.as_str()).collect();
    assert_eq!(keys, [key("bj", 0).to_string(), key("sh", 1).to_string()]);
    let page = herald_domain::Page::decode(&outbox[0].message.body).unwrap();
    assert_eq!((page.key, page.receivers), (key("bj", 0), vec![rid("late1")]));
    let progress = ports.ledger.progress(&n.id).await.unwrap();
    let shown: Vec<_> = progress.iter().map(|p| (p.city.as_str(), p.matched, p.pages_published, p.done)).collect();
    assert_eq!(shown, [("bj", 1, 1, false), ("sh", 2, 2, false)]);
    assert_eq!(ports.ledger.progress(&direct.id).await.unwrap()[0].pages_published, 0, "no late page");
    let status = ports.notifications.notification(&n.id).await.unwrap().unwrap().status;
    assert_eq!(status, Status::Sent, "a sent notification stays sent");

    assert_eq!(ports.receivers.upsert_receivers(&joiners).await.unwrap(), 0);
    assert_eq!(ports.ledger.outbox_len().await.unwrap(), 2, "an unchanged receiver is not paged again");
    assert!(!ports.ledger.page_delivered(&key("bj", 0), 1, Utc::now()).await.unwrap());
    assert!(!ports.ledger.page_delivered(&key("sh", 1), 0, Utc::now()).await.unwrap());
    let progress = ports.ledger.progress(&n.id).await.unwrap();
    let shown: Vec<_> = progress.iter().map(|p| (p.city.as_str(), p.matched, p.done)).collect();
    assert_eq!(shown, [("bj", 1, true), ("sh", 1, true)], "matched = what the pages added");

    // New attributes alone are written and counted, but reach no one new: no late page.
    let renamed = [rider("late2", "sh", &[]).with_attributes(attributes(r#"{"name": "L2"}"#))];
    assert_eq!(ports.receivers.upsert_receivers(&renamed).await.unwrap(), 1);
    assert_eq!(ports.ledger.outbox_len().await.unwrap(), 2, "an attribute change pages nothing");
}

fn attributes(json: &str) -> Attributes {
    Attributes::parse_json("attributes", json).unwrap()
}

pub async fn receivers_keep_their_attributes(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let named = rider("a1", "sh", &["vip"]).with_attributes(attributes(r#"{"name": "小王", "level": "3"}"#));
    let plain = rider("a2", "sh", &[]);
    assert_eq!(ports.receivers.upsert_receivers(&[named.clone(), plain.clone()]).await.unwrap(), 2);
    assert_eq!(ports.receivers.upsert_receivers(&[named.clone(), plain.clone()]).await.unwrap(), 0, "unchanged");
    let found = ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("a1"), rid("a2")]).await.unwrap();
    assert_eq!(found, vec![named.clone(), plain.clone()]);
    let listed = ports.receivers.list_receivers(Some(ReceiverKind::Rider), None, None, 10).await.unwrap();
    assert_eq!(listed, vec![named.clone(), plain], "listing reads them too");
    // An upsert replaces them whole; none is none.
    let renamed = rider("a1", "sh", &["vip"]).with_attributes(attributes(r#"{"name": "Wang"}"#));
    assert_eq!(ports.receivers.upsert_receivers(std::slice::from_ref(&renamed)).await.unwrap(), 1);
    let cleared = rider("a1", "sh", &["vip"]);
    let found = ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("a1")]).await.unwrap();
    assert_eq!(found, vec![renamed]);
    assert_eq!(ports.receivers.upsert_receivers(std::slice::from_ref(&cleared)).await.unwrap(), 1);
    assert_eq!(ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("a1")]).await.unwrap(), vec![cleared]);
}

pub async fn notifications_keep_their_image_and_actions(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let schemes = AppSchemes::default();
    let mut rich = content(r#"{"all": true}"#);
    rich.title = Title::parse("title", "{{receiver.attr.name}}，您好").unwrap();
    rich.image = Some(ImageUrl::parse("image", "https://cdn.example.com/a.png").unwrap());
    let actions = vec![
        Action::parse("url", "https://example.com/promo", Some("查看"), &schemes).unwrap(),
        Action::parse("deep_link", "herald://orders/42", None, &schemes).unwrap(),
    ];
    rich.actions = Actions::new("actions", actions).unwrap();
    let n = created(&ports, &rich).await;
    assert_eq!(n.content, rich);
    let stored = ports.notifications.notification(&n.id).await.unwrap().unwrap();
    assert_eq!(stored.content, rich, "image, actions and the template read back as written");
    let plain = created(&ports, &content(r#"{"all": true}"#)).await;
    let both = ports.notifications.notifications(&[n.id.clone(), plain.id.clone()]).await.unwrap();
    let plain_read = both.iter().find(|x| x.id == plain.id).unwrap();
    assert_eq!((plain_read.content.image.as_ref(), plain_read.content.actions.is_empty()), (None, true));
}

pub async fn receivers_keep_their_locale(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let zh = rider("l1", "sh", &[]).with_locale(Some(Locale::parse("locale", "zh-CN").unwrap()));
    let plain = rider("l2", "sh", &[]);
    assert_eq!(ports.receivers.upsert_receivers(&[zh.clone(), plain.clone()]).await.unwrap(), 2);
    assert_eq!(ports.receivers.upsert_receivers(&[zh.clone(), plain.clone()]).await.unwrap(), 0, "unchanged");
    let found = ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("l1"), rid("l2")]).await.unwrap();
    assert_eq!(found, vec![zh.clone(), plain.clone()]);
    let listed = ports.receivers.list_receivers(Some(ReceiverKind::Rider), None, None, 10).await.unwrap();
    assert_eq!(listed, vec![zh, plain], "listing reads it too");
    // A locale alone changing is a change; none is none.
    let en = rider("l1", "sh", &[]).with_locale(Some(Locale::parse("locale", "en").unwrap()));
    assert_eq!(ports.receivers.upsert_receivers(std::slice::from_ref(&en)).await.unwrap(), 1);
    assert_eq!(ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("l1")]).await.unwrap(), vec![en]);
    let cleared = rider("l1", "sh", &[]);
    assert_eq!(ports.receivers.upsert_receivers(std::slice::from_ref(&cleared)).await.unwrap(), 1);
    assert_eq!(ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("l1")]).await.unwrap(), vec![cleared]);
}

pub async fn notifications_keep_their_variants_and_locales(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let schemes = AppSchemes::default();
    let text = |title: &str, body: &str| LocalizedText {
        title: Title::parse("title", title).unwrap(),
        body: Body::parse("body", body).unwrap(),
    };
    let locales = |pairs: &[(&str, LocalizedText)]| {
        Locales::new("locales", pairs.iter().map(|(l, t)| (l.to_string(), t.clone())).collect()).unwrap()
    };
    let mut n = content(r#"{"all": true}"#);
    n.locales = locales(&[("en", text("Hello {{receiver.attr.name}}", "b")), ("zh-CN", text("你好", "正文"))]);
    let vip = Variant::new(
        vec![group("vip"), group("gold")],
        Title::parse("title", "VIP 专享").unwrap(),
        Body::parse("body", "专享正文").unwrap(),
        Some(ImageUrl::parse("image", "https://cdn.example.com/vip.png").unwrap()),
        Actions::new("actions", vec![Action::parse("deep_link", "herald://vip", Some("去看看"), &schemes).unwrap()])
            .unwrap(),
        locales(&[("en", text("VIP only", "for you"))]),
    )
    .unwrap();
    let plain_variant = Variant::new(
        vec![group("new")],
        Title::parse("title", "新人").unwrap(),
        Body::parse("body", "欢迎").unwrap(),
        None,
        Actions::default(),
        Locales::default(),
    )
    .unwrap();
    n.variants = Variants::new("variants", vec![vip, plain_variant]).unwrap();
    let kept = created(&ports, &n).await;
    let stored = ports.notifications.notification(&kept.id).await.unwrap().unwrap();
    assert_eq!(stored.content, n, "variants (in order) and locales read back as written");
    let plain = created(&ports, &content(r#"{"all": true}"#)).await;
    let read = ports.notifications.notifications(std::slice::from_ref(&plain.id)).await.unwrap();
    assert!(read[0].content.variants.is_empty() && read[0].content.locales.is_empty());
}

pub async fn a_city_reached_after_the_plan_was_counted_gets_a_task_when_sending_starts(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let everyone = created(&ports, &content(r#"{"all": true}"#)).await;
    let vip = created(&ports, &content(r#"{"groups": ["vip"]}"#)).await;
    let named = created(&ports, &content(r#"{"cities": ["sh"]}"#)).await;
    // Counted when only sh had riders; bj and gz joined before sending started.
    let joined = [rider("s1", "sh", &["vip"]), rider("b1", "bj", &[]), rider("g1", "gz", &["vip"])];
    ports.receivers.upsert_receivers(&joined).await.unwrap();
    let plan = [CityPlan { city: city("sh"), matched: 1, members: None, opted_out: 0 }];
    for n in [&everyone, &vip, &named] {
        assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    }
    let open = ports.ledger.open_tasks(false, None, 100).await.unwrap();
    let cities = |id: &NotificationId| -> Vec<String> {
        open.iter().filter(|t| &t.notification_id == id).map(|t| t.city.to_string()).collect()
    };
    assert_eq!(cities(&everyone.id), ["bj", "gz", "sh"], "every city with riders is paged");
    assert_eq!(cities(&vip.id), ["gz", "sh"], "every city where the selection matches someone");
    assert_eq!(cities(&named.id), ["sh"], "named cities are the plan's already");
}

pub async fn an_empty_plan_is_sent_at_once(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    assert!(ports.ledger.start_sending(&n.id, &[], Utc::now()).await.unwrap());
    assert_eq!(ports.notifications.notification(&n.id).await.unwrap().unwrap().status, Status::Sent);
}

pub async fn state_survives_a_restart(h: &dyn StoreHarness) {
    let n = created(&h.open().await, &content(r#"{"all": true}"#)).await;
    let ports = h.open().await;
    assert_eq!(ports.notifications.notification(&n.id).await.unwrap().unwrap().id, n.id);
}

pub async fn include_snapshots_are_kept_and_listed_apart(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let broadcast = created(&ports, &content(r#"{"all": true}"#)).await;
    let direct = created(&ports, &content(r#"{"include": ["r2", "r1"]}"#)).await;
    let everyone = [CityPlan { city: city("sh"), matched: 9, members: None, opted_out: 0 }];
    assert!(ports.ledger.start_sending(&broadcast.id, &everyone, Utc::now()).await.unwrap());
    let members = vec![rid("r1"), rid("r2")];
    let snapshot = [CityPlan { city: city("sh"), matched: 2, members: Some(members.clone()), opted_out: 0 }];
    assert!(ports.ledger.start_sending(&direct.id, &snapshot, Utc::now()).await.unwrap());
    let directs = ports.ledger.open_tasks(true, None, 100).await.unwrap();
    assert!(directs.iter().all(|t| t.notification_id != broadcast.id));
    let task = directs.iter().find(|t| t.notification_id == direct.id).unwrap();
    assert_eq!(task.members, Some(members));
    let bulk = ports.ledger.open_tasks(false, None, 100).await.unwrap();
    assert!(bulk.iter().all(|t| t.notification_id != direct.id && t.members.is_none()));
    assert!(bulk.iter().any(|t| t.notification_id == broadcast.id));
}

pub async fn open_tasks_page_by_keyset(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    let plan: Vec<_> =
        ["a", "b", "c"].iter().map(|c| CityPlan { city: city(c), matched: 1, members: None, opted_out: 0 }).collect();
    assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    let mine = |tasks: Vec<SendTask>| -> Vec<String> {
        tasks.into_iter().filter(|t| t.notification_id == n.id).map(|t| t.city.to_string()).collect()
    };
    assert_eq!(mine(ports.ledger.open_tasks(false, None, 1000).await.unwrap()), ["a", "b", "c"]);
    let after_a = ports.ledger.open_tasks(false, Some((&n.id, &city("a"))), 1000).await.unwrap();
    assert_eq!(mine(after_a), ["b", "c"]);
    assert!(mine(ports.ledger.open_tasks(false, Some((&n.id, &city("c"))), 1000).await.unwrap()).is_empty());
}

/// The age operations watch: the oldest send with a city not done, until that city is done.
pub async fn the_oldest_open_send_is_the_earliest_started_with_a_city_not_done(h: &dyn StoreHarness) {
    let ports = h.open().await;
    // Earlier than every send this case started before (on a database kept between runs, one a
    // failed run left open too): the later the run, the earlier this time.
    let epoch = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    let began = epoch - (Utc::now() - epoch);
    let began = chrono::DateTime::from_timestamp_millis(began.timestamp_millis()).unwrap();
    let old = created(&ports, &content(r#"{"cities": ["sh", "bj"]}"#)).await;
    let plan = [
        CityPlan { city: city("bj"), matched: 0, members: None, opted_out: 0 },
        CityPlan { city: city("sh"), matched: 1, members: None, opted_out: 0 },
    ];
    assert!(ports.ledger.start_sending(&old.id, &plan, began).await.unwrap());
    let newer = created(&ports, &content(r#"{"all": true}"#)).await;
    let one = [CityPlan { city: city("sh"), matched: 1, members: None, opted_out: 0 }];
    assert!(ports.ledger.start_sending(&newer.id, &one, began + Duration::seconds(1)).await.unwrap());
    assert_eq!(ports.ledger.oldest_open_send().await.unwrap(), Some(began));

    // bj finishes at once with nothing to page; sh is still open, paged but not delivered.
    let tasks = ports.ledger.open_tasks(false, None, 10_000).await.unwrap();
    let task = |c: &str| tasks.iter().find(|t| t.notification_id == old.id && t.city == city(c)).unwrap();
    assert!(
        ports
            .ledger
            .advance(task("bj"), &PageStep { page: None, last_receiver: None, finished: true, opted_out: 0 })
            .await
            .unwrap()
    );
    let page = PageStep {
        page: Some((page_message(&old.id, "sh", 0), 1)),
        last_receiver: Some(rid("r1")),
        finished: true,
        opted_out: 0,
    };
    assert!(ports.ledger.advance(task("sh"), &page).await.unwrap());
    assert_eq!(ports.ledger.oldest_open_send().await.unwrap(), Some(began), "paged is not done");

    let key = PageKey { notification_id: old.id.clone(), city: city("sh"), page_no: 0 };
    assert!(ports.ledger.page_delivered(&key, 1, Utc::now()).await.unwrap(), "its last city is done");
    let oldest = ports.ledger.oldest_open_send().await.unwrap();
    assert!(oldest.is_some_and(|t| t > began), "the sent one is no longer the oldest: {oldest:?}");
    assert!(oldest.is_some_and(|t| t <= began + Duration::seconds(1)), "the newer one is open: {oldest:?}");
}

/// The console looks receivers up and pages through them by id, in one city or all.
pub async fn receivers_are_listed_by_id_in_pages(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let mut all: Vec<Receiver> = (0..25).map(|i| rider(&format!("r{i:02}"), ["sh", "bj"][i % 2], &["vip"])).collect();
    let merchant = Receiver::new(ReceiverKind::Merchant, rid("r00"), city("sh"), vec![]).unwrap();
    all.push(merchant);
    ports.receivers.upsert_receivers(&all).await.unwrap();

    let riders = Some(ReceiverKind::Rider);
    let mut seen = Vec::new();
    let mut after: Option<ReceiverRef> = None;
    loop {
        let page = ports.receivers.list_receivers(riders, None, after.as_ref(), 10).await.unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = Some(ReceiverRef { kind: last.kind, id: last.id.clone() });
        seen.extend(page.iter().map(|r| r.id.as_str().to_string()));
    }
    let expected: Vec<String> = (0..25).map(|i| format!("r{i:02}")).collect();
    assert_eq!(seen, expected, "every rider once, by id, no merchant");

    let r10 = ReceiverRef { kind: ReceiverKind::Rider, id: rid("r10") };
    let sh = ports.receivers.list_receivers(riders, Some(&city("sh")), Some(&r10), 100).await.unwrap();
    let sh: Vec<&str> = sh.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(sh, ["r12", "r14", "r16", "r18", "r20", "r22", "r24"]);
    let both = ports.receivers.list_receivers(None, Some(&city("sh")), None, 2).await.unwrap();
    let both: Vec<String> = both.iter().map(|r| ReceiverRef { kind: r.kind, id: r.id.clone() }.key()).collect();
    assert_eq!(both, ["merchant:r00", "rider:r00"], "every kind, by (kind, id)");
    let one = ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("r03")]).await.unwrap();
    assert_eq!(one, vec![all[3].clone()], "looked up with its city and groups");
}

/// Deleting a receiver takes it out of the directory, its groups and its read receipts; a second
/// delete finds nothing.
pub async fn a_deleted_receiver_is_gone_with_its_groups_and_read_receipts(h: &dyn StoreHarness) {
    let ports = h.open().await;
    ports.receivers.upsert_receivers(&[rider("r1", "sh", &["vip"]), rider("r2", "sh", &["vip"])]).await.unwrap();
    let me = ReceiverRef { kind: ReceiverKind::Rider, id: rid("r1") };
    let n = NotificationId::generate();
    assert_eq!(ports.notifications.record_reads(&me, std::slice::from_ref(&n), Utc::now()).await.unwrap(), 1);

    assert!(ports.receivers.delete_receiver(ReceiverKind::Rider, &rid("r1")).await.unwrap());
    assert!(!ports.receivers.delete_receiver(ReceiverKind::Rider, &rid("r1")).await.unwrap(), "already gone");
    assert!(ports.receivers.lookup_receivers(ReceiverKind::Rider, &[rid("r1")]).await.unwrap().is_empty());
    let vip = Selection { cities: None, groups: [group("vip")].into() };
    assert_eq!(ports.receivers.count_selection(ReceiverKind::Rider, &vip).await.unwrap(), vec![(city("sh"), 1)]);
    let page = ports.receivers.page_selection(ReceiverKind::Rider, &vip, &city("sh"), None, 10).await.unwrap();
    assert_eq!(page, vec![rid("r2")], "paging no longer reaches it");
    assert_eq!(
        ports.notifications.record_reads(&me, std::slice::from_ref(&n), Utc::now()).await.unwrap(),
        1,
        "its read receipt went with it"
    );

    ports.receivers.upsert_receivers(&[rider("r1", "sh", &[])]).await.unwrap();
    assert_eq!(
        ports.receivers.count_selection(ReceiverKind::Rider, &vip).await.unwrap(),
        vec![(city("sh"), 1)],
        "created again, it is a new receiver: the old groups are not back"
    );
}

/// The notification's position in the search mirror's change log (`None` if it has none), which
/// lists it at most once.
async fn change_position(ports: &SqlPorts, id: &NotificationId) -> Option<u64> {
    let log = ports.notifications.changes_since(0, 100_000).await.unwrap();
    let mine: Vec<u64> = log.iter().filter(|(_, n)| n == id).map(|(p, _)| *p).collect();
    assert!(mine.len() <= 1, "one entry per notification, at its latest change: {mine:?}");
    mine.first().copied()
}

/// Asserts the notification moved above `last` in the change log, and is now its head.
async fn moved_up(ports: &SqlPorts, id: &NotificationId, last: &mut u64, change: &str) {
    let now = change_position(ports, id).await.unwrap_or_else(|| panic!("{change}: not in the change log"));
    assert!(now > *last, "{change} gives the notification a new, higher position ({now} after {last})");
    assert_eq!(ports.notifications.change_head().await.unwrap(), now, "{change}: the head is the latest change");
    *last = now;
}

/// Every change the console's search shows moves its notification up the change log, in the
/// change's own transaction; the log keeps one entry per notification and pages by position.
pub async fn every_change_the_search_shows_moves_the_notification_up_the_change_log(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let mut last = ports.notifications.change_head().await.unwrap();
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    moved_up(&ports, &n.id, &mut last, "creating").await;

    let me = ReceiverRef { kind: ReceiverKind::Rider, id: rid("early") };
    ports.notifications.record_reads(&me, std::slice::from_ref(&n.id), Utc::now()).await.unwrap();
    moved_up(&ports, &n.id, &mut last, "a new read receipt").await;
    let unknown = NotificationId::generate();
    ports.notifications.record_reads(&me, std::slice::from_ref(&unknown), Utc::now()).await.unwrap();
    assert_eq!(change_position(&ports, &unknown).await, None, "a receipt of no stored notification is no change");

    let plan = [CityPlan { city: city("sh"), matched: 1, members: None, opted_out: 0 }];
    assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    moved_up(&ports, &n.id, &mut last, "sending starting").await;
    let task = ports.ledger.open_tasks(false, None, 10).await.unwrap().remove(0);
    let step = PageStep {
        page: Some((page_message(&n.id, "sh", 0), 1)),
        last_receiver: Some(rid("early")),
        finished: true,
        opted_out: 0,
    };
    assert!(ports.ledger.advance(&task, &step).await.unwrap());
    moved_up(&ports, &n.id, &mut last, "a city's paging finishing (matched settles)").await;
    let key = PageKey { notification_id: n.id.clone(), city: city("sh"), page_no: 0 };
    assert!(ports.ledger.page_delivered(&key, 1, Utc::now()).await.unwrap());
    moved_up(&ports, &n.id, &mut last, "a page delivered (and the send completing)").await;
    let published: Vec<i64> = ports.ledger.outbox("t", 100).await.unwrap().iter().map(|m| m.id).collect();
    ports.ledger.outbox_published(&published).await.unwrap();
    assert_eq!(ports.receivers.upsert_receivers(&[rider("late", "bj", &[])]).await.unwrap(), 1);
    moved_up(&ports, &n.id, &mut last, "a late joiner paged in (matched grows)").await;
    ports.notifications.transition(&n.id, Status::Revoked, &HistoryEvent::Revoked, Utc::now()).await.unwrap();
    moved_up(&ports, &n.id, &mut last, "revoking").await;

    let other = created(&ports, &content(r#"{"all": true}"#)).await;
    let mut other_at = 0;
    moved_up(&ports, &other.id, &mut other_at, "creating another").await;
    assert!(other_at > last);
    let after = ports.notifications.changes_since(last - 1, 10).await.unwrap();
    assert_eq!(after, [(last, n.id.clone()), (other_at, other.id.clone())], "by position, lowest first");
    assert_eq!(ports.notifications.changes_since(last - 1, 1).await.unwrap(), [(last, n.id.clone())], "limited");
    assert!(ports.notifications.changes_since(other_at, 10).await.unwrap().is_empty());
}

/// Positions become visible in commit order: a reader following the log while many writers change
/// notifications at once sees every notification's latest position, never a change committed
/// below a position it had already read (which it would never read again). A store with
/// concurrent writers meets this only by design (`NotificationStore::changes_since`).
pub async fn a_reader_following_the_change_log_misses_nothing_written_concurrently(h: &dyn StoreHarness) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    let ports = h.open().await;
    let start = ports.notifications.change_head().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(created(&ports, &content(r#"{"all": true}"#)).await.id);
    }
    let ids = Arc::new(ids);
    let writing_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (ports, writing_done) = (ports.clone(), writing_done.clone());
        tokio::spawn(async move {
            let (mut applied, mut seen) = (start, HashMap::new());
            loop {
                // Read before the batch: when writing was done, this batch holds everything left.
                let done = writing_done.load(Ordering::SeqCst);
                let batch = ports.notifications.changes_since(applied, 5).await.unwrap();
                for (position, id) in &batch {
                    assert!(*position > applied, "positions rise within and across batches");
                    applied = *position;
                    seen.insert(id.clone(), *position);
                }
                if done && batch.len() < 5 {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (ports, ids) = (ports.clone(), ids.clone());
            tokio::spawn(async move {
                for i in 0..15 {
                    let me = ReceiverRef { kind: ReceiverKind::Rider, id: rid(&format!("w{w}-{i}")) };
                    let id = &ids[(w * 5 + i) % ids.len()];
                    ports.notifications.record_reads(&me, std::slice::from_ref(id), Utc::now()).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    writing_done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let log = ports.notifications.changes_since(start, 100_000).await.unwrap();
    assert_eq!(log.len(), ids.len(), "one entry per notification");
    for (position, id) in log {
        assert_eq!(seen.get(&id), Some(&position), "the latest change of {id}, at {position}, was read");
    }
}

/// One scheduler's work on the broadcast tasks, as `herald-scheduler`'s pager does it: read the
/// open tasks, page each city by keyset from where its task stands, and try to advance it by that
/// page (a step that lost a race is simply dropped).
async fn page_every_task(ports: SqlPorts, selection: Selection) -> u32 {
    let mut written = 0;
    loop {
        let tasks = ports.ledger.open_tasks(false, None, 100).await.unwrap();
        if tasks.is_empty() {
            return written;
        }
        for task in tasks {
            let ids = ports
                .receivers
                .page_selection(ReceiverKind::Rider, &selection, &task.city, task.last_receiver.as_ref(), 500)
                .await
                .unwrap();
            let finished = ids.len() < 500;
            let last_receiver = ids.last().cloned().or(task.last_receiver.clone());
            let page = (!ids.is_empty()).then(|| {
                let key = PageKey {
                    notification_id: task.notification_id.clone(),
                    city: task.city.clone(),
                    page_no: task.pages_published,
                };
                let n = ids.len() as u64;
                let page = herald_domain::Page { key, receiver_kind: ReceiverKind::Rider, receivers: ids };
                (page.to_message(herald_domain::Topic::Bulk).unwrap(), n)
            });
            let wrote_page = page.is_some();
            if ports.ledger.advance(&task, &PageStep { page, last_receiver, finished, opted_out: 0 }).await.unwrap()
                && wrote_page
            {
                written += 1;
            }
        }
    }
}

/// Two schedulers on one database (two processes, each its own connections) start and page the
/// same sends at once: one of them starts each send, and together they write every page once —
/// no page twice, no receiver twice, none left out.
/// The notifications whose window opens or closes in an interval, once sending began: the moments
/// their entries appear or vanish by time alone.
pub async fn window_edges_are_found_by_the_interval_they_fall_in(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let now = Utc::now();
    let windowed = |from: Option<Duration>, until: Option<Duration>| NewNotification {
        validity: ValidityWindow::new(from.map(|d| now + d), until.map(|d| now + d)).unwrap(),
        ..content(r#"{"include": ["r1"]}"#)
    };
    let opens = created(&ports, &windowed(Some(Duration::minutes(10)), None)).await;
    let closes = created(&ports, &windowed(None, Some(Duration::minutes(20)))).await;
    let both = created(&ports, &windowed(Some(Duration::minutes(15)), Some(Duration::minutes(30)))).await;
    let never_sent = created(&ports, &windowed(Some(Duration::minutes(10)), None)).await;
    for n in [&opens, &closes, &both] {
        assert!(ports.ledger.start_sending(&n.id, &[], now).await.unwrap());
    }
    let edging = async |after: Duration, until: Duration| {
        let found = ports.notifications.window_edges(now + after, now + until, 100).await.unwrap();
        found.into_iter().map(|n| n.id).collect::<BTreeSet<_>>()
    };
    let ids = |list: &[&herald_domain::Notification]| list.iter().map(|n| n.id.clone()).collect::<BTreeSet<_>>();
    assert_eq!(edging(Duration::zero(), Duration::minutes(9)).await, BTreeSet::new(), "nothing edges yet");
    assert_eq!(edging(Duration::minutes(9), Duration::minutes(10)).await, ids(&[&opens]), "an end is in");
    assert_eq!(edging(Duration::minutes(10), Duration::minutes(11)).await, BTreeSet::new(), "a start is out");
    assert_eq!(edging(Duration::minutes(11), Duration::minutes(20)).await, ids(&[&closes, &both]));
    assert_eq!(edging(Duration::minutes(20), Duration::minutes(60)).await, ids(&[&both]), "its close too");
    assert!(!edging(Duration::zero(), Duration::minutes(60)).await.contains(&never_sent.id), "only once sending");
    let few = ports.notifications.window_edges(now, now + Duration::minutes(60), 2).await.unwrap();
    assert_eq!(few.len(), 2, "at most the limit");
}

pub async fn two_schedulers_on_one_database_write_each_page_once(h: &dyn StoreHarness) {
    let (first, second) = (h.open().await, h.open().await);
    let cities = ["c0", "c1", "c2", "c3"];
    let all: Vec<Receiver> = (0..2600).map(|i| rider(&format!("r{i:05}"), cities[i % 4], &[])).collect();
    first.receivers.upsert_receivers(&all).await.unwrap();
    let mut sends = Vec::new();
    for _ in 0..3 {
        let n = created(&first, &content(r#"{"all": true}"#)).await;
        let plan: Vec<CityPlan> =
            cities.iter().map(|c| CityPlan { city: city(c), matched: 650, members: None, opted_out: 0 }).collect();
        let (a, b) = tokio::join!(
            first.ledger.start_sending(&n.id, &plan, Utc::now()),
            second.ledger.start_sending(&n.id, &plan, Utc::now())
        );
        assert!(a.unwrap() ^ b.unwrap(), "exactly one scheduler starts the send");
        sends.push(n.id);
    }

    let everyone = Selection::everyone();
    let (a, b) = tokio::join!(
        tokio::spawn(page_every_task(first.clone(), everyone.clone())),
        tokio::spawn(page_every_task(second.clone(), everyone))
    );
    let written = a.unwrap() + b.unwrap();

    let outbox = first.ledger.outbox("herald_bulk", 100_000).await.unwrap();
    let mut keys = BTreeSet::new();
    let mut reached = BTreeSet::new();
    for m in &outbox {
        assert!(keys.insert(m.message.key.clone()), "page {} written twice", m.message.key);
        let page = herald_domain::Page::decode(&m.message.body).unwrap();
        for r in page.receivers {
            assert!(reached.insert((page.key.notification_id.clone(), r.clone())), "{r} paged twice");
        }
    }
    // 650 riders per city: pages of 500 and 150, for each of 4 cities of 3 sends.
    assert_eq!(outbox.len(), 3 * 4 * 2);
    assert_eq!(written as usize, outbox.len(), "every step a scheduler was told it wrote is in the outbox");
    assert_eq!(reached.len(), 3 * all.len(), "every receiver of every send once");
    for id in &sends {
        let progress = first.ledger.progress(id).await.unwrap();
        assert!(progress.iter().all(|p| (p.published, p.pages_published) == (650, 2)), "{progress:?}");
    }
}

/// Consumers record their batches at once, each page in two of them (a redelivery), in orders
/// that cross: every batch is recorded whole (none fails on a lock another holds), each page
/// counts once, and each send becomes sent exactly once.
pub async fn consumers_recording_crossing_batches_at_once_count_each_page_once(h: &dyn StoreHarness) {
    let scheduler = h.open().await;
    let cities = ["c0", "c1", "c2", "c3"];
    let all: Vec<Receiver> = (0..2600).map(|i| rider(&format!("r{i:05}"), cities[i % 4], &[])).collect();
    scheduler.receivers.upsert_receivers(&all).await.unwrap();
    let mut sends = Vec::new();
    for _ in 0..3 {
        let n = created(&scheduler, &content(r#"{"all": true}"#)).await;
        let plan: Vec<CityPlan> =
            cities.iter().map(|c| CityPlan { city: city(c), matched: 650, members: None, opted_out: 0 }).collect();
        assert!(scheduler.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
        sends.push(n.id);
    }
    page_every_task(scheduler.clone(), Selection::everyone()).await;
    let pages: Vec<(PageKey, u64)> = scheduler
        .ledger
        .outbox("herald_bulk", 1000)
        .await
        .unwrap()
        .iter()
        .map(|m| {
            let page = herald_domain::Page::decode(&m.message.body).unwrap();
            (page.key, page.receivers.len() as u64)
        })
        .collect();
    assert_eq!(pages.len(), 3 * 4 * 2);

    // Four consumers, batches of six: forwards, backwards, and both again shifted by half a batch,
    // so every page is in two batches and neighbouring batches lock in opposite orders.
    let mut batches = Vec::new();
    for (n, shift) in [(0usize, 0usize), (1, 0), (2, 3), (3, 3)] {
        let mut order: Vec<(PageKey, u64)> = pages.clone();
        if n % 2 == 1 {
            order.reverse();
        }
        order.rotate_left(shift);
        for chunk in order.chunks(6) {
            batches.push((n, chunk.to_vec()));
        }
    }
    let consumers = [h.open().await, h.open().await, h.open().await, h.open().await];
    let mut recording = tokio::task::JoinSet::new();
    for (n, batch) in batches {
        let ledger = consumers[n].ledger.clone();
        recording.spawn(async move { ledger.pages_delivered(&batch, Utc::now()).await });
    }
    let mut became_sent = 0;
    for outcome in recording.join_all().await {
        became_sent += outcome.expect("a batch is recorded whole").into_iter().filter(|sent| *sent).count();
    }
    assert_eq!(became_sent, sends.len(), "each send becomes sent once");
    for id in &sends {
        let progress = scheduler.ledger.progress(id).await.unwrap();
        assert!(progress.iter().all(|p| (p.matched, p.pages_delivered, p.done) == (650, 2, true)), "{progress:?}");
        let status = scheduler.notifications.notification(id).await.unwrap().unwrap().status;
        assert_eq!(status, Status::Sent);
    }
}

fn prefs(categories: &[&str]) -> Preferences {
    Preferences::parse("opted_out", &categories.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap()
}

fn me(id: &str) -> ReceiverRef {
    ReceiverRef { kind: ReceiverKind::Rider, id: rid(id) }
}

pub async fn preferences_are_kept_per_receiver_and_looked_up_among_a_page(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let d = &ports.receivers;
    d.upsert_receivers(&[rider("r1", "sh", &["vip"]), rider("r2", "sh", &[]), rider("r3", "bj", &["vip"])])
        .await
        .unwrap();
    assert_eq!(d.preferences(&me("r1")).await.unwrap(), Preferences::default(), "none set");
    d.set_preferences(&me("r1"), &prefs(&["activity", "announcement"])).await.unwrap();
    d.set_preferences(&me("r3"), &prefs(&["activity"])).await.unwrap();
    d.set_preferences(&me("nobody"), &prefs(&["activity"])).await.unwrap();
    assert_eq!(d.preferences(&me("r1")).await.unwrap(), prefs(&["activity", "announcement"]));
    d.set_preferences(&me("r1"), &prefs(&["activity"])).await.unwrap();
    assert_eq!(d.preferences(&me("r1")).await.unwrap(), prefs(&["activity"]), "replaced, not merged");
    let merchant = ReceiverRef { kind: ReceiverKind::Merchant, id: rid("r1") };
    assert_eq!(d.preferences(&merchant).await.unwrap(), Preferences::default());

    let ids = [rid("r1"), rid("r2"), rid("r3"), rid("nobody")];
    let mut opted: Vec<ReceiverId> = d.opted_out(ReceiverKind::Rider, Category::Activity, &ids).await.unwrap();
    opted.sort();
    assert_eq!(opted, [rid("nobody"), rid("r1"), rid("r3")]);
    assert!(d.opted_out(ReceiverKind::Rider, Category::Announcement, &ids).await.unwrap().is_empty());
    assert!(d.opted_out(ReceiverKind::Merchant, Category::Activity, &ids).await.unwrap().is_empty());

    let everyone = Selection { cities: None, groups: BTreeSet::new() };
    let counted = d.count_opted_out(ReceiverKind::Rider, &everyone, Category::Activity).await.unwrap();
    assert_eq!(counted, [(city("bj"), 1), (city("sh"), 1)], "only stored receivers the selection matches");
    let vip_sh = Selection { cities: Some([city("sh")].into()), groups: [group("vip")].into() };
    assert_eq!(d.count_opted_out(ReceiverKind::Rider, &vip_sh, Category::Activity).await.unwrap(), [(city("sh"), 1)]);
    assert!(d.count_opted_out(ReceiverKind::Rider, &everyone, Category::Announcement).await.unwrap().is_empty());

    assert!(d.delete_receiver(ReceiverKind::Rider, &rid("r1")).await.unwrap());
    assert_eq!(d.preferences(&me("r1")).await.unwrap(), Preferences::default(), "gone with the receiver");
}

pub async fn a_task_counts_what_its_steps_left_out_as_opted_out(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    let plan = [
        CityPlan { city: city("bj"), matched: 1, members: Some(vec![rid("b1")]), opted_out: 2 },
        CityPlan { city: city("sh"), matched: 600, members: None, opted_out: 5 },
    ];
    assert!(ports.ledger.start_sending(&n.id, &plan, Utc::now()).await.unwrap());
    let opted =
        |progress: Vec<CityProgress>| progress.iter().map(|p| (p.city.to_string(), p.opted_out)).collect::<Vec<_>>();
    let shown = opted(ports.ledger.progress(&n.id).await.unwrap());
    assert_eq!(
        shown,
        [("bj".to_string(), 2), ("sh".to_string(), 0)],
        "a snapshot's at the start, a selection's as paged"
    );

    let tasks = ports.ledger.open_tasks(false, None, 10).await.unwrap();
    let sh = tasks.into_iter().find(|t| t.city == city("sh")).expect("the sh task is open");
    let step = PageStep {
        page: Some((page_message(&n.id, "sh", 0), 497)),
        last_receiver: Some(rid("r499")),
        finished: false,
        opted_out: 3,
    };
    assert!(ports.ledger.advance(&sh, &step).await.unwrap());
    assert!(!ports.ledger.advance(&sh, &step).await.unwrap(), "a step read before is refused");
    let shown = opted(ports.ledger.progress(&n.id).await.unwrap());
    assert_eq!(shown, [("bj".to_string(), 2), ("sh".to_string(), 3)], "counted once with the step it came with");
}

pub async fn opting_back_in_pages_the_category_s_still_valid_broadcasts_late(h: &dyn StoreHarness) {
    let ports = h.open().await;
    let d = &ports.receivers;
    d.upsert_receivers(&[rider("o1", "sh", &[])]).await.unwrap();
    d.set_preferences(&me("o1"), &prefs(&["announcement"])).await.unwrap();
    // An announcement to every city, sent to nobody: o1 opted out.
    let n = created(&ports, &content(r#"{"all": true}"#)).await;
    let mut activity = content(r#"{"all": true}"#);
    activity.category = Category::Activity;
    let other = created(&ports, &activity).await;
    for id in [&n.id, &other.id] {
        let plan = [CityPlan { city: city("sh"), matched: 0, members: None, opted_out: 0 }];
        assert!(ports.ledger.start_sending(id, &plan, Utc::now()).await.unwrap());
    }
    for task in ports.ledger.open_tasks(false, None, 10).await.unwrap() {
        let step = PageStep { page: None, last_receiver: None, finished: true, opted_out: 1 };
        assert!(ports.ledger.advance(&task, &step).await.unwrap());
    }
    assert_eq!(ports.notifications.notification(&n.id).await.unwrap().unwrap().status, Status::Sent);

    d.upsert_receivers(&[rider("o1", "bj", &[])]).await.unwrap();
    let keys = |outbox: Vec<OutboxMessage>| outbox.into_iter().map(|m| m.message.key).collect::<Vec<_>>();
    let key = |id: &NotificationId, c: &str, page_no| PageKey { notification_id: id.clone(), city: city(c), page_no };
    assert_eq!(
        keys(ports.ledger.outbox("herald_bulk", 10).await.unwrap()),
        [key(&other.id, "bj", 0).to_string()],
        "moving city, it gets the activity late but not the announcement it opted out of"
    );

    d.set_preferences(&me("o1"), &prefs(&["activity"])).await.unwrap();
    let outbox = ports.ledger.outbox("herald_bulk", 10).await.unwrap();
    let page = herald_domain::Page::decode(&outbox[1].message.body).unwrap();
    assert_eq!((page.key, page.receivers), (key(&n.id, "bj", 0), vec![rid("o1")]), "opted back in: paged late");
    assert_eq!(outbox.len(), 2, "opting out of activity pages nothing");
    let bj = ports.ledger.progress(&n.id).await.unwrap().into_iter().find(|p| p.city == city("bj")).unwrap();
    assert_eq!((bj.matched, bj.pages_published, bj.done), (1, 1, false), "counted as a late joiner's page");

    d.set_preferences(&me("o1"), &prefs(&["activity"])).await.unwrap();
    assert_eq!(ports.ledger.outbox_len().await.unwrap(), 2, "the same preferences page nothing again");
}

crate::suite!($ store, store_contract, [
    keyset_pages_cover_a_city_exactly_once,
    upsert_replaces_city_and_groups,
    group_names_are_matched_whole,
    selections_of_ten_thousand_cities_and_groups_are_answered,
    ten_thousand_groups_over_many_receivers_are_answered_within_the_console_limit,
    upsert_counts_only_new_or_changed_receivers,
    idempotent_create_and_lawful_transitions,
    an_event_is_recorded_under_the_current_status,
    revocations_are_logged_in_order,
    read_receipts_count_new_ones,
    read_receipts_and_delivered_pages_are_listed_by_keyset,
    archives_are_kept_per_receiver_listed_by_keyset_and_dropped_by_unarchive,
    a_send_is_resumable_and_completes_once,
    the_outbox_is_read_per_topic_oldest_first,
    a_late_joiner_is_paged_into_the_broadcasts_it_now_matches,
    a_city_reached_after_the_plan_was_counted_gets_a_task_when_sending_starts,
    an_empty_plan_is_sent_at_once,
    state_survives_a_restart,
    include_snapshots_are_kept_and_listed_apart,
    open_tasks_page_by_keyset,
    the_oldest_open_send_is_the_earliest_started_with_a_city_not_done,
    receivers_are_listed_by_id_in_pages,
    a_deleted_receiver_is_gone_with_its_groups_and_read_receipts,
    every_change_the_search_shows_moves_the_notification_up_the_change_log,
    a_reader_following_the_change_log_misses_nothing_written_concurrently,
    two_schedulers_on_one_database_write_each_page_once,
    consumers_recording_crossing_batches_at_once_count_each_page_once,
    window_edges_are_found_by_the_interval_they_fall_in,
    receivers_keep_their_attributes,
    notifications_keep_their_image_and_actions,
    receivers_keep_their_locale,
    notifications_keep_their_variants_and_locales,
    preferences_are_kept_per_receiver_and_looked_up_among_a_page,
    a_task_counts_what_its_steps_left_out_as_opted_out,
    opting_back_in_pages_the_category_s_still_valid_broadcasts_late,
]);
