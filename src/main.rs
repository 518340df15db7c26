//! The `herald` command line.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use herald::auth::{AdminRole, Claims, SecretSettings, TokenSigner};
use herald::server::HttpLimits;
use herald::startup::{self, Ports, Roles, ServerUrls, Settings};
use herald_consumers::ConsumerConfig;
use herald_domain::{InboxCap, ReceiverId, ReceiverKind};
use herald_scheduler::SchedulerConfig;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "herald", version, about = "A message center for riders and merchants")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Where the embedded parts keep their files (and the token secret when HERALD_SECRET is unset);
    /// `./herald-data` by default. `bench` makes its fresh runs inside it when given.
    #[arg(long, env = "HERALD_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

impl Common {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./herald-data"))
    }
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Cap on pages (500 receivers each) written per second across all sends; unset is unbounded.
    #[arg(long, env = "HERALD_MAX_PAGES_PER_SECOND")]
    max_pages_per_second: Option<u32>,
    /// Broadcast pages a consumer delivers at once (point-to-point pages have a lane of their own).
    #[arg(long, env = "HERALD_CONSUMER_CONCURRENCY", default_value_t = 4)]
    consumer_concurrency: usize,
    /// HTTP connections served at once (fewer if the open-file limit is lower); more wait.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// A connection that has not sent a whole request's headers within this (also while idle
    /// between requests) is closed.
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", default_value = "10s", value_parser = herald::duration::parse)]
    header_timeout: std::time::Duration,
    /// A request not complete (body read and answered) within this gets 408.
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT", default_value = "30s", value_parser = herald::duration::parse)]
    request_timeout: std::time::Duration,
    /// Entries one inbox keeps; past it the oldest read ones go first, pinned and unread
    /// force-read ones never while they can be shown (at least 10).
    #[arg(long, env = "HERALD_INBOX_CAP", default_value_t = InboxCap::default(), value_parser = parse_inbox_cap)]
    inbox_cap: InboxCap,
}

fn parse_inbox_cap(raw: &str) -> Result<InboxCap, String> {
    let cap: usize = raw.parse().map_err(|e| format!("{e}"))?;
    InboxCap::new("inbox-cap", cap).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (embedded parts unless servers are configured).
    Serve(RunArgs),
    /// Run only the HTTP API.
    Api(RunArgs),
    /// Run only the scheduler.
    Scheduler(RunArgs),
    /// Run only the consumers.
    Consumer(RunArgs),
    /// Print a bearer token, signed with the secret the server uses (never a new one).
    Token {
        /// How long the token lasts (`90s`, `30m`, `12h`, `30d`; at most `365d`). Defaults: 12h for
        /// admin tokens, 30d for app tokens.
        #[arg(long, value_parser = herald::auth::parse_ttl, global = true)]
        ttl: Option<std::time::Duration>,
        #[command(subcommand)]
        who: TokenFor,
    },
    /// Manage the token secret kept in the data dir.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Manage receivers.
    Receivers {
        #[command(subcommand)]
        action: ReceiversAction,
    },
    /// Create or upgrade the schema of every store, then exit.
    Migrate,
    /// Measure Herald.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum TokenFor {
    /// An admin token for the console.
    Admin {
        #[arg(long, value_enum, default_value = "operator")]
        role: AdminRole,
    },
    /// An app token for one rider's or merchant's inbox.
    App {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum SecretAction {
    /// Make a new secret; the old one still verifies the tokens it signed until they expire.
    /// Restart the API processes to use it.
    Rotate,
}

#[derive(Subcommand)]
enum ReceiversAction {
    /// Stream a CSV (`kind,id,city,groups`, groups `;`-separated) into the receiver directory.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// One broadcast to N riders over C cities on the embedded parts, end to end.
    Fanout {
        #[arg(long, default_value_t = 1_000_000)]
        receivers: u64,
        #[arg(long, default_value_t = 300)]
        cities: u32,
        /// Repeat on fresh data and report the median.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// Direct messages (one rider each), POST → in the inbox: p50/p99 alone and during a broadcast
    /// to all N riders.
    Direct {
        #[arg(long, default_value_t = 200_000)]
        receivers: u64,
        #[arg(long, default_value_t = 50)]
        messages: usize,
    },
}

fn settings(common: &Common, args: &RunArgs) -> Settings {
    Settings {
        listen: args.listen.clone(),
        data_dir: common.data_dir(),
        secrets: SecretSettings::from_env(),
        http: HttpLimits {
            header_timeout: args.header_timeout,
            request_timeout: args.request_timeout,
            max_connections: args.max_connections.max(1),
        },
        servers: ServerUrls::from_env(),
        scheduler: SchedulerConfig { max_pages_per_second: args.max_pages_per_second, ..SchedulerConfig::default() },
        consumer: ConsumerConfig { concurrency: args.consumer_concurrency.max(1), ..ConsumerConfig::default() },
        inbox_cap: args.inbox_cap,
    }
}

async fn run(common: &Common, args: &RunArgs, roles: Roles) -> anyhow::Result<()> {
    let running = startup::start(&settings(common, args), roles).await?;
    let token = running.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing pages in hand");
        token.cancel();
    });
    running.wait().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald::telemetry::init_logging();
    let cli = Cli::parse();
    let common = &cli.common;
    match cli.command {
        Command::Serve(a) => run(common, &a, Roles::ALL).await,
        Command::Api(a) => run(common, &a, Roles { api: true, scheduler: false, consumer: false }).await,
        Command::Scheduler(a) => run(common, &a, Roles { api: false, scheduler: true, consumer: false }).await,
        Command::Consumer(a) => run(common, &a, Roles { api: false, scheduler: false, consumer: true }).await,
        Command::Token { ttl, who } => {
            let claims = match who {
                TokenFor::Admin { role } => Claims::Admin { role },
                TokenFor::App { kind, id } => {
                    Claims::App { kind: ReceiverKind::parse("--kind", &kind)?, id: ReceiverId::parse("--id", &id)? }
                }
            };
            let signer = TokenSigner::existing(&SecretSettings::from_env(), &common.data_dir())?;
            let ttl = ttl.unwrap_or_else(|| claims.default_ttl());
            eprintln!("signed with {}; valid for {}", signer.source(), herald::duration::describe(ttl));
            println!("{}", signer.sign_for(&claims, ttl, chrono::Utc::now()));
            Ok(())
        }
        Command::Secret { action: SecretAction::Rotate } => {
            let path = TokenSigner::rotate(&common.data_dir())?;
            eprintln!("new secret in {}; the previous one verifies older tokens until they expire", path.display());
            eprintln!("restart the API processes to sign and verify with it");
            Ok(())
        }
        Command::Receivers { action: ReceiversAction::Import { file } } => import(common, &file).await,
        Command::Migrate => {
            let settings = Settings { servers: ServerUrls::from_env(), ..Settings::embedded(common.data_dir(), "") };
            let dir = common.data_dir();
            let fresh = !dir.join("herald.db").exists();
            Ports::from_settings(&settings).await?;
            if fresh {
                eprintln!("created the stores in {}", dir.display());
            } else {
                eprintln!("the stores in {} are up to date", dir.display());
            }
            Ok(())
        }
        Command::Bench { what: BenchWhat::Fanout { receivers, cities, runs } } => {
            bench_fanout(common.data_dir.as_deref(), receivers, cities, runs).await
        }
        Command::Bench { what: BenchWhat::Direct { receivers, messages } } => {
            bench_direct(common.data_dir.as_deref(), receivers, messages).await
        }
    }
}

async fn import(common: &Common, file: &std::path::Path) -> anyhow::Result<()> {
    let settings = Settings { servers: ServerUrls::from_env(), ..Settings::embedded(common.data_dir(), "") };
    let ports = Ports::from_settings(&settings).await?;
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}")
            .expect("progress template"),
    );
    let report = herald::import::import_csv(file, ports.receivers.as_ref(), |bytes| bar.set_position(bytes)).await?;
    bar.finish_and_clear();
    for r in &report.rejected {
        eprintln!("line {}: {}", r.line, r.reason);
    }
    let rejected = report.rejected.len() as u64 + report.more_rejected;
    println!("imported {} receivers; rejected {rejected} rows", report.imported);
    if rejected > 0 {
        anyhow::bail!("{rejected} rows were rejected (listed above); the others were imported");
    }
    Ok(())
}

/// Each run starts from fresh data: a temporary directory, inside `--data-dir` when one is given
/// (to measure a particular disk), removed afterwards.
/// Fresh data for one benchmark run: a temporary directory inside `within` when given.
fn bench_dir(within: Option<&std::path::Path>) -> anyhow::Result<tempfile::TempDir> {
    Ok(match within {
        Some(parent) => {
            herald::private_files::create_dir(parent)?;
            tempfile::tempdir_in(parent)?
        }
        None => tempfile::tempdir()?,
    })
}

async fn bench_fanout(
    within: Option<&std::path::Path>,
    receivers: u64,
    cities: u32,
    runs: usize,
) -> anyhow::Result<()> {
    let mut seconds = Vec::new();
    for run in 1..=runs.max(1) {
        let dir = bench_dir(within)?;
        let r = herald::bench::fanout(dir.path(), receivers, cities).await?;
        println!(
            "run {run}: {} receivers in {} cities: loaded in {:.2} s; sent end to end in {:.2} s = {:.0} deliveries/s",
            r.receivers,
            r.cities,
            r.load_seconds,
            r.send_seconds,
            r.deliveries_per_second()
        );
        seconds.push(r.send_seconds);
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "median of {} runs: {median:.2} s end to end, {:.0} deliveries/s ({} cores)",
        seconds.len(),
        receivers as f64 / median,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}

async fn bench_direct(within: Option<&std::path::Path>, receivers: u64, messages: usize) -> anyhow::Result<()> {
    let dir = bench_dir(within)?;
    let r = herald::bench::direct(dir.path(), receivers, messages).await?;
    let line = |what: &str, l: &herald::bench::Latencies| {
        println!("{what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", l.quantile(0.5), l.quantile(0.99), l.quantile(1.0))
    };
    println!("{messages} direct messages, POST → in the inbox, {} riders:", r.receivers);
    line("alone", &r.alone);
    line("during a broadcast to all (one every 20 ms)", &r.during_fanout);
    println!(
        "the broadcast had reached {} then {} of {} riders when the first and the last of those were sent",
        r.fanout_sent.0, r.fanout_sent.1, r.receivers
    );
    Ok(())
}
