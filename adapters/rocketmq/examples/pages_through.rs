//! End-to-end pages through the broker, by hand (not a test): publish → pull → ack the way the
//! consumer role does it (a lane pulling up to 16 pages at once), no inbox writes.
//! `HERALD_TEST_MQ_NAMESRV=127.0.0.1:9876 cargo run -p herald-rocketmq --example pages_through [PAGES]`
//! Three runs of PAGES pages (default 2000) of 500 receivers; prints pages/s and the publish →
//! delivery latency (p50, p99) of each run and the medians.
#![recursion_limit = "512"]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_domain::ports::{Queue, QueueMessage, Subscription};
use herald_rocketmq::{RocketMqQueue, RocketMqSettings};

/// Pages held at once, as a consumer with a few lanes' slots would.
const IN_HAND: usize = 16;

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

/// A page about the size the scheduler writes (500 ids of ~12 bytes), its publish time first.
fn page_body(page: usize) -> Vec<u8> {
    let ids = (0..500).map(|i| format!("rider-{:06}", page * 500 + i)).collect::<Vec<_>>().join(",");
    format!("{}|{ids}", now_micros()).into_bytes()
}

fn sent_at(body: &[u8]) -> u128 {
    let text = std::str::from_utf8(body).expect("utf-8");
    text.split_once('|').expect("a stamp").0.parse().expect("micros")
}

fn percentile(sorted: &[u128], p: f64) -> Duration {
    Duration::from_micros(sorted[((sorted.len() - 1) as f64 * p) as usize] as u64)
}

#[tokio::main]
async fn main() {
    let namesrv = std::env::var("HERALD_TEST_MQ_NAMESRV").expect("HERALD_TEST_MQ_NAMESRV=host:port");
    let pages: usize = std::env::args().nth(1).map_or(2000, |n| n.parse().expect("PAGES is a number"));
    let queue = std::sync::Arc::new(RocketMqQueue::connect(RocketMqSettings::new(namesrv)).await.expect("broker"));
    let mut results = Vec::new();
    for run in 1..=3 {
        let stamp = format!("{}_{run}", std::process::id());
        let topic = format!("herald_bench_through_{stamp}");
        let sub = Subscription {
            group: format!("herald_bench_{stamp}"),
            topics: vec![topic.clone()],
            tags: vec!["rider".into(), "merchant".into()],
        };
        queue.subscribe(&sub).await.expect("subscribe");
        let started = Instant::now();
        let publisher = {
            let (queue, topic) = (queue.clone(), topic.clone());
            tokio::spawn(async move {
                for call in (0..pages).collect::<Vec<_>>().chunks(100) {
                    let messages: Vec<_> = call
                        .iter()
                        .map(|p| QueueMessage {
                            topic: topic.clone(),
                            tag: "rider".into(),
                            key: format!("bench/{p}"),
                            body: page_body(*p),
                        })
                        .collect();
                    queue.publish(&messages).await.expect("publish");
                }
            })
        };
        let mut latencies = Vec::with_capacity(pages);
        while latencies.len() < pages {
            let got = queue.pull(&sub, IN_HAND, Duration::from_millis(500)).await.expect("pull");
            let now = now_micros();
            latencies.extend(got.iter().map(|d| now - sent_at(&d.message.body)));
            let receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();
            queue.ack(&sub, &receipts).await.expect("ack");
        }
        publisher.await.expect("publisher");
        let rate = pages as f64 / started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "run {run}: {pages} pages in {:.2?}: {rate:.0} pages/s; publish → delivery p50 {p50:.2?} p99 {p99:.2?}",
            started.elapsed()
        );
        results.push((rate, p50, p99));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[1]
    };
    println!(
        "median: {:.0} pages/s, p50 {:.1} ms, p99 {:.1} ms",
        median(results.iter().map(|r| r.0).collect()),
        median(results.iter().map(|r| r.1.as_secs_f64() * 1e3).collect()),
        median(results.iter().map(|r| r.2.as_secs_f64() * 1e3).collect()),
    );
    queue.shutdown().await;
}
