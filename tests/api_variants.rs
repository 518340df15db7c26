//! End to end: variants per user group and translations per locale — created through the admin
//! API, chosen per receiver when an inbox is read (list, sync, force-read), from the receiver's
//! groups and the locale its import gave.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn items(reply: &Reply) -> &Vec<Value> {
    reply.body["items"].as_array().expect("items array")
}

/// The item with this id in `token`'s list, in a sync from the beginning, and in force-read.
async fn everywhere(h: &TestHerald, token: &str, id: &str) -> [Value; 3] {
    let mut found = Vec::new();
    for path in ["/app/v1/inbox?limit=50", "/app/v1/inbox/sync", "/app/v1/inbox/force-read"] {
        let r = h.app_get(token, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        let item = items(&r).iter().find(|i| i["id"] == id).cloned();
        found.push(item.unwrap_or_else(|| panic!("{id} not in {path}: {:?}", r.body)));
    }
    found.try_into().unwrap()
}

async fn upsert(h: &TestHerald, batch: Value) {
    let r = h.admin_post("/admin/v1/receivers/batch", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

fn campaign() -> Value {
    json!({
        "force_read": true,
        "image": "https://cdn.example.com/default.png",
        "variants": [
            {
                "groups": ["vip"],
                "title": "VIP 专享",
                "body": "{{receiver.id}} 的专享券",
                "image": "https://cdn.example.com/vip.png",
                "actions": [{"kind": "deep_link", "target": "herald://coupons/vip", "label": "领取"}]
            },
            {"groups": ["new", "vip"], "title": "新人礼", "body": "欢迎"}
        ]
    })
}

#[tokio::test]
async fn each_receiver_is_shown_the_first_variant_naming_one_of_its_groups_else_the_default() {
    let h = TestHerald::spawn().await;
    h.receivers(&[
        ("rider", "both", "shanghai", &["new", "vip"]),
        ("rider", "new", "shanghai", &["new"]),
        ("rider", "other", "shanghai", &["old"]),
        ("rider", "none", "shanghai", &[]),
    ])
    .await;
    let (id, view) = h.send_and_wait(&TestHerald::notification("普通", everyone(), campaign())).await;
    assert_eq!(view["variants"][0]["groups"], json!(["vip"]), "the console sees the variants as given: {view}");
    assert_eq!(view["variants"][1]["title"], "新人礼", "{view}");
    assert_eq!(view["stats"]["sent"], 4, "one entry per receiver, whatever variant: {view}");
    let vip_action = json!([{"kind": "deep_link", "target": "herald://coupons/vip", "label": "领取"}]);
    for (rider, variant, title, body, image, actions) in [
        ("both", json!(0), "VIP 专享", "both 的专享券", json!("https://cdn.example.com/vip.png"), vip_action.clone()),
        ("new", json!(1), "新人礼", "欢迎", Value::Null, json!([])),
        ("other", Value::Null, "普通", "普通 body", json!("https://cdn.example.com/default.png"), json!([])),
        ("none", Value::Null, "普通", "普通 body", json!("https://cdn.example.com/default.png"), json!([])),
    ] {
        let token = h.app_token("rider", rider);
        for item in everywhere(&h, &token, &id).await {
            let got =
                (&item["variant"], item["title"].as_str(), item["body"].as_str(), &item["image"], &item["actions"]);
            assert_eq!(got, (&variant, Some(title), Some(body), &image, &actions), "{rider}: {item}");
        }
    }
}

#[tokio::test]
async fn a_variant_follows_the_receivers_current_groups() {
    let h = TestHerald::spawn().await;
    h.receivers(&[("rider", "r1", "shanghai", &[])]).await;
    let (id, _) = h.send_and_wait(&TestHerald::notification("普通", everyone(), campaign())).await;
    let token = h.app_token("rider", "r1");
    assert_eq!(everywhere(&h, &token, &id).await[0]["title"], "普通");
    h.receivers(&[("rider", "r1", "shanghai", &["vip"])]).await;
    // Chosen at read time: the entry was never rewritten, nor one stored per receiver.
    assert_eq!(everywhere(&h, &token, &id).await[0]["title"], "VIP 专享");
}

fn translated() -> Value {
    json!({
        "force_read": true,
        "locales": {
            "en": {"title": "Hello {{receiver.attr.name}}", "body": "Read me"},
            "zh-CN": {"title": "你好 {{receiver.attr.name}}", "body": "请阅读"},
            "zh": {"title": "您好", "body": "請閱讀"}
        }
    })
}

#[tokio::test]
async fn each_receiver_reads_its_locale_then_its_language_then_the_untranslated_text() {
    let h = TestHerald::spawn().await;
    upsert(
        &h,
        json!([
            {"kind": "rider", "id": "cn", "city": "shanghai", "locale": "zh_cn", "attributes": {"name": "小王"}},
            {"kind": "rider", "id": "us", "city": "shanghai", "locale": "en-US", "attributes": {"name": "Ann"}},
            {"kind": "rider", "id": "fr", "city": "shanghai", "locale": "fr"},
            {"kind": "rider", "id": "plain", "city": "shanghai"},
        ]),
    )
    .await;
    let csv = "kind,id,city,groups,attributes,locale\nrider,tw,taipei,,,zh-TW\n";
    let report = h.import_csv(csv).await;
    assert_eq!((report.status, &report.body["rejected"]), (StatusCode::OK, &json!([])), "{}", report.body);
    let stored = h.admin_get("/admin/v1/receivers/rider/cn").await;
    assert_eq!(stored.body["locale"], "zh-CN", "kept written one way: {:?}", stored.body);
    let stored = h.admin_get("/admin/v1/receivers/rider/tw").await;
    assert_eq!(stored.body["locale"], "zh-TW", "from the CSV's locale column: {:?}", stored.body);

    let (id, view) = h.send_and_wait(&TestHerald::notification("Default", everyone(), translated())).await;
    assert_eq!(view["locales"]["zh-CN"]["title"], "你好 {{receiver.attr.name}}", "{view}");
    for (rider, locale, title) in [
        ("cn", json!("zh-CN"), "你好 小王"),
        ("us", json!("en"), "Hello Ann"),
        ("tw", json!("zh"), "您好"),
        ("fr", Value::Null, "Default"),
        ("plain", Value::Null, "Default"),
    ] {
        let token = h.app_token("rider", rider);
        for item in everywhere(&h, &token, &id).await {
            assert_eq!((&item["locale"], item["title"].as_str()), (&locale, Some(title)), "{rider}: {item}");
        }
    }
}

#[tokio::test]
async fn variants_and_locales_combine() {
    let h = TestHerald::spawn().await;
    upsert(
        &h,
        json!([
            {"kind": "rider", "id": "vip-en", "city": "sh", "groups": ["vip"], "locale": "en"},
            {"kind": "rider", "id": "vip-fr", "city": "sh", "groups": ["vip"], "locale": "fr"},
            {"kind": "rider", "id": "en", "city": "sh", "locale": "en-GB"},
        ]),
    )
    .await;
    let extra = json!({
        "locales": {"en": {"title": "For everyone", "body": "b"}},
        "variants": [{
            "groups": ["vip"], "title": "VIP 专享", "body": "b",
            "locales": {"en": {"title": "VIP only, {{receiver.id}}", "body": "b"}}
        }]
    });
    let (id, _) = h.send_and_wait(&TestHerald::notification("大家好", everyone(), extra)).await;
    for (rider, variant, locale, title) in [
        ("vip-en", json!(0), json!("en"), "VIP only, vip-en"),
        ("vip-fr", json!(0), Value::Null, "VIP 专享"),
        ("en", Value::Null, json!("en"), "For everyone"),
    ] {
        let token = h.app_token("rider", rider);
        let listed = h.app_get(&token, "/app/v1/inbox").await;
        let item = items(&listed).iter().find(|i| i["id"] == id.as_str()).cloned().unwrap();
        assert_eq!(
            (&item["variant"], &item["locale"], item["title"].as_str()),
            (&variant, &locale, Some(title)),
            "{rider}"
        );
    }
}

#[tokio::test]
async fn a_notification_without_variants_or_locales_shows_null_for_both() {
    let h = TestHerald::with_riders(&["r1"]).await;
    let (id, view) = h.send_and_wait(&TestHerald::notification("Plain", everyone(), json!({}))).await;
    assert_eq!((&view["variants"], &view["locales"]), (&json!([]), &json!({})), "{view}");
    let r = h.app_get(&h.app_token("rider", "r1"), "/app/v1/inbox").await;
    let item = items(&r).iter().find(|i| i["id"] == id.as_str()).cloned().unwrap();
    assert_eq!((&item["variant"], &item["locale"], &item["title"]), (&Value::Null, &Value::Null, &json!("Plain")));
}

#[tokio::test]
async fn bad_variants_and_locales_are_refused_naming_the_field() {
    let h = TestHerald::spawn().await;
    let variant = |extra: Value| {
        let mut v = json!({"groups": ["vip"], "title": "t", "body": "b"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let many: Vec<Value> = (0..11).map(|_| variant(json!({}))).collect();
    let long = "字".repeat(10_000);
    let heavy: Vec<Value> = (0..10).map(|_| variant(json!({"body": long}))).collect();
    for (extra, field) in [
        (json!({"variants": [variant(json!({"groups": []}))]}), "variants[0].groups"),
        (json!({"variants": [variant(json!({})), variant(json!({"groups": ["a b"]}))]}), "variants[1].groups[0]"),
        (json!({"variants": [variant(json!({"image": "http://cdn.example.com/a.png"}))]}), "variants[0].image"),
        (
            json!({"variants": [variant(json!({"actions": [{"kind": "url", "target": "javascript:alert(1)"}]}))]}),
            "variants[0].actions[0].target",
        ),
        (json!({"variants": [variant(json!({"title": "Hi {{user.name}}"}))]}), "variants[0].title"),
        (json!({"variants": [variant(json!({"colour": "red"}))]}), "variants[0].colour"),
        (json!({"variants": many}), "variants"),
        (json!({"variants": heavy}), "variants"),
        (json!({"locales": {"english!": {"title": "t", "body": "b"}}}), "locales.english!"),
        (json!({"locales": {"en": {"title": "{{receiver.phone}}", "body": "b"}}}), "locales.en.title"),
        (json!({"locales": {"en": {"title": "t"}}}), "locales.en.body"),
        (
            json!({"variants": [variant(json!({"locales": {"e": {"title": "t", "body": "b"}}}))]}),
            "variants[0].locales.e",
        ),
    ] {
        let body = TestHerald::notification("t", everyone(), extra.clone());
        let r = h.admin_post("/admin/v1/notifications", &body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {:?}", r.body);
        assert_eq!(r.field(), Some(field), "{extra}: {:?}", r.body);
    }
    let twice = json!({"locales": {"zh-CN": {"title": "a", "body": "b"}, "zh-cn": {"title": "c", "body": "d"}}});
    let r = h.admin_post("/admin/v1/notifications", &TestHerald::notification("t", everyone(), twice)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap_or_default().contains("twice"), "{:?}", r.body);
    let listed = h.admin_get("/admin/v1/notifications").await;
    assert_eq!(listed.body["total"], 0, "nothing refused was kept: {:?}", listed.body);
}

#[tokio::test]
async fn a_bad_receiver_locale_is_refused_naming_the_field() {
    let h = TestHerald::spawn().await;
    let batch = json!([
        {"kind": "rider", "id": "r1", "city": "sh", "locale": "en"},
        {"kind": "rider", "id": "r2", "city": "sh", "locale": "english please"},
    ]);
    let r = h.admin_post("/admin/v1/receivers/batch", &batch).await;
    assert_eq!((r.status, r.field()), (StatusCode::UNPROCESSABLE_ENTITY, Some("[1].locale")), "{:?}", r.body);
    let csv = "rider,r3,sh,,,en\nrider,r4,sh,,,not a tag\n";
    let reply = h.import_csv(csv).await;
    let rejected = reply.body["rejected"].as_array().cloned().unwrap_or_default();
    assert_eq!(rejected.len(), 1, "{}", reply.body);
    assert_eq!(rejected[0]["line"], 2, "{}", reply.body);
    assert!(rejected[0]["reason"].as_str().unwrap_or_default().contains("locale"), "{}", reply.body);
}

/// The preview's split of `matched` by variant: `[variant 0, variant 1, …, default]`.
async fn split(h: &TestHerald, audience: Value, extra: Value) -> (u64, Vec<u64>) {
    let mut body = json!({"receiver_kind": "rider", "audience": audience,
        "variants": [{"groups": ["vip"]}, {"groups": ["new", "vip"]}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let r = h.admin_post("/admin/v1/audience/preview", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{body}: {:?}", r.body);
    let mut counts: Vec<u64> =
        r.body["variants"].as_array().unwrap().iter().map(|v| v["matched"].as_u64().unwrap()).collect();
    counts.push(r.body["default_matched"].as_u64().unwrap());
    let matched = r.body["matched"].as_u64().unwrap();
    assert_eq!(counts.iter().sum::<u64>(), matched, "the split adds up to matched: {:?}", r.body);
    (matched, counts)
}

#[tokio::test]
async fn the_preview_splits_matched_by_the_variant_each_receiver_would_be_shown() {
    let h = TestHerald::spawn().await;
    h.receivers(&[
        ("rider", "v1", "sh", &["vip"]),
        ("rider", "v2", "sh", &["vip", "new"]),
        ("rider", "v3", "bj", &["vip", "gold"]),
        ("rider", "n1", "sh", &["new"]),
        ("rider", "n2", "bj", &["new", "gold"]),
        ("rider", "g1", "sh", &["gold"]),
        ("rider", "o1", "sh", &[]),
        ("rider", "o2", "bj", &["old"]),
    ])
    .await;
    // Everyone: vip first (v1 v2 v3), then new (n1 n2), the rest default (g1 o1 o2).
    assert_eq!(split(&h, everyone(), json!({})).await, (8, vec![3, 2, 3]));
    assert_eq!(split(&h, json!({"cities": ["sh"]}), json!({})).await, (5, vec![2, 1, 2]));
    // A selection by groups itself: gold or new.
    assert_eq!(split(&h, json!({"groups": ["gold", "new"]}), json!({})).await, (5, vec![2, 2, 1]));
    assert_eq!(split(&h, json!({"cities": ["bj"], "groups": ["gold"]}), json!({})).await, (2, vec![1, 1, 0]));
    // The excluded are in no count.
    assert_eq!(split(&h, json!({"all": true, "exclude": ["v2", "o1", "nobody"]}), json!({})).await, (6, vec![2, 2, 2]));
    // An include list is placed receiver by receiver.
    assert_eq!(split(&h, json!({"include": ["v3", "n1", "o2", "ghost"]}), json!({})).await, (3, vec![1, 1, 1]));
    // The opted out of the category are in no count.
    for rider in ["v1", "n1"] {
        let (token, prefs) = (h.app_token("rider", rider), json!({"opted_out": ["activity"]}));
        let r = h.call(Method::PUT, "/app/v1/preferences", Some(&token), Some(&prefs)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let activity = json!({"category": "activity"});
    assert_eq!(split(&h, everyone(), activity.clone()).await, (6, vec![2, 1, 3]));
    assert_eq!(split(&h, json!({"groups": ["gold", "new"]}), activity.clone()).await, (4, vec![2, 1, 1]));
    assert_eq!(split(&h, json!({"include": ["v1", "n2"]}), activity).await, (1, vec![0, 1, 0]));
    // Without variants asked about, everything is the default's.
    let r =
        h.admin_post("/admin/v1/audience/preview", &json!({"receiver_kind": "rider", "audience": everyone()})).await;
    assert_eq!((&r.body["variants"], &r.body["default_matched"]), (&json!([]), &json!(8)), "{:?}", r.body);
    let bad =
        json!({"receiver_kind": "rider", "audience": everyone(), "variants": [{"groups": ["vip"]}, {"groups": []}]});
    let r = h.admin_post("/admin/v1/audience/preview", &bad).await;
    assert_eq!((r.status, r.field()), (StatusCode::UNPROCESSABLE_ENTITY, Some("variants[1].groups")), "{:?}", r.body);
}

#[tokio::test]
async fn stats_split_sent_and_read_by_the_variant_each_receiver_was_shown() {
    let h = TestHerald::spawn().await;
    h.receivers(&[
        ("rider", "vip1", "shanghai", &["vip"]),
        ("rider", "vip2", "beijing", &["new", "vip"]),
        ("rider", "new1", "shanghai", &["new"]),
        ("rider", "plain1", "shanghai", &[]),
        ("rider", "plain2", "beijing", &["old"]),
    ])
    .await;
    let (id, view) = h.send_and_wait(&TestHerald::notification("普通", everyone(), campaign())).await;
    let shown = |sent: u64, read: u64, read_rate: f64| json!({"sent": sent, "read": read, "read_rate": read_rate});
    assert_eq!(view["stats"]["variants"], json!([shown(2, 0, 0.0), shown(1, 0, 0.0)]), "{view}");
    assert_eq!(view["stats"]["default"], shown(2, 0, 0.0), "{view}");

    // Reads count once each, for the content the reader is shown, however often the app retries.
    for rider in ["vip1", "vip1", "plain2", "plain2"] {
        let r = h.app_post(&h.app_token("rider", rider), &format!("/app/v1/inbox/{id}/read")).await;
        assert!(r.status.is_success(), "{rider}: {:?}", r.body);
    }
    let r = h.app_post(&h.app_token("rider", "new1"), "/app/v1/inbox/read-all").await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let stats = h.notification_view(&id).await["stats"].clone();
    assert_eq!((&stats["sent"], &stats["read"]), (&json!(5), &json!(3)), "{stats}");
    assert_eq!(stats["variants"], json!([shown(2, 1, 0.5), shown(1, 1, 1.0)]), "{stats}");
    assert_eq!(stats["default"], shown(2, 1, 0.5), "{stats}");
    let listed = h.admin_get("/admin/v1/notifications?limit=10").await;
    let in_list = listed.body["items"].as_array().unwrap().iter().find(|n| n["id"] == id.as_str()).cloned();
    assert_eq!(in_list.map(|n| n["stats"].clone()), Some(stats), "the console's list shows the same split");

    let (_, plain) = h.send_and_wait(&TestHerald::notification("无变体", everyone(), json!({}))).await;
    assert_eq!((&plain["stats"]["variants"], &plain["stats"]["default"]), (&json!([]), &Value::Null), "{plain}");
}
