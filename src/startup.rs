//! Wiring: one place turns settings into ports and ports into running roles. `herald serve` runs
//! every role; `herald api|scheduler|consumer` runs one; tests and benchmarks start the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use herald_consumers::{ConsumerConfig, ConsumerMetrics, Deliverer};
use herald_domain::InboxCap;
use herald_domain::ports::{InboxStore, NotificationStore, Queue, ReceiverDirectory, SendLedger};
use herald_scheduler::{Scheduler, SchedulerConfig, SchedulerMetrics, SchedulerPorts};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::adapters::embedded_inbox::EmbeddedInbox;
use crate::adapters::embedded_queue::EmbeddedQueue;
use crate::adapters::sqlite::SqliteStore;
use crate::auth::{SecretSettings, TokenSigner};
use crate::http::{AppState, router};
use crate::server::HttpLimits;
use crate::telemetry::Telemetry;

/// Every port, each behind its adapter.
#[derive(Clone)]
pub struct Ports {
    pub receivers: Arc<dyn ReceiverDirectory>,
    pub notifications: Arc<dyn NotificationStore>,
    pub ledger: Arc<dyn SendLedger>,
    pub queue: Arc<dyn Queue>,
    pub inbox: Arc<dyn InboxStore>,
}

/// How long the queue hides a pulled page before handing it out again (as a RocketMQ listener
/// that runs over its timeout is redelivered).
const QUEUE_LEASE: Duration = Duration::from_secs(30);

impl Ports {
    /// Embedded parts in `data_dir`: SQLite for the truth, and SQLite files for the queue and inboxes.
    pub async fn embedded(data_dir: &Path) -> anyhow::Result<Self> {
        Self::embedded_with_cap(data_dir, InboxCap::default()).await
    }

    /// Embedded parts whose inboxes keep at most `inbox_cap` entries each.
    pub async fn embedded_with_cap(data_dir: &Path, inbox_cap: InboxCap) -> anyhow::Result<Self> {
        crate::private_files::create_dir(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let store = Arc::new(SqliteStore::open(&data_dir.join("herald.db")).await?);
        let queue = Arc::new(EmbeddedQueue::open(&data_dir.join("queue.db"), QUEUE_LEASE).await?);
        let inbox = Arc::new(EmbeddedInbox::open(&data_dir.join("inbox.db"), inbox_cap).await?);
        Ok(Self { receivers: store.clone(), notifications: store.clone(), ledger: store, queue, inbox })
    }

    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        if let Some(var) = settings.servers.first_set() {
            bail!(
                "{var} is set, but this build runs on embedded parts only: the MariaDB, Redis, RocketMQ and \
                 search adapters are not written yet. Unset it to run embedded."
            );
        }
        Self::embedded_with_cap(&settings.data_dir, settings.inbox_cap).await
    }
}

/// Addresses of real servers (distributed mode), from the environment.
#[derive(Debug, Clone, Default)]
pub struct ServerUrls {
    pub sql: Option<String>,
    pub redis: Option<String>,
    pub mq_namesrv: Option<String>,
    pub search: Option<String>,
}

impl ServerUrls {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            sql: var("HERALD_SQL_URL"),
            redis: var("HERALD_REDIS_URL"),
            mq_namesrv: var("HERALD_MQ_NAMESRV"),
            search: var("HERALD_SEARCH_URL"),
        }
    }

    fn first_set(&self) -> Option<&'static str> {
        [
            ("HERALD_SQL_URL", &self.sql),
            ("HERALD_REDIS_URL", &self.redis),
            ("HERALD_MQ_NAMESRV", &self.mq_namesrv),
            ("HERALD_SEARCH_URL", &self.search),
        ]
        .into_iter()
        .find_map(|(name, v)| v.as_ref().map(|_| name))
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub secrets: SecretSettings,
    pub http: HttpLimits,
    pub servers: ServerUrls,
    pub scheduler: SchedulerConfig,
    pub consumer: ConsumerConfig,
    /// Entries one inbox keeps (see `InboxCap`).
    pub inbox_cap: InboxCap,
}

impl Settings {
    /// Embedded defaults in `data_dir`, listening on `listen`.
    pub fn embedded(data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            data_dir: data_dir.into(),
            secrets: SecretSettings::default(),
            http: HttpLimits::default(),
            servers: ServerUrls::default(),
            scheduler: SchedulerConfig::default(),
            consumer: ConsumerConfig::default(),
            inbox_cap: InboxCap::default(),
        }
    }
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

/// A started Herald: its address (when it serves HTTP) and the handle to stop it.
pub struct Running {
    pub addr: Option<SocketAddr>,
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
    let ports = Ports::from_settings(settings).await?;
    start_with(settings, roles, ports).await
}

pub async fn start_with(settings: &Settings, roles: Roles, ports: Ports) -> anyhow::Result<Running> {
    let telemetry = Arc::new(Telemetry::new()?);
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();

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
        let deliverer = Deliverer::new(
            ports.notifications.clone(),
            ports.ledger.clone(),
            ports.inbox.clone(),
            settings.consumer.bulk_writes,
        );
        let metrics = ConsumerMetrics::register(&telemetry.registry)?;
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
        let app = router(AppState::new(ports.clone(), tokens, wake.clone(), telemetry.clone()));
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
    let listen = addr.map(|a| format!(" on http://{a}")).unwrap_or_default();
    tracing::info!(data_dir = %settings.data_dir.display(), "herald {} running{listen}", running.join(" + "));
    Ok(Running { addr, ports, shutdown, tasks })
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
