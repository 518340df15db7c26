use prometheus::{IntCounter, Registry};

/// The scheduler's Prometheus series.
#[derive(Clone)]
pub struct SchedulerMetrics {
    pub pages_published: IntCounter,
    pub receivers_paged: IntCounter,
    pub sends_started: IntCounter,
}

impl SchedulerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            pages_published: IntCounter::new("herald_pages_published_total", "Pages published onto the queue")?,
            receivers_paged: IntCounter::new("herald_receivers_paged_total", "Receivers written into pages")?,
            sends_started: IntCounter::new("herald_sends_started_total", "Notifications whose sending began")?,
        };
        registry.register(Box::new(m.pages_published.clone()))?;
        registry.register(Box::new(m.receivers_paged.clone()))?;
        registry.register(Box::new(m.sends_started.clone()))?;
        Ok(m)
    }
}
