//! `herald bench fanout`: the nationwide push. N riders over C cities of Zipf-distributed sizes (a
//! few big cities, a long tail; fixed seed) are imported through the real CSV import; every role
//! starts in-process; a load process polls inboxes, first idle, then while one `{"all": true}`
//! notification, created through the HTTP API, fans out until `sent == matched`. In the same run,
//! the raw limit: as many inbox rows written by the most direct path the embedded store has. With
//! `consumers`, the roles run as processes of their own (`processes.rs`), each one's memory and CPU
//! read over the send; every run reads the machine's CPU by process over the send.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use herald_app::{Herald, SystemClock};
use herald_domain::{NotificationId, Status};
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::json;

use super::polls::{PollLoad, PollPhase};
use super::processes::{CpuSnapshot, CpuUse, Deployment, ProcessesReport, RoleSampler};
use super::{post_json, rider_name};
use crate::auth::{AdminRole, Claims, TokenSigner};
use crate::config::{SQL_URL, ServerUrls};
use crate::startup::{self, Roles, Settings, start_with};

/// Zipf exponent of the city sizes: the k-th city holds ∝ 1/k of the riders.
const ZIPF_EXPONENT: f64 = 1.0;
const SEED: u64 = 0x4845_5241_4c44;
/// How long the load polls before the notification is created: the idle baseline.
const IDLE: Duration = Duration::from_secs(2);
/// How often the benchmark reads the send's progress for the series and the per-city times.
const SAMPLE: Duration = Duration::from_millis(100);
const SECRET: &str = "herald-bench-secret-0123456789abcdef";

/// Where the ports of the run are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every port on its embedded adapter in the run's data dir.
    Embedded,
    /// Every port on its server adapter, on places of the run's own on the servers the settings
    /// name (a build with `--features distributed`).
    Distributed,
}

/// Another design, measured in the same run beside Herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Peer {
    /// The design the seed systems abandoned: one InnoDB row per receiver, 500-row multi-row
    /// `INSERT`s into the MariaDB/MySQL `HERALD_SQL_URL` names.
    #[value(name = "naive-mysql")]
    #[serde(rename = "naive-mysql")]
    NaiveMysql,
}

/// What the benchmark's broadcast carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// A title and a body, the same for everyone.
    Plain,
    /// A campaign every read personalises: a variant for the riders in group `vip` (every 10th),
    /// an English translation for those whose locale is `en` (every 3rd), an image, a button and a
    /// placeholder; each read looks its reader up once.
    Personal,
}

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub receivers: u64,
    pub cities: u32,
    /// Keep-alive connections of the poll load; 0 runs without it.
    pub poll_connections: usize,
    pub mode: Mode,
    pub peer: Option<Peer>,
    /// Run the roles as processes: one api, one scheduler and this many consumers (distributed
    /// mode only); `None` runs every role inside the benchmark's process.
    pub consumers: Option<usize>,
    pub content: Content,
}

/// A peer's writes of the same number of inbox rows.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRun {
    pub peer: Peer,
    pub seconds: f64,
}

/// One city's share of the send and when it was done, from the `POST`.
#[derive(Debug, Clone, Serialize)]
pub struct CityDone {
    pub city: String,
    pub receivers: u64,
    pub seconds: f64,
}

/// The send's progress at one moment, from the `POST`.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub t: f64,
    pub sent: u64,
    pub cities_done: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub mode: Mode,
    /// What the broadcast carried.
    pub content: Content,
    pub receivers: u64,
    pub cities: u32,
    pub load_seconds: f64,
    /// `POST /admin/v1/notifications` → the answer.
    pub post_ms: f64,
    /// `POST` → `sent`, with `sent == matched == receivers` checked.
    pub send_seconds: f64,
    /// The same number of inbox writes by the most direct path of the store in use: grouped
    /// commits of the embedded store, or a raw pipelined Redis client (`ZADD`, no Lua); not
    /// measured on a Redis Cluster.
    pub raw_seconds: Option<f64>,
    /// Where the inbox store was: `embedded`, `redis` (one server) or `redis-cluster`.
    pub inbox: String,
    /// In distributed mode, Redis `used_memory` after the send less before it, per receiver: a
    /// receiver's first inbox entry, its inbox's own keys, and the send's share of the counters.
    pub redis_bytes_per_receiver: Option<f64>,
    /// In distributed mode, the same for a second broadcast to the same riders, sent after the
    /// measured one (untimed): what one more entry in an inbox costs.
    pub redis_bytes_per_entry: Option<f64>,
    pub peer: Option<PeerRun>,
    pub cities_done: Vec<CityDone>,
    pub progress: Vec<Progress>,
    pub polls_idle: Option<PollPhase>,
    pub polls_during: Option<PollPhase>,
    /// Peak resident memory of the benchmark's process (with every role, unless they ran as
    /// processes), in MiB.
    pub peak_rss_mib: f64,
    /// The roles as processes (`consumers`): each one's memory and CPU over the send.
    pub processes: Option<ProcessesReport>,
    /// The machine's CPU from the `POST` to `sent`, by process.
    pub cpu: CpuUse,
    /// `/proc/loadavg` when the notification was created: how loaded the machine already was.
    pub load_average: String,
}

impl FanoutReport {
    pub fn deliveries_per_second(&self) -> f64 {
        self.receivers as f64 / self.send_seconds
    }

    /// Herald end to end ÷ the raw limit.
    pub fn times_raw(&self) -> Option<f64> {
        self.raw_seconds.map(|raw| self.send_seconds / raw)
    }

    /// Consumer processes, or `None` when every role ran in the benchmark's process.
    pub fn consumers(&self) -> Option<usize> {
        self.processes.as_ref().map(|p| p.consumers)
    }

    /// Herald end to end ÷ the peer's writes (below 1: Herald is faster).
    pub fn times_peer(&self) -> Option<f64> {
        self.peer.as_ref().map(|p| self.send_seconds / p.seconds)
    }
}

impl PeerRun {
    pub fn rows_per_second(&self, rows: u64) -> f64 {
        rows as f64 / self.seconds
    }
}

/// City index of each of `receivers` riders, drawn from a Zipf law over `cities` with a fixed seed.
fn zipf_cities(receivers: u64, cities: u32) -> Vec<u32> {
    let weights: Vec<f64> = (1..=cities).map(|k| 1.0 / f64::from(k).powf(ZIPF_EXPONENT)).collect();
    let total: f64 = weights.iter().sum();
    let cumulative: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total;
            Some(*acc)
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    (0..receivers)
        .map(|_| {
            let u: f64 = rng.random();
            cumulative.partition_point(|&c| c < u).min(cities as usize - 1) as u32
        })
        .collect()
}

fn city_name(index: u32) -> String {
    format!("city{index:03}")
}

/// Writes the riders as the CSV `herald receivers import` reads; returns each city's size. For a
/// personal broadcast every 10th rider is in group `vip` and every 3rd reads `en`.
fn write_csv(path: &Path, cities_of: &[u32], content: Content) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut sizes = BTreeMap::new();
    match content {
        Content::Plain => writeln!(out, "kind,id,city,groups")?,
        Content::Personal => writeln!(out, "kind,id,city,groups,attributes,locale")?,
    }
    for (i, &c) in cities_of.iter().enumerate() {
        let (id, city) = (rider_name(i as u64), city_name(c));
        match content {
            Content::Plain => writeln!(out, "rider,{id},{city},")?,
            Content::Personal => {
                let group = if i % 10 == 0 { "vip" } else { "" };
                let locale = if i % 3 == 0 { "en" } else { "" };
                writeln!(out, "rider,{id},{city},{group},,{locale}")?
            }
        }
        *sizes.entry(city).or_insert(0) += 1;
    }
    out.flush()?;
    Ok(sizes)
}

/// Peak resident set of this process (`VmHWM`), in MiB; 0 where `/proc` does not say.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().split(' ').next()?.parse().ok());
    kib.map_or(0.0, |k: f64| k / 1024.0)
}

/// One run in `data_dir`; in distributed mode on fresh places on the servers `servers` names,
/// removed afterwards (also when the run fails).
pub async fn fanout(data_dir: &Path, servers: &ServerUrls, options: &FanoutOptions) -> anyhow::Result<FanoutReport> {
    ensure!(options.cities > 0 && options.receivers > 0, "need at least one receiver and one city");
    ensure!(
        options.consumers.is_none() || options.mode == Mode::Distributed,
        "--consumers runs the roles as processes on the servers: it needs --mode distributed"
    );
    ensure!(options.consumers != Some(0), "--consumers: at least one consumer process");
    let mut settings = Settings::embedded(data_dir, "127.0.0.1:0");
    settings.secrets.current = Some(SECRET.to_string());
    match options.mode {
        Mode::Embedded => {
            let peer = Store::peer(options.peer, servers.sql.as_ref().map(|(url, _)| url.clone()))?;
            run(&settings, options, Store::Embedded, peer).await
        }
        Mode::Distributed => distributed(settings, servers, options).await,
    }
}

/// The store of the run's inbox, for its raw limit and memory.
enum Store {
    Embedded,
    #[cfg(feature = "distributed")]
    Redis {
        url: String,
        prefix: String,
    },
}

impl Store {
    /// Where the peer writes: the database of `sql_url`, which the peer needs.
    fn peer(peer: Option<Peer>, sql_url: Option<String>) -> anyhow::Result<Option<(Peer, String)>> {
        match peer {
            None => Ok(None),
            Some(peer) => {
                let url = sql_url.with_context(|| format!("--peer naive-mysql writes into {}: set it", SQL_URL.env))?;
                Ok(Some((peer, url)))
            }
        }
    }

    /// The raw limit; none on a Redis Cluster (the raw writer is one pipelined connection to one
    /// server).
    async fn raw_seconds(&self, data_dir: &Path, entries: u64) -> anyhow::Result<Option<f64>> {
        match self {
            Store::Embedded => {
                Ok(Some(crate::adapters::raw_inbox_write_seconds(&data_dir.join("raw.db"), entries).await?))
            }
            #[cfg(feature = "distributed")]
            Store::Redis { url, prefix } => match self.name() {
                "redis-cluster" => Ok(None),
                _ => Ok(Some(herald_redis::raw_write_seconds(url, prefix, entries).await?)),
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Store::Embedded => "embedded",
            #[cfg(feature = "distributed")]
            Store::Redis { url, .. } => match herald_redis::RedisServer::parse(url) {
                Ok(herald_redis::RedisServer::Cluster(_)) => "redis-cluster",
                _ => "redis",
            },
        }
    }

    async fn used_memory(&self) -> anyhow::Result<Option<u64>> {
        match self {
            Store::Embedded => Ok(None),
            #[cfg(feature = "distributed")]
            Store::Redis { url, .. } => Ok(Some(herald_redis::used_memory(url).await?)),
        }
    }
}

#[cfg(feature = "distributed")]
async fn distributed(
    mut settings: Settings,
    servers: &ServerUrls,
    options: &FanoutOptions,
) -> anyhow::Result<FanoutReport> {
    let places = super::places::Places::fresh(servers).await?;
    settings.servers = places.servers();
    let store = Store::Redis { url: places.redis_url().to_string(), prefix: places.redis_prefix() };
    let peer = options.peer.map(|peer| (peer, places.sql_url()));
    let report = run(&settings, options, store, peer).await;
    let removed = places.remove().await.context("removing the run's places on the servers");
    let report = report?;
    removed?;
    Ok(report)
}

#[cfg(not(feature = "distributed"))]
async fn distributed(_: Settings, _: &ServerUrls, _: &FanoutOptions) -> anyhow::Result<FanoutReport> {
    anyhow::bail!("--mode distributed needs a build with `--features distributed`")
}

#[cfg(feature = "mariadb")]
async fn peer_seconds(peer: Peer, url: &str, rows: u64) -> anyhow::Result<f64> {
    match peer {
        Peer::NaiveMysql => herald_mariadb::naive_inbox_write_seconds(url, rows)
            .await
            .with_context(|| format!("--peer naive-mysql on the server {} names", SQL_URL.env)),
    }
}

#[cfg(not(feature = "mariadb"))]
async fn peer_seconds(_: Peer, _: &str, _: u64) -> anyhow::Result<f64> {
    anyhow::bail!("--peer naive-mysql needs a build with `--features mariadb`")
}

async fn run(
    settings: &Settings,
    options: &FanoutOptions,
    store: Store,
    peer: Option<(Peer, String)>,
) -> anyhow::Result<FanoutReport> {
    let FanoutOptions { receivers, cities, poll_connections, mode, consumers, content, .. } = *options;
    let data_dir = settings.data_dir.as_path();
    let ports = startup::open_ports(settings).await?;
    let csv = data_dir.join("riders.csv");
    let sizes = write_csv(&csv, &zipf_cities(receivers, cities), content)?;
    let importer = Herald::new(ports.clone(), Arc::new(SystemClock), Arc::new(tokio::sync::Notify::new()));
    let started = Instant::now();
    let imported = crate::import::import_csv(&csv, &importer, |_| {}).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    ensure!(imported.imported == receivers, "imported {} of {receivers} riders", imported.imported);

    let running = match consumers {
        None => Running::InProcess(start_with(settings, Roles::ALL, ports.clone()).await?),
        Some(n) => Running::Processes(Deployment::start(data_dir, &settings.servers, SECRET, n).await?),
    };
    let api = running.api()?;
    let mut load = match poll_connections {
        0 => None,
        n => Some(PollLoad::start(api, SECRET, receivers, n).await?),
    };
    tokio::time::sleep(IDLE).await;
    if let Some(load) = load.as_mut() {
        load.next_phase().await?;
    }

    let admin = TokenSigner::new(SECRET).sign(&Claims::Admin { role: AdminRole::Operator });
    let mut body = json!({"title": "系统通知 benchmark", "body": "fan-out benchmark", "category": "system",
        "receiver_kind": "rider", "audience": {"all": true}});
    if content == Content::Personal {
        body = json!({"title": "{{receiver.id}}，周末活动", "body": "全场九折", "category": "system",
            "receiver_kind": "rider", "audience": {"all": true},
            "image": "https://cdn.example.com/weekend.png",
            "actions": [{"kind": "deep_link", "target": "herald://promo/weekend", "label": "去看看"}],
            "locales": {"en": {"title": "Weekend sale, {{receiver.id}}", "body": "10% off"}},
            "variants": [{"groups": ["vip"], "title": "VIP 周末专享", "body": "全场八折",
                "locales": {"en": {"title": "VIP weekend", "body": "20% off"}}}]});
    }
    let memory_before = store.used_memory().await?;
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    let mut sampler = running.pids().map(RoleSampler::new);
    let cpu_before = CpuSnapshot::take();
    let started = Instant::now();
    let (status, reply) = post_json(api, "/admin/v1/notifications", &admin, &body).await?;
    let post_ms = started.elapsed().as_secs_f64() * 1000.0;
    ensure!(status == 201, "creating answered {status}: {reply}");
    let id = NotificationId::parse("id", reply["id"].as_str().context("no id in the reply")?)?;

    let (mut progress, mut done_at) = (Vec::new(), BTreeMap::new());
    let send_seconds = loop {
        let now = started.elapsed().as_secs_f64();
        for city in ports.ledger.progress(&id).await?.iter().filter(|c| c.done) {
            done_at.entry(city.city.as_str().to_string()).or_insert(now);
        }
        let sent = ports.inbox.counters(&id).await?.sent;
        progress.push(Progress { t: now, sent, cities_done: done_at.len() });
        if let Some(sampler) = sampler.as_mut() {
            sampler.sample();
        }
        let n = ports.notifications.notification(&id).await?.context("the notification vanished")?;
        if n.status == Status::Sent {
            break started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(SAMPLE).await;
    };
    let cpu_after = CpuSnapshot::take();
    let cpu = cpu_before.until(&cpu_after);
    let processes = sampler.map(|s| s.finish(consumers.unwrap_or(0), &cpu_before, &cpu_after));
    let phases = match load {
        Some(load) => load.finish().await?,
        None => Vec::new(),
    };
    let memory_after = store.used_memory().await?;
    exactly_sent(&ports, &id, receivers).await?;
    let memory_after_second = match memory_after {
        Some(_) => {
            let (status, reply) = post_json(api, "/admin/v1/notifications", &admin, &body).await?;
            ensure!(status == 201, "creating the second answered {status}: {reply}");
            let second = NotificationId::parse("id", reply["id"].as_str().context("no id in the reply")?)?;
            while ports.notifications.notification(&second).await?.context("the notification vanished")?.status
                != Status::Sent
            {
                tokio::time::sleep(SAMPLE).await;
            }
            exactly_sent(&ports, &second, receivers).await?;
            store.used_memory().await?
        }
        None => None,
    };
    running.stop().await?;
    let cities_done = sizes
        .iter()
        .map(|(city, &n)| CityDone {
            city: city.clone(),
            receivers: n,
            seconds: done_at.get(city).copied().unwrap_or(send_seconds),
        })
        .collect();
    let raw_seconds = store.raw_seconds(data_dir, receivers).await?;
    let grown = |before: Option<u64>, after: Option<u64>| {
        before.zip(after).map(|(before, after)| (after as f64 - before as f64) / receivers as f64)
    };
    let redis_bytes_per_receiver = grown(memory_before, memory_after);
    let redis_bytes_per_entry = grown(memory_after, memory_after_second);
    let peer = match peer {
        Some((peer, url)) => Some(PeerRun { peer, seconds: peer_seconds(peer, &url, receivers).await? }),
        None => None,
    };
    let mut phases = phases.into_iter();
    Ok(FanoutReport {
        mode,
        content,
        receivers,
        cities,
        load_seconds,
        post_ms,
        send_seconds,
        raw_seconds,
        redis_bytes_per_receiver,
        redis_bytes_per_entry,
        peer,
        cities_done,
        progress,
        polls_idle: phases.next(),
        polls_during: phases.next(),
        peak_rss_mib: peak_rss_mib(),
        processes,
        cpu,
        load_average,
        inbox: store.name().to_string(),
    })
}

/// Where the roles of a run are.
enum Running {
    InProcess(startup::Running),
    Processes(Deployment),
}

impl Running {
    fn api(&self) -> anyhow::Result<std::net::SocketAddr> {
        match self {
            Running::InProcess(running) => running.addr.context("the API role listens"),
            Running::Processes(deployment) => Ok(deployment.api),
        }
    }

    /// The roles' processes, when they are processes of their own.
    fn pids(&self) -> Option<Vec<(String, u32)>> {
        match self {
            Running::InProcess(_) => None,
            Running::Processes(deployment) => Some(deployment.pids()),
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Running::InProcess(running) => running.stop().await,
            // Dropping kills and reaps each process; the send is over.
            Running::Processes(deployment) => {
                drop(deployment);
                Ok(())
            }
        }
    }
}

/// Checks the send reached every receiver exactly: `sent == matched == receivers`.
async fn exactly_sent(ports: &startup::Ports, id: &NotificationId, receivers: u64) -> anyhow::Result<()> {
    let sent = ports.inbox.counters(id).await?.sent;
    let matched: u64 = ports.ledger.progress(id).await?.iter().map(|c| c.matched).sum();
    ensure!(sent == receivers && matched == receivers, "sent {sent}, matched {matched}, expected {receivers}");
    Ok(())
}
