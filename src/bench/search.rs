//! `herald bench search`: the console's search over N notifications (realistic Chinese and
//! English titles and bodies, 300 cities, every status and category, a year of creation times in
//! the order they were created), through the `SearchIndex` port of whichever adapter the caller
//! opened: indexing throughput (a rebuild in bulk, then the feed's way: batches of 500 each
//! written with its position) and p50 / p99 of the typical console queries, pages of 20.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_domain::listing::NotificationFilter;
use herald_domain::search::{SearchCursor, SearchDocument, SearchIndex};
use herald_domain::{
    Audience, Body, Category, City, NewNotification, Notification, NotificationId, ReceiverKind, Status, Title,
    ValidityWindow,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::json;

use super::Latencies;
use super::report::machine;

const SEED: u64 = 0x5345_4152_4348;
/// Notifications per `index` call of the feed (as `SearchFeed` writes them) and per rebuild batch.
const FEED_BATCH: usize = 500;
const REBUILD_BATCH: usize = 10_000;
const PAGE: usize = 20;
/// Which page the deep-page queries time, reached by cursor.
const DEEP_PAGE: usize = 20;
const DAY_MS: i64 = 86_400_000;

const FIRST: [&str; 20] = [
    "杭", "上", "北", "深", "广", "成", "武", "南", "西", "苏", "天", "重", "长", "郑", "青", "沈", "宁", "昆", "合",
    "福",
];
const SECOND: [&str; 15] = ["州", "海", "京", "圳", "阳", "都", "汉", "宁", "安", "江", "津", "庆", "沙", "岛", "门"];
const TOPICS: [&str; 12] = [
    "骑手端升级",
    "商家结算",
    "夜间配送补贴",
    "恶劣天气预警",
    "系统维护",
    "新人奖励",
    "高峰时段加价",
    "服装申领",
    "保险理赔",
    "安全培训",
    "账户安全",
    "节假日排班",
];
const KINDS_OF_NOTICE: [&str; 6] = ["通知", "公告", "提醒", "说明", "活动", "调整"];
const SENTENCES: [&str; 12] = [
    "请各位骑手在本周五之前完成升级，旧版本将无法接单。",
    "本次调整自下月一日起生效，具体规则以页面说明为准。",
    "如有疑问请联系站点负责人或在线客服。",
    "活动期间完成指定单量可获得额外奖励，奖励将在次日发放。",
    "受强降雨影响，部分区域配送时间将适当延长，请注意行车安全。",
    "商家可在后台查看结算明细，结算周期为每周一次。",
    "系统将于凌晨两点至四点进行维护，期间部分功能暂停使用。",
    "Please update the rider app to the latest version before Friday.",
    "Settlement reports are now available in the merchant console.",
    "Orders during peak hours earn a bonus of up to 30 percent.",
    "Heavy rain is expected tonight; please ride carefully and wear your helmet.",
    "Contact your station manager if you have any questions about this change.",
];
const ENGLISH_TITLES: [&str; 6] = [
    "Rider app upgrade",
    "Merchant settlement update",
    "Peak hour bonus",
    "Weather warning",
    "Maintenance notice",
    "Insurance claim guide",
];
/// What operators type: Chinese words of two to six characters, English words, two words.
const QUERIES: [&str; 8] =
    ["骑手", "升级通知", "夜间配送补贴", "upgrade", "Settlement", "维护", "rider app", "补贴 奖励"];

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub notifications: usize,
    /// How many of them are indexed again the feed's way, after the rebuild.
    pub fed: usize,
    /// Times each query is run.
    pub rounds: usize,
}

/// p50 / p99 of one query, in ms, and how many it matched (the median total).
#[derive(Debug, Clone, Serialize)]
pub struct QueryTimes {
    pub query: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub median_total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    /// The adapter measured.
    pub backend: String,
    pub notifications: usize,
    pub cities: usize,
    /// Notifications per second written by a rebuild in bulk.
    pub rebuild_docs_per_second: f64,
    pub rebuild_seconds: f64,
    /// Notifications per second written the feed's way, each batch replacing what the index held.
    pub fed: usize,
    pub fed_docs_per_second: f64,
    pub queries: Vec<QueryTimes>,
}

fn cities() -> Vec<City> {
    FIRST
        .iter()
        .flat_map(|a| SECOND.iter().map(move |b| format!("{a}{b}")))
        .take(300)
        .map(|name| City::parse("city", &name).expect("a city name"))
        .collect()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).single().expect("a valid date")
}

fn audience(value: serde_json::Value) -> anyhow::Result<Audience> {
    Ok(serde_json::from_value(value)?)
}

/// The `i`-th of `n` notifications created over a year, in order: mostly Chinese, some English,
/// to every city (with the cities its sends reached) or to a few named, or to an include list.
fn notification(rng: &mut StdRng, cities: &[City], i: usize, n: usize) -> anyhow::Result<SearchDocument> {
    let city = |rng: &mut StdRng| cities[rng.random_range(0..cities.len())].clone();
    let title = if rng.random_bool(0.8) {
        let named = city(rng);
        let topic = TOPICS[rng.random_range(0..TOPICS.len())];
        format!("{named}{topic}{}", KINDS_OF_NOTICE[rng.random_range(0..KINDS_OF_NOTICE.len())])
    } else {
        format!("{} {}", ENGLISH_TITLES[rng.random_range(0..ENGLISH_TITLES.len())], rng.random_range(1..100))
    };
    let body: String = (0..rng.random_range(1..6)).map(|_| SENTENCES[rng.random_range(0..SENTENCES.len())]).collect();
    let year_ms = 365 * DAY_MS;
    let created_at = start() + Duration::milliseconds(year_ms * i as i64 / n.max(1) as i64);
    let status = match rng.random_range(0..100) {
        0..80 => Status::Sent,
        80..88 => Status::Sending,
        88..93 => Status::Scheduled,
        93..96 => Status::Revoked,
        96..98 => Status::Cancelled,
        _ => Status::Draft,
    };
    let (audience, cities_reached) = match rng.random_range(0..10) {
        0..6 => (audience(json!({"all": true}))?, (0..rng.random_range(1..30)).map(|_| city(rng)).collect()),
        6..9 => {
            let named: Vec<String> = (0..rng.random_range(1..5)).map(|_| city(rng).to_string()).collect();
            (audience(json!({ "cities": named }))?, Vec::new())
        }
        _ => (audience(json!({"include": ["r1", "r2"]}))?, vec![city(rng)]),
    };
    let matched = rng.random_range(0..100_000);
    let sent = matched;
    Ok(SearchDocument {
        notification: Notification {
            id: NotificationId::generate(),
            content: NewNotification {
                title: Title::parse("title", &title)?,
                body: Body::parse("body", &body)?,
                category: Category::ALL[rng.random_range(0..Category::ALL.len())],
                receiver_kind: ReceiverKind::ALL[rng.random_range(0..ReceiverKind::ALL.len())],
                audience,
                pinned: rng.random_bool(0.02),
                force_read: rng.random_bool(0.01),
                validity: ValidityWindow::default(),
                send_at: None,
                draft: status == Status::Draft,
                image: None,
                actions: Default::default(),
                locales: Default::default(),
                variants: Default::default(),
            },
            status,
            created_at,
            sent_at: matches!(status, Status::Sent | Status::Revoked).then_some(created_at),
            revoked_at: (status == Status::Revoked).then_some(created_at),
        },
        cities_reached,
        matched,
        sent,
        read: sent / 3,
    })
}

/// Runs each query of `make` `rounds` times (the `i`-th round's filter from `make(i)`), timing the
/// `page`-th page, reached by cursor from the first.
async fn measure(
    index: &dyn SearchIndex,
    name: &str,
    rounds: usize,
    page: usize,
    make: impl Fn(usize) -> NotificationFilter,
) -> anyhow::Result<QueryTimes> {
    let mut millis = Vec::with_capacity(rounds);
    let mut totals = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let filter = make(i);
        let mut after: Option<SearchCursor> = None;
        for _ in 1..page {
            after = index.search(&filter, after.as_ref(), PAGE).await?.next;
            anyhow::ensure!(after.is_some(), "{name}: fewer than {page} pages");
        }
        let started = Instant::now();
        let hits = index.search(&filter, after.as_ref(), PAGE).await?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        totals.push(hits.total);
    }
    totals.sort_unstable();
    let times = Latencies { millis };
    Ok(QueryTimes {
        query: name.to_string(),
        p50_ms: times.quantile(0.5),
        p99_ms: times.quantile(0.99),
        median_total: totals.get(totals.len() / 2).copied().unwrap_or(0),
    })
}

/// Indexes `options.notifications` into `index` (which should be empty: its mirror is replaced)
/// and measures it. Progress goes to stderr.
pub async fn search(index: &dyn SearchIndex, backend: &str, options: &SearchOptions) -> anyhow::Result<SearchReport> {
    let n = options.notifications;
    anyhow::ensure!(n > 0 && options.rounds > 0, "need at least one notification and one round");
    let cities = cities();
    let mut rng = StdRng::seed_from_u64(SEED);
    let docs = (0..n).map(|i| notification(&mut rng, &cities, i, n)).collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!("{n} notifications over {} cities; indexing them into {backend}", cities.len());

    let started = Instant::now();
    let mut rebuild = index.begin_rebuild().await?;
    for chunk in docs.chunks(REBUILD_BATCH) {
        rebuild.add(chunk).await?;
    }
    rebuild.finish(1).await?;
    let rebuild_seconds = started.elapsed().as_secs_f64();
    eprintln!("rebuilt in {rebuild_seconds:.1} s");

    // The newest ones change again, as sends progress: the feed replaces them.
    let fed = options.fed.min(n);
    let started = Instant::now();
    for (i, chunk) in docs[n - fed..].chunks(FEED_BATCH).enumerate() {
        index.index(2 + i as u64, chunk).await?;
    }
    let fed_seconds = started.elapsed().as_secs_f64();
    eprintln!("{fed} fed again in {fed_seconds:.1} s");

    let text = |i: usize| Some(QUERIES[i % QUERIES.len()].to_string());
    let city = |i: usize| Some(cities[(i * 7919) % cities.len()].clone());
    let month = |i: usize| {
        let from = start() + Duration::days(((i * 31) % 330) as i64);
        (Some(from), Some(from + Duration::days(30)))
    };
    let rounds = options.rounds;
    let deep = rounds.div_ceil(5);
    let mut queries = Vec::new();
    // A few searches first, so the first timed one does not pay for opening files.
    measure(index, "warm-up", 10, 1, |_| NotificationFilter::default()).await?;
    queries.push(
        measure(index, "text only", rounds, 1, |i| NotificationFilter { text: text(i), ..Default::default() }).await?,
    );
    queries.push(
        measure(index, "text + city + 30 days", rounds, 1, |i| {
            let (from, to) = month(i);
            NotificationFilter { text: text(i), city: city(i), from, to, ..Default::default() }
        })
        .await?,
    );
    queries.push(
        measure(index, "status (each in turn), newest first", rounds, 1, |i| NotificationFilter {
            status: Some(Status::ALL[i % Status::ALL.len()]),
            ..Default::default()
        })
        .await?,
    );
    queries.push(
        measure(index, "city + category, newest first", rounds, 1, |i| NotificationFilter {
            city: city(i),
            category: Some(Category::Activity),
            ..Default::default()
        })
        .await?,
    );
    queries.push(measure(index, "no filter, newest first", rounds, 1, |_| NotificationFilter::default()).await?);
    queries.push(
        measure(index, "text, page 20 by cursor", deep, DEEP_PAGE, |i| NotificationFilter {
            text: text(i),
            ..Default::default()
        })
        .await?,
    );
    queries.push(
        measure(index, "no filter, page 20 by cursor", deep, DEEP_PAGE, |_| NotificationFilter::default()).await?,
    );
    Ok(SearchReport {
        backend: backend.to_string(),
        notifications: n,
        cities: cities.len(),
        rebuild_docs_per_second: n as f64 / rebuild_seconds,
        rebuild_seconds,
        fed,
        fed_docs_per_second: fed as f64 / fed_seconds,
        queries,
    })
}

/// The report as a Markdown table.
pub fn markdown(r: &SearchReport, stamp: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Search: {} notifications, {} cities, {}, {stamp}\n", r.notifications, r.cities, r.backend);
    let _ = writeln!(md, "Machine: {}. Pages of {PAGE}; {} build.\n", machine(), build());
    let _ = writeln!(
        md,
        "Indexing: rebuild {:.0} docs/s ({:.1} s); the feed's way (batches of {FEED_BATCH}, {} replaced) {:.0} docs/s.\n",
        r.rebuild_docs_per_second, r.rebuild_seconds, r.fed, r.fed_docs_per_second
    );
    let _ = writeln!(md, "| query | p50 | p99 | matches (median) |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for q in &r.queries {
        let _ = writeln!(md, "| {} | {:.2} ms | {:.2} ms | {} |", q.query, q.p50_ms, q.p99_ms, q.median_total);
    }
    md
}

fn build() -> &'static str {
    if cfg!(debug_assertions) { "debug" } else { "release" }
}

/// Writes `search-<stamp>.json`, `search-<stamp>.md` and `search-latest.md` into `dir`; returns the
/// Markdown and the files written.
pub fn write(dir: &Path, report: &SearchReport) -> anyhow::Result<(String, Vec<PathBuf>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let markdown = markdown(report, &stamp);
    let json = serde_json::to_string_pretty(
        &json!({"when": stamp, "machine": machine(), "build": build(), "report": report}),
    )?;
    let files = [
        (format!("search-{stamp}.json"), json),
        (format!("search-{stamp}.md"), markdown.clone()),
        ("search-latest.md".to_string(), markdown.clone()),
    ];
    Ok((markdown, crate::bench::report::write_files(dir, files)?))
}
