//! Logs (tracing) and metrics (Prometheus) set up once per process.

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::observed::BackendErrors;

/// Installs the log subscriber: `RUST_LOG` filters (default `info`), plain text to stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The series the API owns, and the registry every role registers into.
pub struct Telemetry {
    pub registry: Registry,
    pub http_duration: HistogramVec,
    /// Only in a process that runs the scheduler: see `BacklogGauges`.
    pub backlog: Option<BacklogGauges>,
    pub backend_errors: BackendErrors,
}

/// Gauges read from the backends at scrape time. Every process would read the same values, so
/// one role exports them (the scheduler): an alert on one fires once, not once per process.
pub struct BacklogGauges {
    /// By consumer group.
    pub queue_lag: IntGaugeVec,
    pub outbox_len: IntGauge,
    pub search_lag: IntGauge,
    /// Seconds since the oldest send still open began (`SendLedger::oldest_open_send`); 0 when none is.
    pub oldest_open_send: Gauge,
}

impl BacklogGauges {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let queue_lag = IntGaugeVec::new(
            Opts::new("herald_queue_lag_pages", "Pages published and not yet consumed, by consumer group"),
            &["group"],
        )?;
        let outbox_len = IntGauge::new("herald_outbox_pages", "Pages committed and not yet published")?;
        let search_lag =
            IntGauge::new("herald_search_lag_changes", "Changes logged in SQL that the search mirror has not applied")?;
        let oldest_open_send = Gauge::new(
            "herald_oldest_open_send_seconds",
            "Seconds since the oldest send with a city not delivered yet began (0 when none is open)",
        )?;
        registry.register(Box::new(queue_lag.clone()))?;
        registry.register(Box::new(outbox_len.clone()))?;
        registry.register(Box::new(search_lag.clone()))?;
        registry.register(Box::new(oldest_open_send.clone()))?;
        Ok(Self { queue_lag, outbox_len, search_lag, oldest_open_send })
    }
}

impl Telemetry {
    /// `backlog`: whether this process exports the backend gauges (it runs the scheduler).
    pub fn new(backlog: bool) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(None, None)?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("herald_http_request_duration_seconds", "HTTP request latency")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let backlog = if backlog { Some(BacklogGauges::register(&registry)?) } else { None };
        let backend_errors = BackendErrors::register(&registry)?;
        Ok(Self { registry, http_duration, backlog, backend_errors })
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        out
    }
}
