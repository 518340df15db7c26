//! The port contracts, run against the embedded adapters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::adapters::embedded_inbox::EmbeddedInbox;
use herald::adapters::embedded_queue::EmbeddedQueue;
use herald::startup::Ports;
use herald_contracts::{InboxHarness, QueueHarness, SqlPorts, StoreHarness};
use herald_domain::ports::{InboxStore, Queue};

/// Embedded adapters keep their files in a temp dir; opening again reopens the same files.
struct Embedded(tempfile::TempDir);

impl Embedded {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

#[async_trait]
impl QueueHarness for Embedded {
    async fn open(&self) -> Arc<dyn Queue> {
        Arc::new(EmbeddedQueue::open(&self.0.path().join("queue.db"), Duration::from_secs(30)).await.unwrap())
    }

    fn topic(&self, name: &str) -> String {
        name.to_string()
    }
}

#[async_trait]
impl InboxHarness for Embedded {
    async fn open(&self) -> Arc<dyn InboxStore> {
        Arc::new(EmbeddedInbox::open(&self.0.path().join("inbox.db")).await.unwrap())
    }
}

#[async_trait]
impl StoreHarness for Embedded {
    async fn open(&self) -> SqlPorts {
        let ports = Ports::embedded(self.0.path()).await.unwrap();
        SqlPorts { receivers: ports.receivers, notifications: ports.notifications, ledger: ports.ledger }
    }
}

mod queue {
    use super::*;
    herald_contracts::queue_contract!(Embedded::new());
}

mod inbox {
    use super::*;
    herald_contracts::inbox_contract!(Embedded::new());
}

mod store {
    use super::*;
    herald_contracts::store_contract!(Embedded::new());
}
