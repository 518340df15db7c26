//! The `InboxStore` contract on the embedded inbox store.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::InboxHarness;
use herald_domain::InboxCap;
use herald_domain::ports::InboxStore;
use herald_embedded_inbox::{EmbeddedInbox, EmbeddedInboxConfig};

/// A fresh inbox file in a temp dir; opening again reopens the same file.
struct Embedded(tempfile::TempDir);

#[async_trait]
impl InboxHarness for Embedded {
    async fn open_capped(&self, cap: InboxCap) -> Arc<dyn InboxStore> {
        Arc::new(EmbeddedInbox::open(&EmbeddedInboxConfig::in_data_dir(self.0.path(), cap)).await.unwrap())
    }
}

herald_contracts::inbox_contract!(Embedded(tempfile::tempdir().unwrap()));
