//! Indexing throughput and query latency through the adapter, by hand (not a test):
//! `HERALD_TEST_SEARCH_URL=$(scripts/search-server.sh start) cargo run --release -p herald-elasticsearch
//! --example bench_search [DOCS]`
//!
//! Indexes DOCS notifications (default 100,000: Chinese and English titles and bodies, 300 cities) in
//! batches of 1,000 as the feed writes them, then runs each typical console query 200 times and
//! prints p50 / p99. Its indices (under a prefix of its own) are deleted at the end.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use herald_domain::listing::NotificationFilter;
use herald_domain::search::{SearchDocument, SearchIndex};
use herald_domain::{
    Audience, Body, Category, City, NewNotification, Notification, NotificationId, ReceiverKind, Status, Title,
    ValidityWindow,
};
use herald_elasticsearch::{ElasticsearchConfig, ElasticsearchIndex};

const CITIES: usize = 300;
const BATCH: usize = 1_000;
const RUNS: usize = 200;
const START_MS: i64 = 1_767_225_600_000; // 2026-01-01

const ZH_TITLES: &[&str] = &[
    "骑手端升级通知",
    "春节期间配送费调整",
    "商家结算周期变更公告",
    "暴雨天气安全提醒",
    "新用户专享活动上线",
    "系统维护停服通知",
    "骑手保险理赔流程更新",
    "门店营业时间调整说明",
];
const EN_TITLES: &[&str] = &[
    "Rider app update required",
    "Holiday delivery fee changes",
    "Merchant settlement schedule",
    "Severe weather safety notice",
    "New customer promotion live",
    "Scheduled system maintenance",
];
const BODIES: &[&str] = &[
    "请各位骑手在本周内完成升级，旧版本将停止服务。",
    "配送高峰期间请注意交通安全，遵守交通规则。",
    "结算将于每周一进行，如有疑问请联系客服。",
    "Please update before Friday; older versions stop working.",
    "Settlements now run every Monday. Contact support with questions.",
];

/// A well-mixed number from `n` (and a salt), so each choice below varies independently of the others.
fn pick(n: usize, salt: u64, choices: usize) -> usize {
    let mut x = (n as u64 ^ salt.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    (x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32) as usize % choices
}

fn document(n: usize) -> SearchDocument {
    let title = if pick(n, 1, 3) == 0 {
        EN_TITLES[pick(n, 2, EN_TITLES.len())]
    } else {
        ZH_TITLES[pick(n, 2, ZH_TITLES.len())]
    };
    let city = format!("city{:03}", pick(n, 3, CITIES));
    let content = NewNotification {
        title: Title::parse("title", &format!("{title} #{n}")).unwrap(),
        body: Body::parse("body", BODIES[pick(n, 4, BODIES.len())]).unwrap(),
        category: Category::ALL[pick(n, 5, 3)],
        receiver_kind: ReceiverKind::ALL[pick(n, 6, 2)],
        audience: serde_json::from_str::<Audience>(&format!(r#"{{"cities": ["{city}"]}}"#)).unwrap(),
        pinned: pick(n, 8, 50) == 0,
        force_read: pick(n, 9, 70) == 0,
        validity: ValidityWindow::new(None, None).unwrap(),
        send_at: None,
        draft: false,
    };
    // One a minute, newest last.
    let created_at = Utc.timestamp_millis_opt(START_MS + n as i64 * 60_000).unwrap();
    let status = Status::ALL[pick(n, 7, Status::ALL.len())];
    let notification =
        Notification { id: NotificationId::generate(), content, status, created_at, sent_at: None, revoked_at: None };
    let sent = (n % 5_000) as u64;
    SearchDocument {
        notification,
        cities_reached: vec![City::parse("city", &city).unwrap()],
        matched: sent,
        sent,
        read: sent / 3,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let url = std::env::var("HERALD_TEST_SEARCH_URL").expect("HERALD_TEST_SEARCH_URL=http://host:port");
    let docs: usize = std::env::args().nth(1).map_or(100_000, |n| n.parse().expect("DOCS is a number"));
    let config = ElasticsearchConfig {
        prefix: format!("herald-bench-{}-", std::process::id()),
        search_timeout: Duration::from_secs(30),
        ..ElasticsearchConfig::new(&url)
    };
    let mirror = ElasticsearchIndex::new(config).expect("a valid URL");

    let started = Instant::now();
    for (batch, first) in (0..docs).step_by(BATCH).enumerate() {
        let documents: Vec<_> = (first..(first + BATCH).min(docs)).map(document).collect();
        mirror.index(batch as u64 + 1, &documents).await.expect("a batch is indexed");
    }
    let took = started.elapsed();
    println!(
        "indexed {docs} notifications in batches of {BATCH} in {took:.2?}: {:.0} docs/s",
        docs as f64 / took.as_secs_f64()
    );

    let city = |c: usize| Some(City::parse("city", &format!("city{c:03}")).unwrap());
    let day = |d: i64| Some(Utc.timestamp_millis_opt(START_MS + d * 86_400_000).unwrap());
    let text = |q: &str| Some(q.to_string());
    let queries: Vec<(&str, NotificationFilter, usize)> = vec![
        ("text only (骑手)", NotificationFilter { text: text("骑手"), ..Default::default() }, 1),
        ("text only (maintenance)", NotificationFilter { text: text("maintenance"), ..Default::default() }, 1),
        (
            "text + city + 30 days",
            NotificationFilter {
                text: text("升级"), city: city(7), from: day(10), to: day(40), ..Default::default()
            },
            1,
        ),
        ("status filter", NotificationFilter { status: Some(Status::Sent), ..Default::default() }, 1),
        ("deep page (page 20, newest first)", NotificationFilter::default(), 20),
    ];
    for (name, filter, pages) in &queries {
        // The cursor where the timed page starts (search_after: a deep page costs one query).
        let mut after = None;
        for _ in 1..*pages {
            after = mirror.search(filter, after.as_ref(), 20).await.expect("a search").next;
        }
        let mut times = Vec::with_capacity(RUNS);
        let mut total = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            total = mirror.search(filter, after.as_ref(), 20).await.expect("a search").total;
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "{name}: {total} hits, a page of 20: p50 {:.1?}, p99 {:.1?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    mirror.delete_all().await.expect("the bench's indices are deleted");
}
