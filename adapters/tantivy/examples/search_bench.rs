//! Measures the embedded search index: indexing throughput (a rebuild in bulk, and the feeder's
//! way: batches of 1,000 each committed with its position) and query latency (p50 / p99) for the
//! console's typical queries, over N realistic notifications (Chinese and English, 300 cities).
//!
//! `cargo run --release -p herald-tantivy --example search_bench -- [N] [DIR]` (N = 100000; DIR a
//! fresh temp dir unless given).

use std::time::{Duration as Elapsed, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald_contracts::search::document;
use herald_domain::listing::NotificationFilter;
use herald_domain::search::{SearchCursor, SearchDocument, SearchIndex};
use herald_domain::{Category, City, ReceiverKind, Status};
use herald_tantivy::{TantivyConfig, TantivySearch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

fn cities() -> Vec<City> {
    FIRST
        .iter()
        .flat_map(|a| SECOND.iter().map(move |b| City::parse("city", &format!("{a}{b}")).unwrap()))
        .take(300)
        .collect()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap()
}

/// One notification of a year of them: mostly Chinese, some English, to every city (with the
/// cities reached) or to a few, or to an include list.
fn notification(rng: &mut StdRng, cities: &[City]) -> SearchDocument {
    let city = |rng: &mut StdRng| cities[rng.random_range(0..cities.len())].clone();
    let title = if rng.random_bool(0.8) {
        let named = city(rng);
        let topic = TOPICS[rng.random_range(0..TOPICS.len())];
        format!("{named}{topic}{}", KINDS_OF_NOTICE[rng.random_range(0..KINDS_OF_NOTICE.len())])
    } else {
        format!("{} {}", ENGLISH_TITLES[rng.random_range(0..ENGLISH_TITLES.len())], rng.random_range(1..100))
    };
    let body: String = (0..rng.random_range(1..6)).map(|_| SENTENCES[rng.random_range(0..SENTENCES.len())]).collect();
    let created_at = start() + Duration::milliseconds(rng.random_range(0..365 * 86_400_000_i64));
    let mut d = document(&title, &body, created_at);
    let n = &mut d.notification;
    n.content.category = Category::ALL[rng.random_range(0..3)];
    n.content.receiver_kind = ReceiverKind::ALL[rng.random_range(0..2)];
    n.status = match rng.random_range(0..100) {
        0..80 => Status::Sent,
        80..88 => Status::Sending,
        88..93 => Status::Scheduled,
        93..96 => Status::Revoked,
        96..98 => Status::Cancelled,
        _ => Status::Draft,
    };
    match rng.random_range(0..10) {
        0..6 => d.cities_reached = (0..rng.random_range(1..30)).map(|_| city(rng)).collect(),
        6..9 => {
            let named: Vec<String> = (0..rng.random_range(1..5)).map(|_| city(rng).to_string()).collect();
            n.content.audience = serde_json::from_value(serde_json::json!({ "cities": named })).unwrap();
        }
        _ => {
            n.content.audience = serde_json::from_value(serde_json::json!({ "include": ["r1", "r2"] })).unwrap();
            d.cities_reached = vec![city(rng)];
        }
    }
    d
}

fn percentile(sorted: &[Elapsed], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `make`'s queries `rounds` times each and prints p50 / p99 in ms and the median total.
async fn measure(
    index: &dyn SearchIndex,
    name: &str,
    rounds: usize,
    mut make: impl FnMut(usize) -> (NotificationFilter, usize),
) {
    let mut times = Vec::with_capacity(rounds);
    let mut totals = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let (filter, pages) = make(i);
        let mut after: Option<SearchCursor> = None;
        let mut took = Elapsed::ZERO;
        for _ in 0..pages {
            let t = Instant::now();
            let hits = index.search(&filter, after.as_ref(), 20).await.unwrap();
            took = t.elapsed(); // the last page's time: a deep page when `pages` > 1
            totals.push(hits.total);
            after = hits.next;
            if after.is_none() {
                break;
            }
        }
        times.push(took);
    }
    times.sort();
    totals.sort();
    println!(
        "{name:<34} p50 {:>7.2} ms  p99 {:>7.2} ms  (median total {})",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        totals[totals.len() / 2]
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(100_000, |a| a.parse().expect("N: a number of notifications"));
    let temp = tempfile::tempdir().unwrap();
    let dir = args.next().map_or_else(|| temp.path().to_path_buf(), Into::into);
    let config = TantivyConfig::in_data_dir(&dir);
    let cities = cities();
    let mut rng = StdRng::seed_from_u64(7);
    let docs: Vec<SearchDocument> = (0..n).map(|_| notification(&mut rng, &cities)).collect();
    println!("{n} notifications, {} cities, in {}", cities.len(), config.dir.display());

    let index = TantivySearch::open(&config).await.unwrap();
    let t = Instant::now();
    let mut rebuild = index.begin_rebuild().await.unwrap();
    for chunk in docs.chunks(10_000) {
        rebuild.add(chunk).await.unwrap();
    }
    rebuild.finish(1).await.unwrap();
    let took = t.elapsed().as_secs_f64();
    println!("rebuild (bulk):        {:>9.0} docs/s ({took:.1} s)", n as f64 / took);

    let feeder = docs.len().min(100_000);
    let t = Instant::now();
    for (i, chunk) in docs[..feeder].chunks(1_000).enumerate() {
        index.index(2 + i as u64, chunk).await.unwrap();
    }
    let took = t.elapsed().as_secs_f64();
    println!("feeder (1,000 a commit): {:>7.0} docs/s ({feeder} re-indexed in {took:.1} s)", feeder as f64 / took);
    drop(index);
    let size: u64 = walk(&config.dir);
    let t = Instant::now();
    let index = TantivySearch::open(&config).await.unwrap();
    println!("reopen (checksums too): {:.2} s; on disk {:.0} MB", t.elapsed().as_secs_f64(), size as f64 / 1e6);

    let words = ["骑手", "升级通知", "夜间配送补贴", "upgrade", "Settlement", "维护", "rider app", "补贴 奖励"];
    let text = |i: usize| Some(words[i % words.len()].to_string());
    let pick = |i: usize| cities[(i * 7919) % cities.len()].clone();
    let month = |i: usize| {
        let from = start() + Duration::days(((i * 31) % 330) as i64);
        (Some(from), Some(from + Duration::days(30)))
    };
    let rounds = 200;
    measure(&index, "text only", rounds, |i| (NotificationFilter { text: text(i), ..Default::default() }, 1)).await;
    measure(&index, "text + city + 30 days", rounds, |i| {
        let (from, to) = month(i);
        (NotificationFilter { text: text(i), city: Some(pick(i)), from, to, ..Default::default() }, 1)
    })
    .await;
    measure(&index, "status (sending), newest first", rounds, |_| {
        (NotificationFilter { status: Some(Status::Sending), ..Default::default() }, 1)
    })
    .await;
    measure(&index, "city + category, newest first", rounds, |i| {
        (NotificationFilter { city: Some(pick(i)), category: Some(Category::Activity), ..Default::default() }, 1)
    })
    .await;
    measure(&index, "no filter, page 1", rounds, |_| (NotificationFilter::default(), 1)).await;
    measure(&index, "text, page 50 (cursor)", 40, |i| (NotificationFilter { text: text(i), ..Default::default() }, 50))
        .await;
    measure(&index, "no filter, page 50 (cursor)", 40, |_| (NotificationFilter::default(), 50)).await;
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { walk(&e.path()) } else { e.metadata().unwrap().len() }
        })
        .sum()
}
