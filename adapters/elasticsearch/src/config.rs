//! What a user sets for the search mirror on an Elasticsearch-compatible server.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticsearchConfig {
    /// The server (`HERALD_SEARCH_URL`), `http://host:9200` or `https://…`.
    pub url: String,
    /// Starts every name Herald gives the server: the alias searches use is `<prefix>notifications`,
    /// each index behind it `<prefix>notifications-v1-<created ms>`. Several Heralds (or test runs)
    /// share one server under different prefixes.
    pub prefix: String,
    /// Longest a search may take before the console is told the mirror timed out.
    pub search_timeout: Duration,
    /// Longest one write (a batch, an index created, the alias swapped) may take; a batch that runs
    /// out is retried by the feeder, which is harmless (documents are replaced whole).
    pub write_timeout: Duration,
}

impl ElasticsearchConfig {
    /// The server at `url`, under the prefix `herald-`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: "herald-".to_string(),
            search_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
        }
    }
}
