//! Measures the apps' live-update stream on a running Herald: how many idle
//! `GET /app/v1/inbox/events` connections one process holds (each its own rider's token), the
//! server's memory per connection, and, with them all open, how long a direct message takes from
//! `POST /admin/v1/notifications` to the hint on its receiver's stream (an upper bound of delivery
//! → hint: it includes scheduling, paging, the relay and the consumer). Run by
//! `scripts/measure-sse.sh`, which raises the open-file limit and starts the server.
//!
//! `cargo run --example sse_idle -- <server pid> <connections> <samples> <addr>...` with
//! `HERALD_SECRET` set; connections are spread over the addresses (several loopback addresses, so
//! the client's ports do not run out).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt as _;
use herald::auth::{AdminRole, Claims, TokenSigner};
use herald_domain::{ReceiverId, ReceiverKind};
use serde_json::json;
use tokio::sync::mpsc;

#[path = "support/sse.rs"]
mod sse;
use sse::{open_stream, percentile, post_to_hint_ms};

const OPENING_AT_ONCE: usize = 256;

fn app_token(signer: &TokenSigner, id: &str) -> String {
    signer.sign(&Claims::App { kind: ReceiverKind::Rider, id: ReceiverId::parse("id", id).unwrap() })
}

fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pid, connections, samples, addrs @ ..] = args.as_slice() else {
        anyhow::bail!("usage: sse_idle <server pid> <connections> <samples> <addr>...");
    };
    let (connections, samples): (usize, usize) = (connections.parse()?, samples.parse()?);
    let signer = TokenSigner::new(std::env::var("HERALD_SECRET")?.as_str());
    let base = format!("http://{}", addrs[0]);
    let admin = signer.sign(&Claims::Admin { role: AdminRole::Operator });
    let http = reqwest::Client::new();

    // The receivers the latency samples go to, each with a stream of its own.
    let latency_ids: Vec<String> = (0..samples.clamp(1, 10_000)).map(|i| format!("lat{i:05}")).collect();
    let batch: Vec<_> = latency_ids.iter().map(|id| json!({"kind": "rider", "id": id, "city": "bench"})).collect();
    http.post(format!("{base}/admin/v1/receivers/batch"))
        .bearer_auth(&admin)
        .json(&batch)
        .send()
        .await?
        .error_for_status()?;

    let rss_before = rss_mib(pid);
    let opened = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut attempts = futures::stream::iter(0..connections)
        .map(|i| {
            let (addr, token, opened) =
                (addrs[i % addrs.len()].clone(), app_token(&signer, &format!("idle{i:07}")), opened.clone());
            async move {
                let result = open_stream(&addr, &token, None).await;
                if result.is_ok() {
                    let n = opened.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 10_000 == 0 {
                        println!(
                            "{n} idle streams open after {:.1} s, server RSS {:.0} MiB",
                            started.elapsed().as_secs_f64(),
                            rss_mib(pid)
                        );
                    }
                }
                result
            }
        })
        .buffer_unordered(OPENING_AT_ONCE);
    let mut first_error = None;
    while let Some(result) = attempts.next().await {
        if let Err(e) = result
            && first_error.is_none()
        {
            first_error = Some(e.to_string());
        }
    }
    drop(attempts);
    let held = opened.load(Ordering::Relaxed);
    let rss_after = rss_mib(pid);
    println!(
        "held {held} of {connections} idle streams (opened in {:.1} s); server RSS {rss_before:.0} → {rss_after:.0} MiB, \
         {:.1} KiB per stream{}",
        started.elapsed().as_secs_f64(),
        (rss_after - rss_before) * 1024.0 / held.max(1) as f64,
        first_error.map(|e| format!("; stopped by: {e}")).unwrap_or_default()
    );

    // POST → hint, one direct message at a time, with every idle stream still open.
    let mut latencies = Vec::with_capacity(latency_ids.len());
    for id in &latency_ids {
        let (tx, mut rx) = mpsc::unbounded_channel();
        open_stream(&addrs[0], &app_token(&signer, id), Some(tx)).await?;
        latencies.push(post_to_hint_ms(&http, &base, &admin, id, &mut rx).await?);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "POST → hint over {} direct messages: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
