//! The `Queue` contract on the embedded queue.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::QueueHarness;
use herald_domain::ports::Queue;
use herald_embedded_queue::{EmbeddedQueue, EmbeddedQueueConfig};

/// A fresh queue file in a temp dir; opening again reopens the same file.
struct Embedded(tempfile::TempDir);

#[async_trait]
impl QueueHarness for Embedded {
    async fn open(&self) -> Arc<dyn Queue> {
        Arc::new(EmbeddedQueue::open(&EmbeddedQueueConfig::in_data_dir(self.0.path())).await.unwrap())
    }

    fn topic(&self, name: &str) -> String {
        name.to_string()
    }
}

herald_contracts::queue_contract!(Embedded(tempfile::tempdir().unwrap()));
