//! Wiring: one place turns settings into ports and ports into running roles. `herald serve` runs
//! every role; `herald api|scheduler|consumer` runs one; tests and benchmarks start the same way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use herald_app::{Herald, InboxHub, SystemClock};
use herald_consumers::{ConsumerMetrics, Deliverer};
use herald_scheduler::{Scheduler, SchedulerMetrics, SchedulerPorts};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenSigner;
use crate::http::{AppState, OpsState, Streams, ops_router, router};
use crate::telemetry::Telemetry;

pub use herald_app::Ports;

pub use crate::config::Settings;

/// The embedded parts in `data_dir`: SQLite for the truth, and SQLite files for the queue and inboxes.
pub async fn embedded_ports(data_dir: &Path) -> anyhow::Result<Ports> {
    open_ports(&Settings::embedded(data_dir, "127.0.0.1:0")).await
}

/// The ports the settings name, each opened (and its schema brought up to date). Each port picks
/// its adapter on its own (`crate::adapters`): embedded unless its server is set.
pub async fn open_ports(settings: &Settings) -> anyhow::Result<Ports> {
    let data_dir = &settings.data_dir;
    crate::private_files::create_dir(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let sql = crate::adapters::sql_truth(settings).await?;
    let queue = crate::adapters::queue(settings).await?;
    let inbox = crate::adapters::inbox(settings).await?;
    let search = crate::adapters::search(settings).await?;
    Ok(Ports {
        receivers: sql.receivers,
        notifications: sql.notifications,
        ledger: sql.ledger,
        queue,
        inbox,
        search,
        console: sql.console,
    })
}

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub scheduler: bool,
    pub consumer: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { api: true, scheduler: true, consumer: true };
}

/// A started Herald: its addresses (when it serves the API, and its ops listener when set) and
/// the handle to stop it.
pub struct Running {
    pub addr: Option<SocketAddr>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served on their own (`HERALD_OPS_ADDR`).
    pub ops_addr: Option<SocketAddr>,
    pub ports: Ports,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every role has stopped (after the shutdown token fires, or one role fails).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.context("a role panicked").and_then(|r| r);
            if let Err(e) = outcome {
                self.shutdown.cancel();
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Asks every role to stop gracefully and waits: in-flight pages finish and are acked.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Starts the chosen roles on the ports the settings name.
pub async fn start(settings: &Settings, roles: Roles) -> anyhow::Result<Running> {
    let ports = open_ports(settings).await?;
    start_with(settings, roles, ports).await
}

pub async fn start_with(settings: &Settings, roles: Roles, ports: Ports) -> anyhow::Result<Running> {
    let telemetry = Arc::new(Telemetry::new(roles.scheduler)?);
    // Every role reaches its backends through ports that count their failures.
    let ports = telemetry.backend_errors.observe(ports);
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    // Deliveries, reads and revokes in this process tell the apps listening here at once, and
    // with the inbox store on Redis, those listening to every other process too.
    let hub = Arc::new(InboxHub::new());
    let hints = crate::adapters::hints(settings, hub.clone(), roles.api).await?;

    if roles.scheduler {
        // Pages published before any consumer ever ran must wait for one, not vanish.
        ports.queue.declare(&herald_consumers::subscription()).await.context("declaring the consumer group")?;
        announce_resumed_sends(&ports).await;
        let scheduler = Arc::new(Scheduler::new(
            SchedulerPorts {
                receivers: ports.receivers.clone(),
                notifications: ports.notifications.clone(),
                ledger: ports.ledger.clone(),
                queue: ports.queue.clone(),
            },
            settings.scheduler.clone(),
            SchedulerMetrics::register(&telemetry.registry)?,
            wake.clone(),
        ));
        let token = shutdown.clone();
        tasks.spawn(async move {
            scheduler.run(token).await;
            Ok(())
        });
    }

    if roles.consumer {
        let metrics = ConsumerMetrics::register(&telemetry.registry)?;
        let deliverer = Deliverer::new(
            ports.notifications.clone(),
            ports.ledger.clone(),
            ports.inbox.clone(),
            ports.receivers.clone(),
            settings.consumer.bulk_writes,
        )
        .hinting(hints.clone())
        .measuring(metrics.send_delay.clone());
        let (queue, config, token) = (ports.queue.clone(), settings.consumer.clone(), shutdown.clone());
        tasks.spawn(async move {
            herald_consumers::run(queue, deliverer, metrics, config, token).await.context("consumer stopped")
        });
    }

    let mut addr = None;
    if roles.api {
        let tokens = TokenSigner::for_server(&settings.secrets, &settings.data_dir)?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
        addr = Some(listener.local_addr()?);
        let herald =
            Herald::new(ports.clone(), Arc::new(SystemClock), wake.clone()).with_hints(hub.clone(), hints.clone());
        // The api role feeds the search mirror: the console searches here, and its list catches
        // the mirror up in-process before it searches (herald-app's `search` module says why).
        let (feed, token) = (herald.search_feed(), shutdown.clone());
        tasks.spawn(async move {
            feed.run(token).await;
            Ok(())
        });
        // Windows opening or closing by time hint the apps listening here.
        let (windows, token) = (herald.clone(), shutdown.clone());
        tasks.spawn(async move {
            windows.watch_windows(token).await;
            Ok(())
        });
        let streams = Streams::new(settings.streams.clone(), shutdown.clone());
        let app = router(AppState::new(herald, tokens, telemetry.clone(), streams, settings.app_schemes.clone()));
        let (token, limits) = (shutdown.clone(), settings.http.clone());
        tasks.spawn(async move {
            crate::server::serve(listener, app, limits, token).await;
            Ok(())
        });
    }
    // Every role can show its health and metrics: a scheduler or consumer alone serves nothing else.
    let mut ops_addr = None;
    if let Some(ops_listen) = &settings.ops_listen {
        let listener = tokio::net::TcpListener::bind(ops_listen)
            .await
            .with_context(|| format!("listening for ops on {ops_listen}"))?;
        ops_addr = Some(listener.local_addr()?);
        let herald = Herald::new(ports.clone(), Arc::new(SystemClock), wake.clone());
        let app = ops_router(OpsState { herald, telemetry: telemetry.clone() });
        let (token, limits) = (shutdown.clone(), settings.http.clone());
        tasks.spawn(async move {
            crate::server::serve(listener, app, limits, token).await;
            Ok(())
        });
    }
    let running: Vec<&str> = [(roles.api, "api"), (roles.scheduler, "scheduler"), (roles.consumer, "consumer")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    let mut listen = addr.map(|a| format!(" on http://{a}")).unwrap_or_default();
    if let Some(ops) = ops_addr {
        listen.push_str(&format!(", ops on http://{ops}"));
    }
    tracing::info!(data_dir = %settings.data_dir.display(), "herald {} running{listen}", running.join(" + "));
    Ok(Running { addr, ops_addr, ports, shutdown, tasks })
}

/// Says which sends a starting scheduler picks up where they stopped (after a restart or a kill -9),
/// so an operator sees that nothing was dropped.
async fn announce_resumed_sends(ports: &Ports) {
    let mut open = std::collections::BTreeSet::new();
    for direct in [true, false] {
        match ports.ledger.open_tasks(direct, None, 10_000).await {
            Ok(tasks) => open.extend(tasks.into_iter().map(|t| t.notification_id)),
            Err(e) => tracing::warn!(error = %e, "could not list the sends in progress"),
        }
    }
    if open.is_empty() {
        tracing::info!("scheduler: no send in progress to resume");
    } else {
        let shown: Vec<String> = open.iter().take(10).map(|id| id.to_string()).collect();
        let more = open.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        tracing::info!("scheduler: resuming {} sends where they stopped: {}{more}", open.len(), shown.join(", "));
    }
}
