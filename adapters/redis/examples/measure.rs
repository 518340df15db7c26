//! Measures the Redis inbox store on a server or cluster: Redis bytes per receiver and per inbox
//! entry, pages of 500 delivered per second, and inbox polls (a page of 20 + the unread count) per
//! second. Everything is written under a fresh key prefix, deleted at the end.
//!
//! `cargo run --release -p herald-redis --example measure -- <HERALD_REDIS_URL> [receivers] [notifications]`
//! (defaults: 100000 receivers, 3 notifications).

use std::time::Instant;

use futures_util::future::try_join_all;
use herald_domain::ports::InboxStore;
use herald_domain::{
    Category, City, EntryMeta, InboxCap, NotificationId, Page, PageKey, ReceiverId, ReceiverKind, ReceiverRef,
};
use herald_redis::{RedisConfig, RedisInbox, RedisServer};

const PAGE: usize = 500;
/// Pages delivered at once, as the consumers' bulk lane does (`HERALD_CONSUMER_CONCURRENCY`).
const PAGES_AT_ONCE: usize = 4;
/// Apps polling at once.
const POLLERS: usize = 32;
const POLLS_PER_POLLER: usize = 500;

fn nodes(url: &str) -> Vec<String> {
    match RedisServer::parse(url).expect("a Redis URL") {
        RedisServer::Single(url) => vec![url],
        RedisServer::Cluster(nodes) => nodes,
    }
}

/// `used_memory` summed over every node.
fn used_memory(url: &str) -> anyhow::Result<i64> {
    let mut total = 0;
    for node in nodes(url) {
        let info: String = redis::cmd("INFO").arg("memory").query(&mut redis::Client::open(node)?.get_connection()?)?;
        let line = info.lines().find_map(|l| l.strip_prefix("used_memory:")).expect("used_memory in INFO");
        total += line.trim().parse::<i64>()?;
    }
    Ok(total)
}

/// `MEMORY USAGE` of each key, summed (the cluster routes each by its slot).
fn memory_usage(url: &str, keys: &[String]) -> anyhow::Result<i64> {
    fn sum(conn: &mut impl redis::ConnectionLike, keys: &[String]) -> anyhow::Result<i64> {
        let mut total = 0;
        for key in keys {
            let used: Option<i64> = redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query(conn)?;
            total += used.unwrap_or(0);
        }
        Ok(total)
    }
    match RedisServer::parse(url)? {
        RedisServer::Single(u) => sum(&mut redis::Client::open(u)?.get_connection()?, keys),
        RedisServer::Cluster(n) => sum(&mut redis::cluster::ClusterClient::new(n)?.get_connection()?, keys),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    let receivers: usize = args.get(2).map_or(Ok(100_000), |a| a.parse())?;
    let notifications: usize = args.get(3).map_or(Ok(3), |a| a.parse())?;
    // As short as a deployment's `herald`: key names count in the bytes measured.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("hm{}", &run[26..]);
    let inbox = RedisInbox::open(&RedisConfig::new(&url, &prefix, InboxCap::default())?).await?;
    let ids: Vec<ReceiverId> =
        (0..receivers).map(|i| ReceiverId::parse("id", &format!("r{i:07}")).expect("an id")).collect();
    let city = City::parse("city", "sh")?;

    let result = async {
        let before = used_memory(&url)?;
        let mut after_each = Vec::new();
        let mut rates = Vec::new();
        let mut sent = Vec::new();
        for k in 0..notifications {
            let n = NotificationId::generate();
            let meta = EntryMeta {
                category: Category::System,
                pinned: false,
                force_read: false,
                sent_at_ms: chrono::Utc::now().timestamp_millis(),
                valid_from_ms: None,
                valid_until_ms: None,
            };
            let pages: Vec<Page> = ids
                .chunks(PAGE)
                .enumerate()
                .map(|(no, chunk)| Page {
                    key: PageKey { notification_id: n.clone(), city: city.clone(), page_no: no as u32 },
                    receiver_kind: ReceiverKind::Rider,
                    receivers: chunk.to_vec(),
                })
                .collect();
            let started = Instant::now();
            for group in pages.chunks(PAGES_AT_ONCE) {
                try_join_all(group.iter().map(|p| inbox.deliver(p, &meta))).await?;
            }
            let secs = started.elapsed().as_secs_f64();
            rates.push(pages.len() as f64 / secs);
            after_each.push(used_memory(&url)?);
            println!(
                "notification {k}: {} pages in {secs:.2} s ({:.0} pages/s)",
                pages.len(),
                pages.len() as f64 / secs
            );
            sent.push(n);
        }
        let first = (after_each[0] - before) as f64 / receivers as f64;
        let later = if notifications > 1 {
            (after_each[notifications - 1] - after_each[0]) as f64 / ((notifications - 1) * receivers) as f64
        } else {
            f64::NAN
        };
        let total = (after_each[notifications - 1] - before) as f64;
        println!("used_memory: first notification {first:.1} B per receiver, each later one {later:.1} B per receiver");
        println!(
            "used_memory: {:.1} B per inbox entry in all ({total:.0} B)",
            total / (receivers * notifications) as f64
        );
        // One receiver's keys and one notification's holders, as MEMORY USAGE sees them.
        let sample: Vec<String> = ["l", "v"].iter().map(|k| format!("{prefix}:{{r:rider:{}}}:{k}", ids[0])).collect();
        println!(
            "MEMORY USAGE: one receiver's two sorted sets with {notifications} entries: {} B",
            memory_usage(&url, &sample)?
        );
        let holders: Vec<String> = (0..4096).map(|b| format!("{prefix}:{{n:{}}}:h:{b}", sent[0])).collect();
        let held = memory_usage(&url, &holders)?;
        println!(
            "MEMORY USAGE: one notification's holders: {held} B, {:.1} B per receiver",
            held as f64 / receivers as f64
        );

        let mut poll_rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            try_join_all((0..POLLERS).map(|p| {
                let (inbox, ids) = (&inbox, &ids);
                async move {
                    for i in 0..POLLS_PER_POLLER {
                        let me = ReceiverRef {
                            kind: ReceiverKind::Rider,
                            id: ids[(p * 7919 + i * 104_729) % ids.len()].clone(),
                        };
                        let now = chrono::Utc::now();
                        inbox.page(&me, now, None, 20, None).await?;
                        inbox.unread_count(&me, now).await?;
                    }
                    anyhow::Ok(())
                }
            }))
            .await?;
            poll_rates.push((POLLERS * POLLS_PER_POLLER) as f64 / started.elapsed().as_secs_f64());
        }
        println!("deliveries: median {:.0} pages of {PAGE}/s ({PAGES_AT_ONCE} at once)", median(rates));
        println!(
            "polls (page of 20 + unread count): median {:.0}/s over 3 runs, {POLLERS} at once",
            median(poll_rates)
        );
        anyhow::Ok(())
    }
    .await;
    herald_redis::erase_prefix(&url, &prefix)?;
    result
}
