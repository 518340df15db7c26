//! The `SearchIndex` contract on the embedded tantivy index.

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::SearchHarness;
use herald_domain::search::SearchIndex;
use herald_tantivy::{TantivyConfig, TantivySearch};

/// A fresh data directory; opening again reopens the same index.
struct Tantivy(tempfile::TempDir);

#[async_trait]
impl SearchHarness for Tantivy {
    async fn open(&self) -> Arc<dyn SearchIndex> {
        Arc::new(TantivySearch::open(&TantivyConfig::in_data_dir(self.0.path())).await.unwrap())
    }
}

herald_contracts::search_contract!(Tantivy(tempfile::tempdir().unwrap()));
