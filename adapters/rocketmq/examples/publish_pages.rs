//! Publish throughput of pages of 500 receivers, by hand (not a test):
//! `HERALD_TEST_MQ_NAMESRV=127.0.0.1:9876 cargo run -p herald-rocketmq --example publish_pages [PAGES]`
//! Publishes PAGES pages (default 2000) in calls of 100, three times; prints each run and the median.
#![recursion_limit = "512"]

use std::time::Instant;

use herald_domain::ports::{Queue, QueueMessage};
use herald_rocketmq::{RocketMqQueue, RocketMqSettings};

/// A page body about the size the scheduler writes: 500 receiver ids of ~12 bytes.
fn page_body(page: usize) -> Vec<u8> {
    (0..500).map(|i| format!("rider-{:06}", page * 500 + i)).collect::<Vec<_>>().join(",").into_bytes()
}

#[tokio::main]
async fn main() {
    let namesrv = std::env::var("HERALD_TEST_MQ_NAMESRV").expect("HERALD_TEST_MQ_NAMESRV=host:port");
    let pages: usize = std::env::args().nth(1).map_or(2000, |n| n.parse().expect("PAGES is a number"));
    let queue = RocketMqQueue::connect(RocketMqSettings::new(namesrv)).await.expect("broker reachable");
    let topic = format!("herald_bench_{}", std::process::id());
    let mut rates = Vec::new();
    for run in 1..=3 {
        let messages: Vec<_> = (0..pages)
            .map(|p| QueueMessage {
                topic: topic.clone(),
                tag: "rider".into(),
                key: format!("bench/{run}/{p}"),
                body: page_body(p),
            })
            .collect();
        let started = Instant::now();
        for call in messages.chunks(100) {
            queue.publish(call).await.expect("publish");
        }
        let rate = pages as f64 / started.elapsed().as_secs_f64();
        println!(
            "run {run}: {pages} pages in {:.2?}: {rate:.0} messages/s, {:.0} receivers/s",
            started.elapsed(),
            rate * 500.0
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} messages/s, {:.0} receivers/s", rates[1], rates[1] * 500.0);
    queue.shutdown().await;
}
