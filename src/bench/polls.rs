//! The poll load of `herald bench fanout`: simulated riders polling their inbox (the list and the
//! unread count, in turn) over keep-alive connections, as the apps do. It runs as a process of its own
//! (`herald bench polls`, started by the benchmark), so that measuring does not share Herald's
//! runtime. The benchmark writes the token secret as the first line of its stdin (never on its
//! command line, which others can read), then a line to start each new phase (idle, then during the
//! fan-out), and closes stdin to stop it; it then prints one JSON line: each phase's polls/s and
//! latency quantiles, and a series of windows for the chart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use herald_domain::{ReceiverId, ReceiverKind};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::auth::{Claims, TokenSigner};

/// Width of one window of the series.
const WINDOW: Duration = Duration::from_millis(250);
/// Distinct riders whose tokens the load rotates through.
const TOKENS: u64 = 4096;

/// One phase of the load: what it did and how fast it was answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollPhase {
    pub polls: u64,
    /// Answers other than 200.
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Polls answered and their p99, per `WINDOW` from the phase's start.
    pub windows: Vec<PollWindow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollWindow {
    pub t: f64,
    pub polls: u64,
    pub p99_ms: f64,
}

/// One answered poll: when it ended and how long it took.
struct Sample {
    done: Instant,
    micros: u32,
    ok: bool,
}

/// One keep-alive HTTP/1.1 connection that sends a GET and reads its answer whole.
struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    async fn open(api: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(api).await.with_context(|| format!("connecting to {api}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream), host: api.to_string() })
    }

    /// The status of `GET path`; the body is read and dropped.
    async fn get(&mut self, path: &str, token: &str) -> anyhow::Result<u16> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n", self.host);
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).context("no HTTP status line")?.parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            ensure!(self.stream.read_line(&mut line).await? > 0, "the server closed the connection");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// Runs the load against `api` with `connections` connections over riders `r000000000…` (the
/// benchmark's ids, `riders` of them), signing their tokens with the secret read from stdin, until
/// stdin closes.
pub async fn run(api: SocketAddr, riders: u64, connections: usize) -> anyhow::Result<()> {
    ensure!(riders > 0 && connections > 0, "need riders and connections");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let secret = stdin.next_line().await?.context("no secret on stdin")?;
    let signer = TokenSigner::new(secret.as_str());
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..TOKENS.min(riders))
            .map(|i| {
                let id = ReceiverId::parse("id", &super::rider_name(i * (riders / TOKENS.min(riders))))?;
                Ok(signer.sign(&Claims::App { kind: ReceiverKind::Rider, id }))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let mut conn = Connection::open(api).await?;
        let (tokens, stop) = (tokens.clone(), stop.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut k = c;
            while !stop.load(Ordering::Relaxed) {
                let path = if k % 2 == 0 { "/app/v1/inbox" } else { "/app/v1/inbox/unread-count" };
                let token = &tokens[k % tokens.len()];
                let started = Instant::now();
                let status = conn.get(path, token).await?;
                let done = Instant::now();
                samples.push(Sample { done, micros: (done - started).as_micros() as u32, ok: status == 200 });
                k += connections;
            }
            anyhow::Ok(samples)
        });
    }
    println!("ready");

    // Each line on stdin starts a phase; its end is the next line, or stdin closing.
    let mut marks = vec![Instant::now()];
    while stdin.next_line().await?.is_some() {
        marks.push(Instant::now());
    }
    marks.push(Instant::now());
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    while let Some(done) = tasks.join_next().await {
        samples.extend(done??);
    }
    let phases: Vec<PollPhase> = marks.windows(2).map(|w| phase(&samples, w[0], w[1])).collect();
    println!("{}", serde_json::to_string(&phases)?);
    Ok(())
}

fn phase(samples: &[Sample], from: Instant, to: Instant) -> PollPhase {
    let inside: Vec<&Sample> = samples.iter().filter(|s| s.done >= from && s.done < to).collect();
    let seconds = (to - from).as_secs_f64();
    let millis = |s: &[&Sample]| s.iter().map(|s| f64::from(s.micros) / 1000.0).collect::<Vec<_>>();
    let all = super::Latencies { millis: millis(&inside) };
    let mut windows = Vec::new();
    let mut start = from;
    while start < to {
        let end = start + WINDOW;
        let these: Vec<&Sample> = inside.iter().copied().filter(|s| s.done >= start && s.done < end).collect();
        windows.push(PollWindow {
            t: (start - from).as_secs_f64(),
            polls: these.len() as u64,
            p99_ms: super::Latencies { millis: millis(&these) }.quantile(0.99),
        });
        start = end;
    }
    PollPhase {
        polls: inside.len() as u64,
        errors: inside.iter().filter(|s| !s.ok).count() as u64,
        seconds,
        per_second: inside.len() as f64 / seconds.max(f64::EPSILON),
        p50_ms: all.quantile(0.5),
        p99_ms: all.quantile(0.99),
        p999_ms: all.quantile(0.999),
        windows,
    }
}

/// The load as a child process of the benchmark: started, told when each phase begins, stopped.
pub struct PollLoad {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl PollLoad {
    /// Starts `herald bench polls` against `api` and waits until every connection is open.
    pub async fn start(api: SocketAddr, secret: &str, riders: u64, connections: usize) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["bench", "polls", "--api", &api.to_string()])
            .args(["--riders", &riders.to_string(), "--connections", &connections.to_string()])
            .env_remove("HERALD_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the poll load")?;
        let mut stdin = child.stdin.take().context("the load's stdin")?;
        stdin.write_all(format!("{secret}\n").as_bytes()).await?;
        stdin.flush().await?;
        let mut stdout = BufReader::new(child.stdout.take().context("the load's stdout")?).lines();
        match stdout.next_line().await? {
            Some(line) if line == "ready" => Ok(Self { child, stdin, stdout }),
            other => bail!("the poll load did not start: {other:?}"),
        }
    }

    /// Ends the current phase and starts the next.
    pub async fn next_phase(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"next\n").await?;
        Ok(self.stdin.flush().await?)
    }

    /// Stops the load and returns its phases.
    pub async fn finish(mut self) -> anyhow::Result<Vec<PollPhase>> {
        drop(self.stdin);
        let line = self.stdout.next_line().await?.context("the poll load printed no result")?;
        let status = self.child.wait().await?;
        ensure!(status.success(), "the poll load failed: {status}");
        Ok(serde_json::from_str(&line)?)
    }
}
