//! Benchmarks, measured in-process: `herald bench fanout` (a broadcast to N receivers in C cities,
//! `POST` → status `sent`, with apps polling meanwhile, on the embedded parts or on the servers:
//! `fanout.rs`, `places.rs`; with `--consumers`, the roles as processes: `processes.rs`) and
//! `herald bench direct` (a message to one rider, `POST` → visible in the inbox, alone and while a
//! broadcast fans out), and `herald bench search` (the console's search over N notifications through
//! the `SearchIndex` port: `search.rs`).

mod fanout;
#[cfg(feature = "distributed")]
mod places;
pub mod polls;
mod processes;
mod report;
pub mod search;

pub use fanout::{Content, FanoutOptions, FanoutReport, Mode, Peer, fanout};
pub use report::write as write_report;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use herald_domain::{City, NotificationId, Receiver, ReceiverId, ReceiverKind, ReceiverRef};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::auth::{AdminRole, Claims, TokenSigner};
use crate::startup::{self, Ports, Roles, Settings, start_with};

/// Writes riders `r000000000…` spread round-robin over `cities` cities; returns the seconds it took.
async fn load_riders(ports: &Ports, receivers: u64, cities: u32) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..receivers {
        batch.push(Receiver::new(
            ReceiverKind::Rider,
            rider(i)?,
            City::parse("city", &format!("city{:03}", i % cities as u64))?,
            Vec::new(),
        )?);
        if batch.len() == batch.capacity() || i + 1 == receivers {
            ports.receivers.upsert_receivers(&batch).await?;
            batch.clear();
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The benchmark's rider ids: `r000000000`, `r000000001`, …
fn rider_name(i: u64) -> String {
    format!("r{i:09}")
}

fn rider(i: u64) -> anyhow::Result<ReceiverId> {
    Ok(ReceiverId::parse("id", &rider_name(i))?)
}

/// Latencies of one series of direct messages, in milliseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub millis: Vec<f64>,
}

impl Latencies {
    /// The `q` quantile (0..=1) by nearest rank; 0 when there is none.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.millis.is_empty() {
            return 0.0;
        }
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

#[derive(Debug, Clone)]
pub struct DirectReport {
    pub receivers: u64,
    pub alone: Latencies,
    pub during_fanout: Latencies,
    /// How far the broadcast had got (sent of receivers) when the first and the last direct message
    /// of the second series were created: below `receivers`, they all came while it was fanning out.
    pub fanout_sent: (u64, u64),
}

/// Direct messages of the second series come one every so often, each on its own, as independent
/// console users would send them.
const DIRECT_GAP: Duration = Duration::from_millis(20);

/// Loads `receivers` riders into a fresh data dir and starts every role. Sends `messages` direct
/// messages one after another, each to one rider, by `POST` as the console does, timing each until
/// it is in that rider's inbox; then starts a broadcast to all riders and, while it fans out, sends
/// `messages` more, one every `DIRECT_GAP` without waiting for the previous one.
pub async fn direct(data_dir: &Path, receivers: u64, messages: usize) -> anyhow::Result<DirectReport> {
    ensure!(receivers > 0 && messages > 0, "need at least one receiver and one message");
    let ports = startup::embedded_ports(data_dir).await?;
    load_riders(&ports, receivers, 100).await?;
    let mut settings = Settings::embedded(data_dir, "127.0.0.1:0");
    let secret = "herald-bench-secret-0123456789abcdef";
    settings.secrets.current = Some(secret.to_string());
    let running = start_with(&settings, Roles::ALL, ports.clone()).await?;
    let api = running.addr.context("the API role listens")?;
    let admin = TokenSigner::new(secret).sign(&Claims::Admin { role: AdminRole::Operator });
    let stride = (receivers / messages as u64).max(1);
    let rider_for = |m: usize, offset: u64| rider((m as u64 * stride + offset) % receivers);

    let mut alone = Vec::with_capacity(messages);
    for m in 0..messages {
        alone.push(direct_latency(&ports, api, &admin, rider_for(m, 0)?).await?);
    }

    let everyone = create(api, &admin, "benchmark broadcast", json!({"all": true})).await?;
    let sent = async || anyhow::Ok(ports.inbox.counters(&everyone).await?.sent);
    while sent().await? == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = sent().await?;
    let mut in_flight = tokio::task::JoinSet::new();
    for m in 0..messages {
        let (ports, admin, id) = (ports.clone(), admin.clone(), rider_for(m, stride / 2)?);
        in_flight.spawn(async move { direct_latency(&ports, api, &admin, id).await });
        tokio::time::sleep(DIRECT_GAP).await;
    }
    let last = sent().await?;
    let mut during = Vec::with_capacity(messages);
    while let Some(latency) = in_flight.join_next().await {
        during.push(latency??);
    }
    running.stop().await?;
    Ok(DirectReport {
        receivers,
        alone: Latencies { millis: alone },
        during_fanout: Latencies { millis: during },
        fanout_sent: (first, last),
    })
}

/// Milliseconds from sending the `POST` of a message for `rider` to the message being in its inbox.
async fn direct_latency(ports: &Ports, api: SocketAddr, admin: &str, rider: ReceiverId) -> anyhow::Result<f64> {
    let started = Instant::now();
    let id = create(api, admin, "benchmark direct", json!({"include": [rider.as_str()]})).await?;
    let inbox = ReceiverRef { kind: ReceiverKind::Rider, id: rider };
    let deadline = started + Duration::from_secs(120);
    while ports.inbox.entries_of(&inbox, std::slice::from_ref(&id)).await?.is_empty() {
        ensure!(Instant::now() < deadline, "{id} never reached {}", inbox.key());
        // Looks often early and less so later: a resolution of a tenth of the wait, up to 50 ms.
        tokio::time::sleep((started.elapsed() / 10).clamp(Duration::from_millis(1), Duration::from_millis(50))).await;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Creates a notification to riders through the HTTP API.
async fn create(api: SocketAddr, admin: &str, title: &str, audience: Value) -> anyhow::Result<NotificationId> {
    let body =
        json!({"title": title, "body": title, "category": "system", "receiver_kind": "rider", "audience": audience});
    let (status, reply) = post_json(api, "/admin/v1/notifications", admin, &body).await?;
    ensure!(status == 201, "creating answered {status}: {reply}");
    Ok(NotificationId::parse("id", reply["id"].as_str().context("no id in the reply")?)?)
}

/// One `POST` of a JSON body over plain HTTP/1.1 (a connection per request, as a console's would
/// be at worst); returns the status and the JSON reply.
async fn post_json(api: SocketAddr, path: &str, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let body = body.to_string();
    let mut stream = tokio::net::TcpStream::connect(api).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let reply = String::from_utf8(reply)?;
    let (head, json) = reply.split_once("\r\n\r\n").context("no end of the HTTP head")?;
    let status = head.split(' ').nth(1).context("no HTTP status")?.parse()?;
    Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
}
