//! The search server the tests use: `HERALD_TEST_SEARCH_URL` (`scripts/search-server.sh start`
//! prints one), each test under a prefix of its own, whose indices are deleted when it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_elasticsearch::{ElasticsearchConfig, ElasticsearchIndex};

static TEST: AtomicU64 = AtomicU64::new(0);

pub struct TestServer {
    pub config: ElasticsearchConfig,
}

impl TestServer {
    /// The server the environment names, under a fresh prefix. Unset: `None` after saying why, so
    /// the test passes without one, except in CI (`CI=true`), where a missing server fails it.
    pub fn from_env() -> Option<Self> {
        let url = std::env::var("HERALD_TEST_SEARCH_URL").ok().filter(|u| !u.is_empty());
        let Some(url) = url else {
            let why =
                "HERALD_TEST_SEARCH_URL is unset (export HERALD_TEST_SEARCH_URL=$(scripts/search-server.sh start))";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}: CI must run the search server's suite");
            eprintln!("skipped: {why}");
            return None;
        };
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        let n = TEST.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("herald-test-{}-{stamp}-{n}-", std::process::id());
        Some(Self { config: ElasticsearchConfig { prefix, ..ElasticsearchConfig::new(&url) } })
    }

    /// A handle on this test's mirror; another one reaches the same indices, as a restart would.
    pub fn open(&self) -> ElasticsearchIndex {
        ElasticsearchIndex::new(self.config.clone()).expect("a valid search server URL")
    }
}

impl Drop for TestServer {
    /// Deletes this test's indices, on a runtime of its own: a drop cannot await.
    fn drop(&mut self) {
        let mirror = self.open();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(mirror.delete_all())
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("this test's search indices were not deleted: {e}");
        }
    }
}
