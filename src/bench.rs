//! `herald bench fanout`: how long a broadcast to N receivers in C cities takes on the embedded
//! parts, from the API's point of view (create → status `sent`), measured in-process.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::Utc;
use herald_domain::ports::CreateOutcome;
use herald_domain::{
    Audience, Body, Category, City, NewNotification, Receiver, ReceiverId, ReceiverKind, Status, Title, ValidityWindow,
};

use crate::startup::{Ports, Roles, Settings, start_with};

#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub receivers: u64,
    pub cities: u32,
    pub load_seconds: f64,
    pub send_seconds: f64,
}

impl FanoutReport {
    pub fn deliveries_per_second(&self) -> f64 {
        self.receivers as f64 / self.send_seconds
    }
}

/// Loads `receivers` riders spread over `cities` cities into a fresh data dir, then sends one
/// notification to all of them and waits for `sent`. Checks that the sent count is exact.
pub async fn fanout(data_dir: &Path, receivers: u64, cities: u32) -> anyhow::Result<FanoutReport> {
    ensure!(cities > 0 && receivers > 0, "need at least one receiver and one city");
    let ports = Ports::embedded(data_dir).await?;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..receivers {
        batch.push(Receiver::new(
            ReceiverKind::Rider,
            ReceiverId::parse("id", &format!("r{i:09}"))?,
            City::parse("city", &format!("city{:03}", i % cities as u64))?,
            Vec::new(),
        )?);
        if batch.len() == batch.capacity() || i + 1 == receivers {
            ports.receivers.upsert_receivers(&batch).await?;
            batch.clear();
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();

    let settings = Settings::embedded(data_dir, "127.0.0.1:0");
    let running = start_with(&settings, Roles { api: false, scheduler: true, consumer: true }, ports.clone()).await?;
    let content = NewNotification {
        title: Title::parse("title", "系统通知 benchmark")?,
        body: Body::parse("body", "fan-out benchmark")?,
        category: Category::System,
        receiver_kind: ReceiverKind::Rider,
        audience: serde_json::from_str::<Audience>(r#"{"all": true}"#)?,
        pinned: false,
        force_read: false,
        validity: ValidityWindow::new(None, None)?,
        send_at: None,
        draft: false,
    };
    let started = Instant::now();
    let CreateOutcome::Created(n) = ports.notifications.create_notification(&content, None, Utc::now()).await? else {
        anyhow::bail!("the notification was not created");
    };
    loop {
        let status = ports.notifications.notification(&n.id).await?.context("notification vanished")?.status;
        if status == Status::Sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    running.stop().await?;
    let sent = ports.inbox.counters(&n.id).await?.sent;
    ensure!(sent == receivers, "sent {sent} but expected {receivers}");
    Ok(FanoutReport { receivers, cities, load_seconds, send_seconds })
}
