//! The `herald` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herald::auth::{AdminRole, Claims, TokenSigner};
use herald::config::{self, Flags, GlobalFlags, RunFlags, Settings};
use herald::startup::{self, Roles};
use herald_app::{Herald, SystemClock};
use herald_domain::{ReceiverId, ReceiverKind};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "herald", version, about = "A message center for riders and merchants")]
#[command(after_help = "Every setting, with its variable and file key: docs/configuration.md")]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (embedded parts unless servers are configured).
    Serve(RunFlags),
    /// Run only the HTTP API.
    Api(RunFlags),
    /// Run only the scheduler.
    Scheduler(RunFlags),
    /// Run only the consumers.
    Consumer(RunFlags),
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
    /// Rebuild the admin search mirror from SQL beside the one in use, which keeps answering
    /// until the rebuilt one takes over; then exit.
    Reindex {
        /// Have the api process at this address (`http://host:port`) rebuild it, and follow it
        /// until done: the way beside a running api, which is the embedded index's one writer.
        #[arg(long)]
        server: Option<String>,
    },
    /// Restore the inbox store (inboxes, read flags, counters, delivered pages, revocations)
    /// from SQL, idempotently; run it with the consumers stopped. Then exit.
    Rebuild,
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
    /// Stream a CSV (`kind,id,city,groups[,attributes[,locale]]`, groups `;`-separated, attributes a JSON object, locale a language tag) into the receiver directory.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// One broadcast to N riders over C cities (Zipf sizes), POST → sent, while apps poll; writes
    /// JSON, Markdown and an SVG chart into --out.
    Fanout {
        /// `embedded`: every port in the run's data dir; `distributed`: every port on its server
        /// (HERALD_SQL_URL, HERALD_REDIS_URL, HERALD_MQ_NAMESRV, HERALD_SEARCH_URL), on places of
        /// each run's own, removed after it.
        #[arg(long, value_enum, default_value = "embedded")]
        mode: herald::bench::Mode,
        /// Also measure another design writing as many inbox rows, in the same run.
        #[arg(long, value_enum)]
        peer: Option<herald::bench::Peer>,
        #[arg(long, default_value_t = 1_000_000)]
        receivers: u64,
        #[arg(long, default_value_t = 300)]
        cities: u32,
        /// Repeat on fresh data and report the median.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Keep-alive connections polling inboxes meanwhile (a process of its own); 0 for none.
        #[arg(long, default_value_t = 32)]
        poll_connections: usize,
        /// Scale-out (with `--mode distributed`): run the roles as processes of this binary, one
        /// api, one scheduler and this many consumers, for each count given (`1,2,4`), `--runs`
        /// times each; reports deliveries/s by count and each role's memory and CPU.
        #[arg(long, value_delimiter = ',')]
        consumers: Vec<usize>,
        /// What the broadcast carries: `personal` adds a variant, a translation, a placeholder,
        /// an image and a button (chosen per reader when polled).
        #[arg(long, value_enum, default_value = "plain")]
        content: herald::bench::Content,
        /// Where the results go.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// The poll load `bench fanout` starts (a process of its own): polls until stdin closes.
    #[command(hide = true)]
    Polls {
        #[arg(long)]
        api: std::net::SocketAddr,
        #[arg(long)]
        riders: u64,
        #[arg(long)]
        connections: usize,
    },
    /// Direct messages (one rider each), POST → in the inbox: p50/p99 alone and during a broadcast
    /// to all N riders.
    Direct {
        #[arg(long, default_value_t = 200_000)]
        receivers: u64,
        #[arg(long, default_value_t = 50)]
        messages: usize,
    },
    /// The console's search over N notifications (Chinese and English, 300 cities) through the
    /// search port: indexing docs/s, then p50/p99 of the typical queries; writes JSON and Markdown
    /// into --out. The embedded index in a temporary directory, or with --search-url (default
    /// HERALD_SEARCH_URL) a mirror of its own on that server, deleted afterwards.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        notifications: usize,
        /// How many of the newest are then indexed again the feed's way (batches of 500).
        #[arg(long, default_value_t = 100_000)]
        fed: usize,
        /// Times each query runs (a fifth of it for the deep pages).
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// An Elasticsearch- or OpenSearch-compatible server (a build with `--features elasticsearch`).
        #[arg(long)]
        search_url: Option<String>,
        /// Where the results go.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
}

impl Command {
    /// The flags of a command that runs roles.
    fn run_flags(&self) -> Option<&Flags> {
        match self {
            Command::Serve(f) | Command::Api(f) | Command::Scheduler(f) | Command::Consumer(f) => Some(&f.0),
            _ => None,
        }
    }
}

async fn run(settings: &Settings, roles: Roles) -> anyhow::Result<()> {
    let running = startup::start(settings, roles).await?;
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
    let flags = cli.command.run_flags().map_or_else(|| cli.global.0.clone(), |run| cli.global.0.with(run));
    for var in config::unknown_variables(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!("{var} is not a Herald setting (see docs/configuration.md); ignored");
    }
    let config = config::load(&flags, |var| std::env::var(var).ok())?;
    let settings = &config.settings;
    match cli.command {
        Command::Serve(_) => run(settings, Roles::ALL).await,
        Command::Api(_) => run(settings, Roles { api: true, scheduler: false, consumer: false }).await,
        Command::Scheduler(_) => run(settings, Roles { api: false, scheduler: true, consumer: false }).await,
        Command::Consumer(_) => run(settings, Roles { api: false, scheduler: false, consumer: true }).await,
        Command::Token { ttl, who } => {
            let claims = match who {
                TokenFor::Admin { role } => Claims::Admin { role },
                TokenFor::App { kind, id } => {
                    Claims::App { kind: ReceiverKind::parse("--kind", &kind)?, id: ReceiverId::parse("--id", &id)? }
                }
            };
            let signer = TokenSigner::existing(&settings.secrets, &settings.data_dir)?;
            let ttl = ttl.unwrap_or_else(|| claims.default_ttl());
            eprintln!("signed with {}; valid for {}", signer.source(), herald::duration::describe(ttl));
            println!("{}", signer.sign_for(&claims, ttl, chrono::Utc::now()));
            Ok(())
        }
        Command::Secret { action: SecretAction::Rotate } => {
            let path = TokenSigner::rotate(&settings.data_dir)?;
            eprintln!("new secret in {}; the previous one verifies older tokens until they expire", path.display());
            eprintln!("restart the API processes to sign and verify with it");
            Ok(())
        }
        Command::Receivers { action: ReceiversAction::Import { file } } => import(settings, &file).await,
        Command::Migrate => {
            let dir = &settings.data_dir;
            let fresh = !dir.join("herald.db").exists();
            startup::open_ports(settings).await?;
            if fresh {
                eprintln!("created the stores in {}", dir.display());
            } else {
                eprintln!("the stores in {} are up to date", dir.display());
            }
            Ok(())
        }
        Command::Reindex { server: Some(server) } => {
            let signer = TokenSigner::existing(&settings.secrets, &settings.data_dir)?;
            let token = signer.sign(&Claims::Admin { role: AdminRole::Operator });
            herald::reindex::through_server(&server, &token).await
        }
        Command::Reindex { server: None } => {
            let ports = startup::open_ports(settings).await?;
            // Nothing is scheduled by a rebuild: the bell rings for no one.
            let herald = Herald::new(ports, Arc::new(SystemClock), Arc::new(tokio::sync::Notify::new()));
            let fed = herald.search_feed().rebuild().await.context(
                "rebuilding the search mirror in this process; beside a running api, have it rebuild the mirror: \
                 herald reindex --server http://HOST:PORT",
            )?;
            eprintln!(
                "search mirror rebuilt from SQL: {} notifications, change log applied to {}",
                fed.indexed, fed.applied
            );
            Ok(())
        }
        Command::Rebuild => {
            let ports = startup::open_ports(settings).await?;
            // Nothing is scheduled by a rebuild: the bell rings for no one.
            let herald = Herald::new(ports, Arc::new(SystemClock), Arc::new(tokio::sync::Notify::new()));
            let mut shown = 0;
            let report = herald
                .rebuild_inbox(|so_far| {
                    if so_far.notifications >= shown + 100 {
                        shown = so_far.notifications;
                        eprintln!(
                            "… {} notifications looked at, {} entries, {} reads restored",
                            so_far.notifications, so_far.entries, so_far.reads
                        );
                    }
                })
                .await?;
            eprintln!(
                "inbox store rebuilt from SQL: {} notifications sent of {}, {} entries added, {} reads, \
                 {} archives, {} delivered pages, {} revocations",
                report.restored,
                report.notifications,
                report.entries,
                report.reads,
                report.archives,
                report.pages,
                report.revocations
            );
            if !report.pending.is_empty() {
                let ids: Vec<&str> = report.pending.iter().map(|id| id.as_str()).collect();
                eprintln!(
                    "{} notifications still delivering, their inboxes not restored yet (run rebuild again once \
                     they are done): {}",
                    ids.len(),
                    ids.join(", ")
                );
            }
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Fanout { mode, peer, receivers, cities, runs, poll_connections, consumers, content, out },
        } => {
            let options = herald::bench::FanoutOptions {
                receivers,
                cities,
                poll_connections,
                mode,
                peer,
                consumers: None,
                content,
            };
            let counts: Vec<Option<usize>> =
                if consumers.is_empty() { vec![None] } else { consumers.into_iter().map(Some).collect() };
            bench_fanout(config.chosen_data_dir.as_deref(), &settings.servers, &options, &counts, runs, &out).await
        }
        Command::Bench { what: BenchWhat::Polls { api, riders, connections } } => {
            herald::bench::polls::run(api, riders, connections).await
        }
        Command::Bench { what: BenchWhat::Direct { receivers, messages } } => {
            bench_direct(config.chosen_data_dir.as_deref(), receivers, messages).await
        }
        Command::Bench { what: BenchWhat::Search { notifications, fed, rounds, search_url, out } } => {
            let url = search_url.or_else(|| settings.servers.search.as_ref().map(|(url, _)| url.clone()));
            let options = herald::bench::search::SearchOptions { notifications, fed, rounds };
            bench_search(config.chosen_data_dir.as_deref(), url.as_deref(), &options, &out).await
        }
    }
}

async fn import(settings: &Settings, file: &std::path::Path) -> anyhow::Result<()> {
    let ports = startup::open_ports(settings).await?;
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}")
            .expect("progress template"),
    );
    // Nothing is scheduled by an import: the bell rings for no one.
    let herald = Herald::new(ports, Arc::new(SystemClock), Arc::new(tokio::sync::Notify::new()));
    let report = herald::import::import_csv(file, &herald, |bytes| bar.set_position(bytes)).await?;
    bar.finish_and_clear();
    for r in &report.rejected {
        eprintln!("line {}: {}", r.line, r.reason);
    }
    let rejected = report.rejected_count();
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
    servers: &herald::config::ServerUrls,
    options: &herald::bench::FanoutOptions,
    consumers: &[Option<usize>],
    runs: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    // Alternating the counts run by run spreads the machine's changing load over all of them.
    for run in 1..=runs.max(1) {
        for &count in consumers {
            let dir = bench_dir(within)?;
            let options = herald::bench::FanoutOptions { consumers: count, ..options.clone() };
            let r = herald::bench::fanout(dir.path(), servers, &options).await?;
            let roles = count.map_or(String::new(), |n| format!(" [{n} consumer process(es)]"));
            let polls = r.polls_during.as_ref().map_or(String::new(), |p| {
                format!("; polls meanwhile {:.0}/s, p50 {:.1} ms, p99 {:.1} ms", p.per_second, p.p50_ms, p.p99_ms)
            });
            eprintln!(
                "run {run}{roles}: {} riders in {} cities imported in {:.2} s; POST {:.1} ms; sent in {:.2} s = {:.0} \
             deliveries/s{}{polls}; machine {:.0} % busy, load {}",
                r.receivers,
                r.cities,
                r.load_seconds,
                r.post_ms,
                r.send_seconds,
                r.deliveries_per_second(),
                r.raw_seconds
                    .map_or(String::new(), |raw| format!(" ({:.1}x the raw {raw:.2} s)", r.send_seconds / raw)),
                100.0 * r.cpu.busy,
                r.load_average
            );
            if let Some(p) = &r.processes {
                for role in &p.roles {
                    eprintln!(
                        "  {}: peak RSS {:.0} MiB, RSS over the send {:.0} → {:.0} MiB (max {:.0}), CPU {:.1} s",
                        role.role,
                        role.peak_rss_mib,
                        role.rss_mib.first().map_or(0.0, |s| s.1),
                        role.rss_mib.last().map_or(0.0, |s| s.1),
                        role.rss_max_mib(),
                        role.cpu_seconds
                    );
                }
            }
            if let Some(bytes) = r.redis_bytes_per_receiver {
                eprintln!("  Redis used_memory grew by {bytes:.0} B per receiver");
            }
            if let Some(p) = &r.peer {
                eprintln!(
                    "  peer {:?}: {:.2} s = {:.0} rows/s; Herald ÷ peer {:.2}",
                    p.peer,
                    p.seconds,
                    p.rows_per_second(r.receivers),
                    r.times_peer().unwrap_or_default()
                );
            }
            reports.push(r);
        }
    }
    let (markdown, files) = herald::bench::write_report(out, &reports)?;
    println!("{markdown}");
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

async fn bench_search(
    within: Option<&std::path::Path>,
    url: Option<&str>,
    options: &herald::bench::search::SearchOptions,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let dir = bench_dir(within)?;
    let scratch = herald::adapters::ScratchSearch::open(dir.path(), url).await?;
    let measured = herald::bench::search::search(scratch.index.as_ref(), &scratch.backend, options).await;
    scratch.remove().await?;
    let (markdown, files) = herald::bench::search::write(out, &measured?)?;
    println!("{markdown}");
    for f in files {
        eprintln!("wrote {}", f.display());
    }
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
