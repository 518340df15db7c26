//! The `SearchIndex` contract: documents replaced whole, an applied position that never goes back,
//! Chinese words found as words and English whatever its case, every filter alone and combined,
//! the two orders, complete cursor paging (also while documents are re-indexed), a rebuild beside
//! the mirror in use, and durability.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_domain::listing::{ListCursor, NotificationFilter};
use herald_domain::search::{SearchCursor, SearchDocument, SearchIndex};
use herald_domain::{
    Audience, Body, Category, City, Group, Locales, LocalizedText, NewNotification, Notification, NotificationId,
    ReceiverKind, Status, Title, ValidityWindow, Variant, Variants,
};

#[async_trait]
pub trait SearchHarness: Send + Sync {
    /// The mirror under test, empty on the first open. Opening again, once every handle of the
    /// previous open is dropped, reaches the same durable state (as a restarted process would).
    async fn open(&self) -> Arc<dyn SearchIndex>;
}

fn city(name: &str) -> City {
    City::parse("city", name).unwrap()
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
}

/// A sent rider announcement to every city, created `minutes` after `base()`.
fn doc(title: &str, body: &str, minutes: i64) -> SearchDocument {
    document(title, body, base() + Duration::minutes(minutes))
}

/// A sent rider announcement to every city, created at `created_at`, with a fresh id: what an
/// adapter's own tests and benchmarks vary from.
pub fn document(title: &str, body: &str, created_at: DateTime<Utc>) -> SearchDocument {
    SearchDocument {
        notification: Notification {
            id: NotificationId::generate(),
            content: NewNotification {
                title: Title::parse("title", title).unwrap(),
                body: Body::parse("body", body).unwrap(),
                category: Category::Announcement,
                receiver_kind: ReceiverKind::Rider,
                audience: audience(r#"{"all": true}"#),
                pinned: false,
                force_read: false,
                validity: ValidityWindow::default(),
                send_at: None,
                draft: false,
                image: None,
                actions: Default::default(),
                locales: Default::default(),
                variants: Default::default(),
            },
            status: Status::Sent,
            created_at,
            sent_at: Some(created_at),
            revoked_at: None,
        },
        cities_reached: Vec::new(),
        matched: 100,
        sent: 90,
        read: 10,
    }
}

fn audience(json: &str) -> Audience {
    serde_json::from_str(json).unwrap()
}

fn id(d: &SearchDocument) -> NotificationId {
    d.notification.id.clone()
}

fn ids(docs: &[&SearchDocument]) -> BTreeSet<NotificationId> {
    docs.iter().map(|d| id(d)).collect()
}

fn text(q: &str) -> NotificationFilter {
    NotificationFilter { text: Some(q.to_string()), ..Default::default() }
}

/// Every hit of `filter`, in the search's order, from one page large enough for all of them.
async fn ordered(index: &dyn SearchIndex, filter: &NotificationFilter) -> Vec<NotificationId> {
    let hits = index.search(filter, None, 1000).await.unwrap();
    assert_eq!(hits.total, hits.ids.len() as u64, "total counts every hit ({filter:?})");
    assert!(hits.next.is_none(), "nothing follows the last hit ({filter:?})");
    hits.ids
}

async fn found(index: &dyn SearchIndex, filter: &NotificationFilter) -> BTreeSet<NotificationId> {
    let hits = ordered(index, filter).await;
    let set: BTreeSet<_> = hits.iter().cloned().collect();
    assert_eq!(set.len(), hits.len(), "no hit twice ({filter:?})");
    set
}

/// Pages through `filter` `limit` hits at a time, checking each page's total against `expected`,
/// and before each page after the first writes what `between` gives, as the next position of the
/// change log.
async fn paged(
    index: &dyn SearchIndex,
    filter: &NotificationFilter,
    limit: usize,
    expected: u64,
    between: &mut dyn FnMut() -> Vec<SearchDocument>,
) -> Vec<NotificationId> {
    let mut all = Vec::new();
    let mut after: Option<SearchCursor> = None;
    let mut position = index.applied().await.unwrap();
    loop {
        if after.is_some() {
            position += 1;
            index.index(position, &between()).await.unwrap();
        }
        let page = index.search(filter, after.as_ref(), limit).await.unwrap();
        assert_eq!(page.total, expected, "the total on every page ({filter:?})");
        assert!(page.ids.len() <= limit);
        all.extend(page.ids.iter().cloned());
        match page.next {
            Some(next) => {
                assert_eq!(page.ids.len(), limit, "only a full page has a next one");
                assert_eq!(&next.last.id, page.ids.last().unwrap(), "the cursor names the last hit");
                assert_eq!(next.score.is_some(), filter.text.is_some(), "a score only when ranked by one");
                after = Some(next);
            }
            None => break,
        }
    }
    all
}

pub async fn indexing_replaces_a_document_whole(h: &dyn SearchHarness) {
    let index = h.open().await;
    let mut old = doc("旧标题 alpha", "旧正文", 0);
    old.notification.status = Status::Sending;
    old.cities_reached = vec![city("杭州")];
    index.index(1, std::slice::from_ref(&old)).await.unwrap();
    assert_eq!(found(&*index, &text("alpha")).await, ids(&[&old]));

    let mut new = old.clone();
    new.notification.content.title = Title::parse("title", "新标题 omega").unwrap();
    new.notification.content.body = Body::parse("body", "新正文").unwrap();
    new.notification.status = Status::Sent;
    new.cities_reached = vec![];
    index.index(2, std::slice::from_ref(&new)).await.unwrap();
    for gone in ["alpha", "旧标题", "旧正文"] {
        assert!(found(&*index, &text(gone)).await.is_empty(), "{gone}: the old text is gone");
    }
    assert_eq!(found(&*index, &text("omega")).await, ids(&[&new]));
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&new]), "one document per notification");
    let sending = NotificationFilter { status: Some(Status::Sending), ..Default::default() };
    assert!(found(&*index, &sending).await.is_empty(), "the old status is gone");
    let hangzhou = NotificationFilter { city: Some(city("杭州")), ..Default::default() };
    assert!(found(&*index, &hangzhou).await.is_empty(), "the old reached cities are gone");

    // Two versions of one notification in one batch: the later one wins.
    let mut first = new.clone();
    first.notification.content.title = Title::parse("title", "first version").unwrap();
    let mut last = new.clone();
    last.notification.content.title = Title::parse("title", "last version").unwrap();
    index.index(3, &[first, last.clone()]).await.unwrap();
    assert!(found(&*index, &text("first")).await.is_empty());
    assert_eq!(found(&*index, &text("last")).await, ids(&[&last]));
    assert_eq!(index.search(&NotificationFilter::default(), None, 10).await.unwrap().total, 1);
}

pub async fn the_applied_position_never_goes_back(h: &dyn SearchHarness) {
    let index = h.open().await;
    assert_eq!(index.applied().await.unwrap(), 0, "an empty mirror applied nothing");
    let a = doc("第一批", "a", 0);
    index.index(5, std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(index.applied().await.unwrap(), 5);

    let below = doc("迟到的一批", "b", 1);
    index.index(3, std::slice::from_ref(&below)).await.unwrap();
    let at = doc("重复的一批", "c", 2);
    index.index(5, std::slice::from_ref(&at)).await.unwrap();
    assert_eq!(index.applied().await.unwrap(), 5, "never back");
    let mut changed = a.clone();
    changed.notification.status = Status::Revoked;
    index.index(4, &[changed]).await.unwrap();
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&a]), "a batch at or below writes nothing");
    let revoked = NotificationFilter { status: Some(Status::Revoked), ..Default::default() };
    assert!(found(&*index, &revoked).await.is_empty(), "not even a replacement");

    index.index(9, &[]).await.unwrap();
    assert_eq!(index.applied().await.unwrap(), 9, "an empty batch moves the position too");
}

pub async fn a_chinese_word_matches_as_a_word_never_by_one_character(h: &dyn SearchHarness) {
    let index = h.open().await;
    let upgrade = doc("骑手端升级通知", "新版本修复了已知问题", 0);
    let phone = doc("手机号变更提醒", "请在设置中修改手机号", 1);
    let apart = doc("骑行安全提示", "雨天路滑，请戴好手套", 2);
    let in_body = doc("本周活动", "骑手专享补贴，先到先得", 3);
    index.index(1, &[upgrade.clone(), phone.clone(), apart.clone(), in_body.clone()]).await.unwrap();

    assert_eq!(found(&*index, &text("骑手")).await, ids(&[&upgrade, &in_body]), "never by 手 or 骑 alone");
    assert_eq!(found(&*index, &text("升级通知")).await, ids(&[&upgrade]));
    assert_eq!(found(&*index, &text("骑手端升级")).await, ids(&[&upgrade]));
    assert_eq!(found(&*index, &text("手机号")).await, ids(&[&phone]));
    assert_eq!(found(&*index, &text("手套")).await, ids(&[&apart]));
    assert_eq!(found(&*index, &text("升级 骑手")).await, ids(&[&upgrade]), "every word, in any order");
    assert!(found(&*index, &text("骑手套")).await.is_empty(), "the characters must stand together");
    assert!(found(&*index, &text("升级 补贴")).await.is_empty(), "every word must be found");
}

pub async fn english_matches_whatever_its_case(h: &dyn SearchHarness) {
    let index = h.open().await;
    let upgrade = doc("App Upgrade Notice", "This release fixes LOGIN issues", 0);
    let listing = doc("Holiday schedule", "The app store listing is updated", 1);
    let mixed = doc("骑手端 App 升级", "Please update before Friday", 2);
    index.index(1, &[upgrade.clone(), listing.clone(), mixed.clone()]).await.unwrap();

    for q in ["upgrade", "UPGRADE", "Upgrade"] {
        assert_eq!(found(&*index, &text(q)).await, ids(&[&upgrade]), "{q}");
    }
    assert_eq!(found(&*index, &text("app")).await, ids(&[&upgrade, &listing, &mixed]));
    assert_eq!(found(&*index, &text("login Issues")).await, ids(&[&upgrade]));
    assert_eq!(found(&*index, &text("APP upgrade notice")).await, ids(&[&upgrade]));
    assert_eq!(found(&*index, &text("骑手 app")).await, ids(&[&mixed]), "Chinese and English words together");
    assert!(found(&*index, &text("friday holiday")).await.is_empty());
}

/// Four notifications telling the city, status, category, receiver kind and time filters apart.
struct Fixture {
    /// Audience names 杭州 and 上海; sent; announcement; riders; created at +0.
    hz_sh_named: SearchDocument,
    /// Audience every city, sends reached 杭州 and 北京; sending; activity; merchants; +10.
    hz_bj_reached: SearchDocument,
    /// Audience names 北京, nothing reached yet; scheduled; system; riders; +20.
    bj_named: SearchDocument,
    /// An include list, which reached 上海; sent; system; merchants; +30.
    sh_direct: SearchDocument,
}

async fn fixture(index: &dyn SearchIndex) -> Fixture {
    let mut hz_sh_named = doc("杭州上海 停运通知", "明日系统维护", 0);
    hz_sh_named.notification.content.audience = audience(r#"{"cities": ["杭州", "上海"]}"#);
    let mut hz_bj_reached = doc("全国 活动通知", "周末补贴", 10);
    hz_bj_reached.cities_reached = vec![city("杭州"), city("北京")];
    hz_bj_reached.notification.status = Status::Sending;
    hz_bj_reached.notification.content.category = Category::Activity;
    hz_bj_reached.notification.content.receiver_kind = ReceiverKind::Merchant;
    let mut bj_named = doc("北京 系统通知", "定时发送", 20);
    bj_named.notification.content.audience = audience(r#"{"cities": ["北京"], "groups": ["vip"]}"#);
    bj_named.notification.status = Status::Scheduled;
    bj_named.notification.content.category = Category::System;
    let mut sh_direct = doc("账户通知", "您的账户已变更", 30);
    sh_direct.notification.content.audience = audience(r#"{"include": ["m1", "m2"]}"#);
    sh_direct.cities_reached = vec![city("上海")];
    sh_direct.notification.content.category = Category::System;
    sh_direct.notification.content.receiver_kind = ReceiverKind::Merchant;
    let f = Fixture { hz_sh_named, hz_bj_reached, bj_named, sh_direct };
    let all = [f.hz_sh_named.clone(), f.hz_bj_reached.clone(), f.bj_named.clone(), f.sh_direct.clone()];
    index.index(1, &all).await.unwrap();
    f
}

fn at(minutes: i64) -> Option<DateTime<Utc>> {
    Some(base() + Duration::minutes(minutes))
}

pub async fn translations_and_variants_are_found_as_the_text_is(h: &dyn SearchHarness) {
    let index = h.open().await;
    let mut rich = doc("周末活动", "全场九折", 0);
    let translation = |title: &str, body: &str| LocalizedText {
        title: Title::parse("title", title).unwrap(),
        body: Body::parse("body", body).unwrap(),
    };
    let en = |title: &str, body: &str| {
        Locales::new("locales", [("en".to_string(), translation(title, body))].into_iter().collect()).unwrap()
    };
    let content = &mut rich.notification.content;
    content.locales = en("Weekend sale", "ten percent off");
    let vip = Variant::new(
        vec![Group::parse("group", "vip").unwrap()],
        Title::parse("title", "会员专享").unwrap(),
        Body::parse("body", "八折优惠").unwrap(),
        None,
        Default::default(),
        en("Members only", "twenty percent"),
    )
    .unwrap();
    content.variants = Variants::new("variants", vec![vip]).unwrap();
    let plain = doc("系统维护", "今晚维护", 1);
    index.index(1, &[rich.clone(), plain.clone()]).await.unwrap();
    for q in ["九折", "weekend", "PERCENT off", "会员", "八折", "members", "twenty"] {
        assert_eq!(found(&*index, &text(q)).await, ids(&[&rich]), "{q}");
    }
    assert_eq!(found(&*index, &text("维护")).await, ids(&[&plain]));
}

pub async fn the_city_filter_matches_named_or_reached_cities(h: &dyn SearchHarness) {
    let index = h.open().await;
    let f = fixture(&*index).await;
    let in_city = |name: &str| NotificationFilter { city: Some(city(name)), ..Default::default() };
    assert_eq!(found(&*index, &in_city("杭州")).await, ids(&[&f.hz_sh_named, &f.hz_bj_reached]));
    assert_eq!(found(&*index, &in_city("北京")).await, ids(&[&f.hz_bj_reached, &f.bj_named]));
    assert_eq!(found(&*index, &in_city("上海")).await, ids(&[&f.hz_sh_named, &f.sh_direct]));
    assert!(found(&*index, &in_city("深圳")).await.is_empty(), "other cities are excluded");
    assert!(found(&*index, &in_city("杭")).await.is_empty(), "a city is matched whole");
}

pub async fn filters_by_status_category_and_receiver_kind(h: &dyn SearchHarness) {
    let index = h.open().await;
    let f = fixture(&*index).await;
    let status = |s| NotificationFilter { status: Some(s), ..Default::default() };
    assert_eq!(found(&*index, &status(Status::Sent)).await, ids(&[&f.hz_sh_named, &f.sh_direct]));
    assert_eq!(found(&*index, &status(Status::Sending)).await, ids(&[&f.hz_bj_reached]));
    assert_eq!(found(&*index, &status(Status::Scheduled)).await, ids(&[&f.bj_named]));
    assert!(found(&*index, &status(Status::Draft)).await.is_empty());
    let category = |c| NotificationFilter { category: Some(c), ..Default::default() };
    assert_eq!(found(&*index, &category(Category::System)).await, ids(&[&f.bj_named, &f.sh_direct]));
    assert_eq!(found(&*index, &category(Category::Activity)).await, ids(&[&f.hz_bj_reached]));
    assert_eq!(found(&*index, &category(Category::Announcement)).await, ids(&[&f.hz_sh_named]));
    let kind = |k| NotificationFilter { receiver_kind: Some(k), ..Default::default() };
    assert_eq!(found(&*index, &kind(ReceiverKind::Merchant)).await, ids(&[&f.hz_bj_reached, &f.sh_direct]));
    assert_eq!(found(&*index, &kind(ReceiverKind::Rider)).await, ids(&[&f.hz_sh_named, &f.bj_named]));
}

pub async fn the_time_filter_takes_created_from_inclusive_to_exclusive(h: &dyn SearchHarness) {
    let index = h.open().await;
    let f = fixture(&*index).await;
    let span = |from, to| NotificationFilter { from, to, ..Default::default() };
    assert_eq!(found(&*index, &span(at(10), None)).await, ids(&[&f.hz_bj_reached, &f.bj_named, &f.sh_direct]));
    assert_eq!(found(&*index, &span(None, at(20))).await, ids(&[&f.hz_sh_named, &f.hz_bj_reached]));
    assert_eq!(found(&*index, &span(at(10), at(30))).await, ids(&[&f.hz_bj_reached, &f.bj_named]));
    let one_ms = Some(base() + Duration::minutes(20) + Duration::milliseconds(1));
    assert_eq!(found(&*index, &span(at(20), one_ms)).await, ids(&[&f.bj_named]), "to the millisecond");
    assert!(found(&*index, &span(at(31), None)).await.is_empty());
    assert!(found(&*index, &span(at(20), at(20))).await.is_empty());
}

pub async fn filters_combine_with_each_other_and_with_text(h: &dyn SearchHarness) {
    let index = h.open().await;
    let f = fixture(&*index).await;
    let rider_bj =
        NotificationFilter {
            city: Some(city("北京")), receiver_kind: Some(ReceiverKind::Rider), ..Default::default()
        };
    assert_eq!(found(&*index, &rider_bj).await, ids(&[&f.bj_named]));
    let sent_system_sh = NotificationFilter {
        city: Some(city("上海")),
        status: Some(Status::Sent),
        category: Some(Category::System),
        ..Default::default()
    };
    assert_eq!(found(&*index, &sent_system_sh).await, ids(&[&f.sh_direct]));
    let hz_later = NotificationFilter { city: Some(city("杭州")), from: at(5), ..Default::default() };
    assert_eq!(found(&*index, &hz_later).await, ids(&[&f.hz_bj_reached]));

    let notice_sh_sent =
        NotificationFilter { city: Some(city("上海")), status: Some(Status::Sent), ..text("通知") };
    assert_eq!(found(&*index, &notice_sh_sent).await, ids(&[&f.hz_sh_named, &f.sh_direct]));
    let everything = NotificationFilter {
        text: Some("通知".into()),
        city: Some(city("北京")),
        status: Some(Status::Sending),
        category: Some(Category::Activity),
        receiver_kind: Some(ReceiverKind::Merchant),
        from: at(10),
        to: at(11),
    };
    assert_eq!(found(&*index, &everything).await, ids(&[&f.hz_bj_reached]));
    assert!(found(&*index, &NotificationFilter { to: at(10), ..everything.clone() }).await.is_empty());
    assert!(found(&*index, &NotificationFilter { text: Some("维护".into()), ..everything }).await.is_empty());
}

pub async fn without_text_the_newest_come_first(h: &dyn SearchHarness) {
    let index = h.open().await;
    let docs = [doc("a", "x", 0), doc("b", "x", 30), doc("c", "x", 10), doc("d", "x", 20)];
    let (mut tie_1, mut tie_2) = (doc("e", "x", 40), doc("f", "x", 40));
    if tie_1.notification.id < tie_2.notification.id {
        std::mem::swap(&mut tie_1, &mut tie_2);
    }
    let mut all = docs.to_vec();
    all.extend([tie_2.clone(), tie_1.clone()]);
    index.index(1, &all).await.unwrap();
    let expected = vec![id(&tie_1), id(&tie_2), id(&docs[1]), id(&docs[3]), id(&docs[2]), id(&docs[0])];
    assert_eq!(ordered(&*index, &NotificationFilter::default()).await, expected, "newest, then the greater id");

    let first = index.search(&NotificationFilter::default(), None, 2).await.unwrap();
    let created_ms = tie_2.notification.created_at.timestamp_millis();
    let next = SearchCursor { score: None, last: ListCursor { created_ms, id: id(&tie_2) } };
    assert_eq!((first.ids, first.total, first.next), (expected[..2].to_vec(), 6, Some(next)));
}

pub async fn with_text_the_most_relevant_come_first_then_the_newest(h: &dyn SearchHarness) {
    let index = h.open().await;
    let strong = doc("停电通知", "明日停电，停电期间暂停接单", 0);
    let weak = doc("本周安排", "周三下午站点附近的小区可能停电，届时请留意其他通知与安排，谢谢配合", 10);
    let twin_old = doc("系统维护", "维护期间停电", 20);
    let twin_new = doc("系统维护", "维护期间停电", 30);
    let unrelated = doc("系统维护", "维护期间暂停接单", 40);
    index.index(1, &[strong.clone(), weak.clone(), twin_old.clone(), twin_new.clone(), unrelated]).await.unwrap();

    let hits = ordered(&*index, &text("停电")).await;
    assert_eq!(hits.len(), 4);
    assert_eq!(hits[0], id(&strong), "in the title and twice in the body ranks above a newer mention in passing");
    let pos = |d: &SearchDocument| hits.iter().position(|h| *h == id(d)).unwrap();
    assert_eq!(pos(&twin_new) + 1, pos(&twin_old), "as relevant: the newer first");
    let first = index.search(&text("停电"), None, 1).await.unwrap();
    let next = first.next.expect("more follow");
    assert!(next.score.is_some(), "a ranked cursor holds the score");
    assert_eq!(next.last.id, id(&strong));
}

/// Twenty-three notifications in Chinese and English, some created in the same millisecond, all
/// mentioning 骑手 (some more than others).
fn many() -> Vec<SearchDocument> {
    (0..23)
        .map(|i| {
            let title = if i % 2 == 0 { format!("第{i}号 骑手通知") } else { format!("Rider notice {i}") };
            let body = format!("{} 请查收 {}", "骑手".repeat(1 + i % 4), "please read ".repeat(i % 3));
            let mut d = doc(&title, &body, (i / 3) as i64);
            d.notification.status = if i % 5 == 0 { Status::Sending } else { Status::Sent };
            d
        })
        .collect()
}

pub async fn cursor_pages_hold_every_hit_once(h: &dyn SearchHarness) {
    let index = h.open().await;
    let docs = many();
    index.index(1, &docs).await.unwrap();
    let sent = NotificationFilter { status: Some(Status::Sent), ..Default::default() };
    let sent_text = NotificationFilter { status: Some(Status::Sent), ..text("骑手") };
    for filter in [NotificationFilter::default(), text("骑手"), sent, sent_text] {
        let whole = ordered(&*index, &filter).await;
        assert!(whole.len() >= 18, "{filter:?}");
        for limit in [1, 5, whole.len()] {
            let pages = paged(&*index, &filter, limit, whole.len() as u64, &mut Vec::new).await;
            assert_eq!(pages, whole, "pages of {limit} add up to the whole, in order ({filter:?})");
        }
    }
}

pub async fn pages_stay_complete_while_documents_are_written(h: &dyn SearchHarness) {
    let index = h.open().await;
    let docs = many();
    index.index(1, &docs).await.unwrap();
    // Between pages, those being sent are re-indexed, as a send refreshes their counts...
    let mut sending: Vec<_> = docs.iter().filter(|d| d.notification.status == Status::Sending).cloned().collect();
    let mut refresh = || {
        for d in &mut sending {
            d.sent += 1;
            d.read += 1;
        }
        sending.clone()
    };
    for filter in [NotificationFilter::default(), text("骑手"), text("rider notice")] {
        let whole = found(&*index, &filter).await;
        let pages = paged(&*index, &filter, 4, whole.len() as u64, &mut refresh).await;
        let once: BTreeSet<_> = pages.iter().cloned().collect();
        assert_eq!(once.len(), pages.len(), "no hit twice ({filter:?})");
        assert_eq!(once, whole, "no hit missed ({filter:?})");
    }
    // ...and drafts are written that the filter excludes but that use the same words (a score
    // taken from the whole mirror's statistics would move under the cursor).
    let mut draft = || {
        let mut d = doc("骑手 rider notice 草稿", "骑手骑手骑手 rider", 5);
        d.notification.status = Status::Draft;
        vec![d]
    };
    let sent = |f: NotificationFilter| NotificationFilter { status: Some(Status::Sent), ..f };
    for filter in [sent(text("骑手")), sent(text("rider notice")), sent(NotificationFilter::default())] {
        let whole = found(&*index, &filter).await;
        let pages = paged(&*index, &filter, 4, whole.len() as u64, &mut draft).await;
        assert_eq!(pages.len(), whole.len(), "no hit twice ({filter:?})");
        assert_eq!(pages.into_iter().collect::<BTreeSet<_>>(), whole, "no hit missed ({filter:?})");
    }
}

pub async fn a_rebuild_answers_from_the_old_mirror_until_finished(h: &dyn SearchHarness) {
    let index = h.open().await;
    let old = doc("旧镜像", "old", 0);
    index.index(10, std::slice::from_ref(&old)).await.unwrap();
    let mut rebuild = index.begin_rebuild().await.unwrap();
    let (new_a, new_b) = (doc("新镜像 A", "new", 1), doc("新镜像 B", "new", 2));
    rebuild.add(std::slice::from_ref(&new_a)).await.unwrap();
    rebuild.add(std::slice::from_ref(&new_b)).await.unwrap();
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&old]), "the old one answers meanwhile");
    assert_eq!(index.applied().await.unwrap(), 10);
    let during = doc("重建期间", "during", 3);
    index.index(11, std::slice::from_ref(&during)).await.unwrap();
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&old, &during]), "and is still fed");

    rebuild.finish(8).await.unwrap();
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&new_a, &new_b]), "the new one answers");
    assert_eq!(found(&*index, &text("新镜像")).await, ids(&[&new_a, &new_b]));
    assert!(found(&*index, &text("旧镜像")).await.is_empty());
    assert_eq!(index.applied().await.unwrap(), 8, "as having applied the position given");
    index.index(9, std::slice::from_ref(&during)).await.unwrap();
    assert_eq!(index.applied().await.unwrap(), 9);
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&new_a, &new_b, &during]));
}

pub async fn an_abandoned_rebuild_changes_nothing(h: &dyn SearchHarness) {
    let index = h.open().await;
    let kept = doc("保留", "kept", 0);
    index.index(4, std::slice::from_ref(&kept)).await.unwrap();
    let mut abandoned = index.begin_rebuild().await.unwrap();
    abandoned.add(&[doc("放弃", "abandoned", 1)]).await.unwrap();
    drop(abandoned);
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&kept]));
    assert_eq!(index.applied().await.unwrap(), 4);

    let mut again = index.begin_rebuild().await.unwrap();
    let fresh = doc("重建", "fresh", 2);
    again.add(std::slice::from_ref(&fresh)).await.unwrap();
    again.finish(4).await.unwrap();
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&fresh]), "a later rebuild still works");
}

pub async fn reopening_keeps_documents_and_position(h: &dyn SearchHarness) {
    let index = h.open().await;
    let f = fixture(&*index).await;
    index.index(3, &[]).await.unwrap();
    drop(index);
    let index = h.open().await;
    assert_eq!(index.applied().await.unwrap(), 3);
    let everyone = [&f.hz_sh_named, &f.hz_bj_reached, &f.bj_named, &f.sh_direct];
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&everyone));
    let hangzhou = NotificationFilter { city: Some(city("杭州")), ..Default::default() };
    assert_eq!(found(&*index, &hangzhou).await, ids(&[&f.hz_sh_named, &f.hz_bj_reached]));
    assert_eq!(found(&*index, &text("停运")).await, ids(&[&f.hz_sh_named]));

    let mut rebuild = index.begin_rebuild().await.unwrap();
    let rebuilt = doc("重建之后", "after", 0);
    rebuild.add(std::slice::from_ref(&rebuilt)).await.unwrap();
    rebuild.finish(2).await.unwrap();
    drop(index);
    let index = h.open().await;
    assert_eq!(index.applied().await.unwrap(), 2, "the rebuilt mirror is the one reopened");
    assert_eq!(found(&*index, &NotificationFilter::default()).await, ids(&[&rebuilt]));
}

pub async fn ping_answers(h: &dyn SearchHarness) {
    let index = h.open().await;
    index.ping().await.unwrap();
}

crate::suite!($ search, search_contract, [
    indexing_replaces_a_document_whole,
    the_applied_position_never_goes_back,
    a_chinese_word_matches_as_a_word_never_by_one_character,
    english_matches_whatever_its_case,
    translations_and_variants_are_found_as_the_text_is,
    the_city_filter_matches_named_or_reached_cities,
    filters_by_status_category_and_receiver_kind,
    the_time_filter_takes_created_from_inclusive_to_exclusive,
    filters_combine_with_each_other_and_with_text,
    without_text_the_newest_come_first,
    with_text_the_most_relevant_come_first_then_the_newest,
    cursor_pages_hold_every_hit_once,
    pages_stay_complete_while_documents_are_written,
    a_rebuild_answers_from_the_old_mirror_until_finished,
    an_abandoned_rebuild_changes_nothing,
    reopening_keeps_documents_and_position,
    ping_answers,
]);
