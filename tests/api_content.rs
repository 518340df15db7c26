//! End to end: rich content (an image, up to two action buttons) and templates (placeholders filled
//! in per receiver when an inbox is read) — created through the admin API, read as the apps do.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use herald_domain::ports::{PortResult, ReceiverDirectory};
use herald_domain::{
    AppSchemes, Category, City, Preferences, Receiver, ReceiverId, ReceiverKind, ReceiverRef, Selection,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn items(reply: &Reply) -> &Vec<Value> {
    reply.body["items"].as_array().expect("items array")
}

/// The one item of `token`'s inbox list with this id.
async fn listed(h: &TestHerald, token: &str, id: &str) -> Value {
    let r = h.app_get(token, "/app/v1/inbox?limit=50").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    items(&r).iter().find(|i| i["id"] == id).cloned().unwrap_or_else(|| panic!("{id} not listed: {:?}", r.body))
}

/// The item with this id in a sync from the beginning.
async fn synced(h: &TestHerald, token: &str, id: &str) -> Value {
    let r = h.app_get(token, "/app/v1/inbox/sync").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    items(&r).iter().find(|i| i["id"] == id).cloned().unwrap_or_else(|| panic!("{id} not synced: {:?}", r.body))
}

async fn refused(h: &TestHerald, extra: Value) -> Reply {
    let r = h.admin_post("/admin/v1/notifications", &TestHerald::notification("t", everyone(), extra)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.code(), Some("invalid_field"), "{:?}", r.body);
    r
}

fn rich() -> Value {
    json!({
        "force_read": true,
        "image": "https://cdn.example.com/promo.png",
        "actions": [
            {"kind": "url", "target": "https://example.com/promo?from=herald", "label": "查看详情"},
            {"kind": "deep_link", "target": "herald://orders/42"}
        ]
    })
}

fn assert_rich(item: &Value) {
    assert_eq!(item["image"], "https://cdn.example.com/promo.png", "{item}");
    assert_eq!(
        item["actions"],
        json!([
            {"kind": "url", "target": "https://example.com/promo?from=herald", "label": "查看详情"},
            {"kind": "deep_link", "target": "herald://orders/42"}
        ]),
        "{item}"
    );
}

#[tokio::test]
async fn image_and_actions_are_in_every_inbox_read_and_the_console_view() {
    let h = TestHerald::spawn().await;
    h.receivers(&[("rider", "r1", "shanghai", &[])]).await;
    let (id, view) = h.send_and_wait(&TestHerald::notification("Promo", everyone(), rich())).await;
    assert_rich(&view);
    let token = h.app_token("rider", "r1");
    assert_rich(&listed(&h, &token, &id).await);
    assert_rich(&synced(&h, &token, &id).await);
    let pending = h.app_get(&token, "/app/v1/inbox/force-read").await;
    assert_eq!(pending.status, StatusCode::OK);
    assert_rich(&items(&pending)[0]);
}

#[tokio::test]
async fn a_plain_notification_has_no_image_and_no_actions() {
    let h = TestHerald::spawn().await;
    h.receivers(&[("rider", "r1", "shanghai", &[])]).await;
    let (id, view) = h.send_and_wait(&TestHerald::notification("Plain", everyone(), json!({}))).await;
    assert!(view.get("image").is_none() && view["actions"] == json!([]), "{view}");
    let item = listed(&h, &h.app_token("rider", "r1"), &id).await;
    assert!(item.get("image").is_none(), "{item}");
    assert_eq!(item["actions"], json!([]));
}

#[tokio::test]
async fn unsafe_images_are_refused_naming_the_field() {
    let h = TestHerald::spawn().await;
    for bad in [
        "javascript:alert(1)",
        "http://cdn.example.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "https://user:pw@cdn.example.com/a.png",
        "https://cdn.example.com/\"><script>",
    ] {
        let r = refused(&h, json!({"image": bad})).await;
        assert_eq!(r.field(), Some("image"), "{bad}: {:?}", r.body);
    }
}

#[tokio::test]
async fn unsafe_actions_are_refused_naming_the_field() {
    let h = TestHerald::spawn().await;
    let ok = json!({"kind": "url", "target": "https://example.com"});
    for (bad, field) in [
        (json!({"kind": "url", "target": "javascript:alert(1)"}), "actions[1].target"),
        (json!({"kind": "deep_link", "target": "JavaScript:alert(1)"}), "actions[1].target"),
        (json!({"kind": "url", "target": "http://example.com"}), "actions[1].target"),
        (json!({"kind": "url", "target": "data:text/html,<b>x</b>"}), "actions[1].target"),
        (json!({"kind": "deep_link", "target": "otherapp://x"}), "actions[1].target"),
        (json!({"kind": "button", "target": "https://example.com"}), "actions[1].kind"),
        (json!({"kind": "url", "target": "https://example.com", "label": "a\nb"}), "actions[1].label"),
    ] {
        let r = refused(&h, json!({"actions": [ok, bad]})).await;
        assert_eq!(r.field(), Some(field), "{bad}: {:?}", r.body);
    }
    let r = refused(&h, json!({"actions": [ok, ok, ok]})).await;
    assert_eq!(r.field(), Some("actions"), "{:?}", r.body);
}

#[tokio::test]
async fn deep_links_take_the_schemes_the_setting_names() {
    let h = TestHerald::spawn_with(|s| s.app_schemes = AppSchemes::parse("app-schemes", "courier").unwrap()).await;
    let r = refused(&h, json!({"actions": [{"kind": "deep_link", "target": "herald://orders/1"}]})).await;
    assert_eq!(r.field(), Some("actions[0].target"), "{:?}", r.body);
    let link = json!({"actions": [{"kind": "deep_link", "target": "courier://orders/1"}]});
    h.create(&TestHerald::notification("t", everyone(), link)).await;
}

/// Riders with attributes: r1 and r2 through the batch endpoint, r3 through the CSV import.
async fn riders_with_attributes(h: &TestHerald) {
    let batch = json!([
        {"kind": "rider", "id": "r1", "city": "shanghai", "attributes": {"name": "小王", "level": "3"}},
        {"kind": "rider", "id": "r2", "city": "beijing", "attributes": {"name": "Li"}},
    ]);
    let r = h.admin_post("/admin/v1/receivers/batch", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let csv = "kind,id,city,groups,attributes\nrider,r3,hangzhou,vip,\"{\"\"name\"\": \"\"Zhao\"\", \"\"level\"\": \"\"5\"\"}\"\n";
    let report = h.import_csv(csv).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let stored = h.admin_get("/admin/v1/receivers/rider/r3").await;
    assert_eq!(stored.body["attributes"], json!({"name": "Zhao", "level": "5"}), "{} {:?}", report.body, stored.body);
}

fn templated() -> Value {
    json!({
        "title": "{{receiver.attr.name}}, your level",
        "body": "{{receiver.id}} in {{ receiver.city }}: level {{receiver.attr.level}}.",
        "force_read": true,
    })
}

#[tokio::test]
async fn placeholders_are_filled_per_receiver_in_list_sync_and_force_read() {
    let h = TestHerald::spawn().await;
    riders_with_attributes(&h).await;
    let (id, view) = h.send_and_wait(&TestHerald::notification("t", everyone(), templated())).await;
    assert_eq!(view["title"], "{{receiver.attr.name}}, your level", "the console sees the template");
    for (rider, title, body) in [
        ("r1", "小王, your level", "r1 in shanghai: level 3."),
        ("r2", "Li, your level", "r2 in beijing: level ."),
        ("r3", "Zhao, your level", "r3 in hangzhou: level 5."),
    ] {
        let token = h.app_token("rider", rider);
        for item in [listed(&h, &token, &id).await, synced(&h, &token, &id).await] {
            assert_eq!((item["title"].as_str(), item["body"].as_str()), (Some(title), Some(body)), "{rider}: {item}");
        }
        let pending = h.app_get(&token, "/app/v1/inbox/force-read").await;
        assert_eq!(items(&pending)[0]["body"], body, "{rider}");
    }
}

#[tokio::test]
async fn placeholders_follow_the_receivers_current_attributes() {
    let h = TestHerald::spawn().await;
    riders_with_attributes(&h).await;
    let (id, _) = h.send_and_wait(&TestHerald::notification("t", everyone(), templated())).await;
    let token = h.app_token("rider", "r2");
    assert_eq!(listed(&h, &token, &id).await["title"], "Li, your level");
    let update = json!([{"kind": "rider", "id": "r2", "city": "beijing", "attributes": {"name": "Li Wei"}}]);
    let r = h.admin_post("/admin/v1/receivers/batch", &update).await;
    assert_eq!((r.status, &r.body["upserted"]), (StatusCode::OK, &json!(1)), "an attribute change is written");
    // Read time, not send time: the inbox entry was never rewritten.
    assert_eq!(listed(&h, &token, &id).await["title"], "Li Wei, your level");
}

#[tokio::test]
async fn an_unknown_placeholder_is_refused_naming_it() {
    let h = TestHerald::spawn().await;
    for (extra, field, named) in [
        (json!({"title": "Hi {{user.name}}"}), "title", "{{user.name}}"),
        (json!({"body": "Your {{receiver.phone}} here"}), "body", "{{receiver.phone}}"),
        (json!({"body": "{{receiver.attr.Bad-Name}}"}), "body", "{{receiver.attr.Bad-Name}}"),
        (json!({"body": "open {{receiver.id"}), "body", "{{"),
    ] {
        let r = refused(&h, extra.clone()).await;
        assert_eq!(r.field(), Some(field), "{extra}: {:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{extra}: {message}");
    }
}

#[tokio::test]
async fn bad_attributes_are_refused_naming_the_field() {
    let h = TestHerald::spawn().await;
    for (attributes, field) in [
        (json!({"Name": "x"}), "[1].attributes"),
        (json!({"name": 3}), "[1].attributes.name"),
        (json!({"name": "a\u{7}b"}), "[1].attributes"),
    ] {
        let batch = json!([
            {"kind": "rider", "id": "r1", "city": "shanghai"},
            {"kind": "rider", "id": "r2", "city": "shanghai", "attributes": attributes},
        ]);
        let r = h.admin_post("/admin/v1/receivers/batch", &batch).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{attributes}: {:?}", r.body);
        assert_eq!(r.field(), Some(field), "{attributes}: {:?}", r.body);
    }
}

#[tokio::test]
async fn a_csv_row_with_bad_attributes_is_reported_and_the_others_imported() {
    let h = TestHerald::spawn().await;
    let csv = "rider,r1,shanghai,,\"{\"\"name\"\": \"\"A\"\"}\"\nrider,r2,shanghai,,not json\n";
    let reply = h.import_csv(csv).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let report = reply.body;
    let rejected = report["rejected"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(rejected.len(), 1, "{report}");
    assert_eq!(rejected[0]["line"], 2, "{report}");
    assert!(rejected[0]["reason"].as_str().unwrap_or_default().contains("attributes"), "{report}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r1 = h.admin_get("/admin/v1/receivers/rider/r1").await;
        if r1.status == StatusCode::OK {
            assert_eq!(r1.body["attributes"], json!({"name": "A"}));
            break;
        }
        assert!(Instant::now() < deadline, "r1 never imported: {:?}", r1.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory, counting the receiver lookups made through it.
struct CountingLookups {
    inner: Arc<dyn ReceiverDirectory>,
    lookups: Arc<AtomicUsize>,
}

#[async_trait]
impl ReceiverDirectory for CountingLookups {
    async fn upsert_receivers(&self, receivers: &[Receiver]) -> PortResult<u64> {
        self.inner.upsert_receivers(receivers).await
    }

    async fn lookup_receivers(&self, kind: ReceiverKind, ids: &[ReceiverId]) -> PortResult<Vec<Receiver>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.lookup_receivers(kind, ids).await
    }

    async fn count_selection(&self, kind: ReceiverKind, selection: &Selection) -> PortResult<Vec<(City, u64)>> {
        self.inner.count_selection(kind, selection).await
    }

    async fn page_selection(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        city: &City,
        after: Option<&ReceiverId>,
        limit: usize,
    ) -> PortResult<Vec<ReceiverId>> {
        self.inner.page_selection(kind, selection, city, after, limit).await
    }

    async fn list_receivers(
        &self,
        kind: Option<ReceiverKind>,
        city: Option<&City>,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> PortResult<Vec<Receiver>> {
        self.inner.list_receivers(kind, city, after, limit).await
    }

    async fn delete_receiver(&self, kind: ReceiverKind, id: &ReceiverId) -> PortResult<bool> {
        self.inner.delete_receiver(kind, id).await
    }

    async fn preferences(&self, receiver: &ReceiverRef) -> PortResult<Preferences> {
        self.inner.preferences(receiver).await
    }

    async fn set_preferences(&self, receiver: &ReceiverRef, prefs: &Preferences) -> PortResult<()> {
        self.inner.set_preferences(receiver, prefs).await
    }

    async fn opted_out(
        &self,
        kind: ReceiverKind,
        category: Category,
        ids: &[ReceiverId],
    ) -> PortResult<Vec<ReceiverId>> {
        self.inner.opted_out(kind, category, ids).await
    }

    async fn count_opted_out(
        &self,
        kind: ReceiverKind,
        selection: &Selection,
        category: Category,
    ) -> PortResult<Vec<(City, u64)>> {
        self.inner.count_opted_out(kind, selection, category).await
    }
}

#[tokio::test]
async fn a_read_looks_the_receiver_up_once_and_only_when_a_message_has_placeholders() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = lookups.clone();
    let h = TestHerald::spawn_on(
        |_| {},
        |ports| ports.receivers = Arc::new(CountingLookups { inner: ports.receivers.clone(), lookups: counter }),
    )
    .await;
    riders_with_attributes(&h).await;
    let token = h.app_token("rider", "r1");
    for i in 0..3 {
        h.send_and_wait(&TestHerald::notification(&format!("plain {i}"), everyone(), json!({}))).await;
    }
    let before = lookups.load(Ordering::SeqCst);
    let page = h.app_get(&token, "/app/v1/inbox?limit=50").await;
    assert_eq!(items(&page).len(), 3);
    assert_eq!(lookups.load(Ordering::SeqCst), before, "no placeholder: no lookup");

    for _ in 0..5 {
        h.send_and_wait(&TestHerald::notification("t", everyone(), templated())).await;
    }
    let before = lookups.load(Ordering::SeqCst);
    let page = h.app_get(&token, "/app/v1/inbox?limit=50").await;
    assert_eq!(items(&page).len(), 8);
    assert!(items(&page).iter().take(5).all(|i| i["title"] == "小王, your level"), "{:?}", page.body);
    assert_eq!(lookups.load(Ordering::SeqCst), before + 1, "one lookup for a page of five templated messages");
    let before = lookups.load(Ordering::SeqCst);
    let synced = h.app_get(&token, "/app/v1/inbox/sync").await;
    assert_eq!(items(&synced).len(), 8);
    assert_eq!(lookups.load(Ordering::SeqCst), before + 1, "and one for a sync");
}
