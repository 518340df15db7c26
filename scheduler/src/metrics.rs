use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The scheduler's Prometheus series.
#[derive(Clone)]
pub struct SchedulerMetrics {
    pub pages_published: IntCounter,
    pub receivers_paged: IntCounter,
    pub sends_started: IntCounter,
    /// By stage: `plan` (starting a due notification) or `page` (advancing one send task).
    pub send_failures: IntCounterVec,
}

impl SchedulerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            pages_published: IntCounter::new("herald_pages_published_total", "Pages published onto the queue")?,
            receivers_paged: IntCounter::new("herald_receivers_paged_total", "Receivers written into pages")?,
            sends_started: IntCounter::new("herald_sends_started_total", "Notifications whose sending began")?,
            send_failures: IntCounterVec::new(
                Opts::new("herald_send_failures_total", "Failed attempts to plan a send or page a task, retried"),
                &["stage"],
            )?,
        };
        registry.register(Box::new(m.pages_published.clone()))?;
        registry.register(Box::new(m.receivers_paged.clone()))?;
        registry.register(Box::new(m.sends_started.clone()))?;
        registry.register(Box::new(m.send_failures.clone()))?;
        // Both series exist from the start, so a rule over them has data before the first failure.
        for stage in ["plan", "page"] {
            m.send_failures.with_label_values(&[stage]);
        }
        Ok(m)
    }
}
