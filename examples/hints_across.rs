//! Measures inbox hints across processes on Redis pub/sub: delivery → hint, from the moment a
//! consumer hints a delivered page (`InboxHints::changed` with its 500 receivers, as
//! `Deliverer::deliver` does) until the app of one of those receivers, streaming
//! `/app/v1/inbox/events` from another Herald, reads the `hint` event; and, as an upper bound,
//! `POST /admin/v1/notifications` → hint (scheduling, paging, the relay and the consumer included).
//!
//! Two Heralds share only the SQL truth (a SQLite file here) and Redis: one runs every role, the
//! other only the API, where the apps listen; the publisher is a third `RedisHints`, a consumer's.
//! They run in this one OS process (each with its own hub and Redis connections, so a hint can
//! only reach the second through Redis).
//!
//! `cargo run --release --features redis --example hints_across -- <redis url> [samples] [idle streams]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::auth::{AdminRole, Claims, TokenSigner};
use herald::config::Origin;
use herald::startup::{Roles, Settings, start};
use herald_app::InboxHub;
use herald_domain::ports::InboxHints as _;
use herald_domain::{InboxCap, ReceiverId, ReceiverKind};
use serde_json::json;
use tokio::sync::mpsc;

#[path = "support/sse.rs"]
mod sse;
use sse::{open_stream, percentile, post_to_hint_ms};

const SECRET: &str = "hints-across-bench-secret-0123456789";
const PAGE: usize = 500;

fn rider(id: &str) -> ReceiverId {
    ReceiverId::parse("id", id).expect("a valid id")
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what} over {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first() else {
        anyhow::bail!("usage: hints_across <redis url> [samples (200)] [idle streams (1000)]");
    };
    let samples: usize = args.get(1).map_or(Ok(200), |s| s.parse())?;
    let idle: usize = args.get(2).map_or(Ok(1_000), |s| s.parse())?;
    let data = tempfile::tempdir()?;
    let prefix = format!("herald-bench-hints:{}", std::process::id());
    let mut settings = Settings::embedded(data.path(), "127.0.0.1:0");
    settings.secrets.current = Some(SECRET.to_string());
    settings.servers.redis = Some((url.clone(), Origin::Flag("redis url")));
    settings.servers.redis_prefix = prefix.clone();
    settings.streams.max_age = Duration::from_secs(3_600);
    settings.streams.per_token = 2;
    settings.scheduler.tick = Duration::from_millis(50);
    let first = start(&settings, Roles::ALL).await?;
    let second = start(&settings, Roles { api: true, scheduler: false, consumer: false }).await?;
    let (first_addr, second_addr) = (first.addr.expect("api").to_string(), second.addr.expect("api").to_string());

    let signer = TokenSigner::new(SECRET);
    let app = |id: &str| signer.sign(&Claims::App { kind: ReceiverKind::Rider, id: rider(id) });
    let ids: Vec<String> = (0..samples).map(|i| format!("lat{i:05}")).collect();
    let mut arrivals = Vec::with_capacity(samples);
    for id in &ids {
        let (tx, rx) = mpsc::unbounded_channel();
        open_stream(&second_addr, &app(id), Some(tx)).await?;
        arrivals.push(rx);
    }
    for i in 0..idle {
        open_stream(&second_addr, &app(&format!("idle{i:07}")), None).await?;
    }
    println!("{} streams open on the API-only Herald ({samples} measured, {idle} idle)", samples + idle);

    // A consumer's publisher: a page of 500 receivers, one of them a measured app, hinted as
    // `Deliverer::deliver` does after the page is written.
    let config = herald_redis::RedisConfig::new(url, &prefix, InboxCap::default())?;
    let consumer = herald_redis::RedisHints::open(&config, Arc::new(InboxHub::new()), false).await?;
    let mut delivery = Vec::with_capacity(samples);
    for (n, (id, arrived)) in ids.iter().zip(&mut arrivals).enumerate() {
        let mut page: Vec<ReceiverId> = (0..PAGE - 1).map(|i| rider(&format!("p{n}x{i}"))).collect();
        page.insert(n % PAGE, rider(id));
        let hinted = Instant::now();
        consumer.changed(ReceiverKind::Rider, &page);
        let at = tokio::time::timeout(Duration::from_secs(10), arrived.recv()).await?.expect("stream open");
        delivery.push(at.duration_since(hinted).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report("delivery → hint across processes (a page of 500)", delivery);

    // POST → hint: a direct message created on the first Herald, delivered by its consumer,
    // hinted to the app streaming from the second.
    let http = reqwest::Client::new();
    let admin = signer.sign(&Claims::Admin { role: AdminRole::Operator });
    let base = format!("http://{first_addr}");
    let batch: Vec<_> = ids.iter().map(|id| json!({"kind": "rider", "id": id, "city": "bench"})).collect();
    http.post(format!("{base}/admin/v1/receivers/batch"))
        .bearer_auth(&admin)
        .json(&batch)
        .send()
        .await?
        .error_for_status()?;
    let mut posted = Vec::new();
    for (id, arrived) in ids.iter().zip(&mut arrivals).take(samples.min(50)) {
        posted.push(post_to_hint_ms(&http, &base, &admin, id, arrived).await?);
    }
    report("POST → hint across processes (a direct message)", posted);

    drop(consumer);
    second.stop().await?;
    first.stop().await?;
    herald_redis::erase_prefix(url, &prefix)?;
    Ok(())
}
