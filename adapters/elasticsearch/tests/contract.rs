//! The `SearchIndex` contract against a search server: `HERALD_TEST_SEARCH_URL`
//! (`export HERALD_TEST_SEARCH_URL=$(scripts/search-server.sh start)`), each case under a prefix of
//! its own, whose indices are deleted when it ends. Unset, each case says why and passes, except
//! with `CI=true`, where it fails.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use herald_contracts::SearchHarness;
use herald_domain::search::SearchIndex;
use support::TestServer;

#[async_trait]
impl SearchHarness for TestServer {
    async fn open(&self) -> Arc<dyn SearchIndex> {
        Arc::new(TestServer::open(self))
    }
}

herald_contracts::search_contract!(match TestServer::from_env() {
    Some(server) => server,
    None => return,
});
