//! The admin search mirror (`SearchIndex`) on an Elasticsearch- or OpenSearch-compatible server.
//!
//! Searches and the feed go through one alias, `<prefix>notifications`, naming one index of the
//! mapping in `es-mappings/` (`<prefix>notifications-v1-<generation>`: 0 for the first, created on
//! the first write, the creation time in ms for each rebuilt one). A rebuild fills a new index
//! beside it and then moves the alias in one `_aliases` call, so no search finds the mirror empty.
//! The change-log position applied is a document of the same index, written in the batch's own
//! `_bulk` with the position as its external version: the server refuses to move it back.

mod config;
mod document;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use elasticsearch::http::StatusCode;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesGetAliasParts, IndicesGetParts, IndicesRefreshParts,
};
use elasticsearch::params::{Refresh, VersionType};
use elasticsearch::{BulkOperation, BulkOperations, BulkParts, Elasticsearch, GetParts, SearchParts};
use herald_domain::listing::NotificationFilter;
use herald_domain::notification::NotificationId;
use herald_domain::ports::{Failure, PortError, PortResult};
use herald_domain::search::{SearchCursor, SearchDocument, SearchHits, SearchIndex, SearchRebuild};
use serde_json::{Value, json};

pub use config::ElasticsearchConfig;
use document::{APPLIED_ID, MAPPING, MAPPING_VERSION};

const BACKEND: &str = "elasticsearch";

/// What the server did wrong, beside not being reached (the client's own error).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the search server answered {status} to {what}: {reason}")]
    Refused { what: &'static str, status: u16, reason: String },
    #[error("the search server refused {failed} of a batch's {of} writes; the first: {reason}")]
    Batch { failed: usize, of: usize, reason: String },
    #[error("the search server's answer to {what} was not understood: {detail}")]
    Unexpected { what: &'static str, detail: String },
}

fn unreached(error: elasticsearch::Error) -> PortError {
    let failure = if error.is_timeout() { Failure::TimedOut } else { Failure::Unavailable };
    PortError::with(BACKEND, failure, error)
}

/// The failure a caller is told for an HTTP status: overloaded (429) is busy, a timeout timed out,
/// anything else unavailable.
fn failure_of(status: u16) -> Failure {
    match status {
        429 => Failure::Busy,
        408 | 504 => Failure::TimedOut,
        _ => Failure::Unavailable,
    }
}

fn unexpected(what: &'static str, detail: impl ToString) -> PortError {
    PortError::new(BACKEND, ServerError::Unexpected { what, detail: detail.to_string() })
}

/// The reason an error answer gives (`error.reason`, or the whole body).
fn reason(body: &Value) -> String {
    match &body["error"] {
        Value::Object(error) => {
            let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
            let why = error.get("reason").and_then(Value::as_str).unwrap_or("");
            format!("{kind}: {why}")
        }
        Value::Null => body.to_string(),
        other => other.as_str().map_or_else(|| other.to_string(), str::to_string),
    }
}

/// An answer: its status and JSON body (`Null` when it has none).
async fn answer(what: &'static str, sent: Result<Response, elasticsearch::Error>) -> PortResult<(StatusCode, Value)> {
    let response = sent.map_err(unreached)?;
    let status = response.status_code();
    let text = response.text().await.map_err(unreached)?;
    let body =
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|e| unexpected(what, e))? };
    Ok((status, body))
}

/// A successful answer's body; any other status is the refusal it names.
async fn success(what: &'static str, sent: Result<Response, elasticsearch::Error>) -> PortResult<Value> {
    let (status, body) = answer(what, sent).await?;
    if status.is_success() { Ok(body) } else { Err(refused(what, status, &body)) }
}

fn refused(what: &'static str, status: StatusCode, body: &Value) -> PortError {
    let status = status.as_u16();
    PortError::with(BACKEND, failure_of(status), ServerError::Refused { what, status, reason: reason(body) })
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// The search mirror on one server, under one prefix.
pub struct ElasticsearchIndex {
    server: Server,
    /// Whether the alias is known to name an index, so a write need not look first.
    alias_ready: AtomicBool,
}

/// The client, and the names of this mirror on its server.
#[derive(Clone)]
struct Server {
    client: Elasticsearch,
    config: ElasticsearchConfig,
    alias: String,
}

impl ElasticsearchIndex {
    /// A client for the server `config` names. Nothing is sent yet: a server that is down makes
    /// searches, writes and `ping` fail, never Herald's start.
    pub fn new(config: ElasticsearchConfig) -> anyhow::Result<Self> {
        let url = config.url.parse().map_err(|e| anyhow::anyhow!("the search server URL {:?}: {e}", config.url))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.write_timeout.max(config.search_timeout))
            .build()?;
        let alias = format!("{}notifications", config.prefix);
        let server = Server { client: Elasticsearch::new(transport), config, alias };
        Ok(Self { server, alias_ready: AtomicBool::new(false) })
    }

    /// Makes sure the alias names an index, creating the first one with it when there is none.
    async fn ensure_alias(&self) -> PortResult<()> {
        if self.alias_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let server = &self.server;
        if server.aliased().await?.is_empty() {
            server.create_index(&server.index_name(0), Some(json!({ &server.alias: {} }))).await?;
        }
        self.alias_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes every index whose name starts with this mirror's alias: each the alias names, and any
    /// a rebuild left unfinished. For tests, and for whoever removes a Herald from a shared server.
    pub async fn delete_all(&self) -> PortResult<()> {
        let server = &self.server;
        self.alias_ready.store(false, Ordering::Relaxed);
        server.delete(&server.indices().await?).await
    }
}

impl Server {
    /// Every index of this mirror, of any mapping version: the one the alias names, and any a
    /// rebuild left unfinished.
    async fn indices(&self) -> PortResult<Vec<String>> {
        let pattern = format!("{}-v*", self.alias);
        let sent = self
            .client
            .indices()
            .get(IndicesGetParts::Index(&[&pattern]))
            .request_timeout(self.config.write_timeout)
            .send()
            .await;
        let body = success("listing indices", sent).await?;
        Ok(body.as_object().map(|indices| indices.keys().cloned().collect()).unwrap_or_default())
    }

    async fn delete(&self, indices: &[String]) -> PortResult<()> {
        if indices.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = indices.iter().map(String::as_str).collect();
        let sent = self
            .client
            .indices()
            .delete(IndicesDeleteParts::Index(&names))
            .request_timeout(self.config.write_timeout)
            .send()
            .await;
        success("deleting indices", sent).await.map(drop)
    }

    /// The name of an index of the current mapping, of `generation`.
    fn index_name(&self, generation: u128) -> String {
        format!("{}-v{MAPPING_VERSION}-{generation}", self.alias)
    }

    /// Creates `index` with the mapping (and `aliases`, a JSON object, when given). An index of that
    /// name already there counts as created: another process made it first.
    async fn create_index(&self, index: &str, aliases: Option<Value>) -> PortResult<()> {
        let mut body: Value = serde_json::from_str(MAPPING).map_err(|e| unexpected("the mapping", e))?;
        if let Some(aliases) = aliases {
            body["aliases"] = aliases;
        }
        let sent = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(index))
            .body(body)
            .request_timeout(self.config.write_timeout)
            .send()
            .await;
        let (status, body) = answer("creating an index", sent).await?;
        let exists = body["error"]["type"] == "resource_already_exists_exception";
        if status.is_success() || exists { Ok(()) } else { Err(refused("creating an index", status, &body)) }
    }

    /// The indices the alias names (none before the first write).
    async fn aliased(&self) -> PortResult<Vec<String>> {
        let sent = self
            .client
            .indices()
            .get_alias(IndicesGetAliasParts::Name(&[&self.alias]))
            .request_timeout(self.config.write_timeout)
            .send()
            .await;
        let (status, body) = answer("reading the alias", sent).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            s if s.is_success() => {
                Ok(body.as_object().map(|indices| indices.keys().cloned().collect()).unwrap_or_default())
            }
            s => Err(refused("reading the alias", s, &body)),
        }
    }

    /// Sends one `_bulk` of `operations` (`count` of them) to `index` and checks every item. An
    /// item that writes the position and meets a newer one is no failure: the position stays the
    /// newer. `require_alias` refuses to create an index of that name on the fly.
    async fn bulk(&self, index: &str, operations: BulkOperations, count: usize, require_alias: bool) -> PortResult<()> {
        let sent = self
            .client
            .bulk(BulkParts::Index(index))
            .body(vec![operations])
            .refresh(Refresh::WaitFor)
            .require_alias(require_alias)
            .request_timeout(self.config.write_timeout)
            .send()
            .await;
        let body = success("a batch", sent).await?;
        if body["errors"] != true {
            return Ok(());
        }
        let items = body["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        let failed: Vec<&Value> = items
            .iter()
            .filter_map(|item| item.as_object()?.values().next())
            .filter(|item| item.get("error").is_some())
            .filter(|item| !(item["_id"] == APPLIED_ID && item["status"] == 409))
            .collect();
        let Some(first) = failed.first() else { return Ok(()) };
        let status = first["status"].as_u64().unwrap_or(500) as u16;
        let error = ServerError::Batch { failed: failed.len(), of: count, reason: reason(first) };
        Err(PortError::with(BACKEND, failure_of(status), error))
    }

    /// One `_bulk` writing `documents` into `index`, and the position when given.
    fn operations(documents: &[SearchDocument], position: Option<u64>) -> PortResult<BulkOperations> {
        let mut ops = BulkOperations::new();
        let build = |e: elasticsearch::Error| unexpected("building a batch", e);
        for doc in documents {
            ops.push(BulkOperation::index(document::source(doc)).id(doc.notification.id.as_str())).map_err(build)?;
        }
        if let Some(position) = position {
            let version = i64::try_from(position).map_err(|e| unexpected("the position", e))?;
            let applied = BulkOperation::index(document::applied_source(position))
                .id(APPLIED_ID)
                .version(version)
                .version_type(VersionType::External);
            ops.push(applied).map_err(build)?;
        }
        Ok(ops)
    }
}

#[async_trait]
impl SearchIndex for ElasticsearchIndex {
    async fn index(&self, position: u64, documents: &[SearchDocument]) -> PortResult<()> {
        if position <= self.applied().await? {
            return Ok(());
        }
        self.ensure_alias().await?;
        let ops = Server::operations(documents, Some(position))?;
        let written = self.server.bulk(&self.server.alias, ops, documents.len() + 1, true).await;
        if written.is_err() {
            // Perhaps the alias is gone: look again next time.
            self.alias_ready.store(false, Ordering::Relaxed);
        }
        written
    }

    async fn applied(&self) -> PortResult<u64> {
        let sent = self
            .server
            .client
            .get(GetParts::IndexId(&self.server.alias, APPLIED_ID))
            .request_timeout(self.server.config.search_timeout)
            .send()
            .await;
        let (status, body) = answer("reading the position", sent).await?;
        match status {
            // No such document, or no index yet: nothing applied.
            StatusCode::NOT_FOUND => Ok(0),
            s if s.is_success() => body["_source"]["applied"].as_u64().ok_or_else(|| unexpected("the position", body)),
            s => Err(refused("reading the position", s, &body)),
        }
    }

    async fn search(
        &self,
        filter: &NotificationFilter,
        after: Option<&SearchCursor>,
        limit: usize,
    ) -> PortResult<SearchHits> {
        // One more than asked, to tell whether anything follows.
        let body = document::search_body(filter, after, limit + 1);
        let sent = self
            .server
            .client
            .search(SearchParts::Index(&[&self.server.alias]))
            .body(body)
            .request_timeout(self.server.config.search_timeout)
            .send()
            .await;
        let (status, body) = answer("a search", sent).await?;
        if status == StatusCode::NOT_FOUND && body["error"]["type"] == "index_not_found_exception" {
            // Nothing written yet: an empty mirror.
            return Ok(SearchHits { ids: Vec::new(), total: 0, next: None });
        }
        if !status.is_success() {
            return Err(refused("a search", status, &body));
        }
        let total = body["hits"]["total"]["value"].as_u64().ok_or_else(|| unexpected("a search", "no total"))?;
        let hits = body["hits"]["hits"].as_array().map(Vec::as_slice).unwrap_or_default();
        let more = hits.len() > limit;
        let hits = &hits[..hits.len().min(limit)];
        let ids = hits
            .iter()
            .map(|hit| {
                let id = hit["_id"].as_str().ok_or_else(|| unexpected("a search", "a hit without an id"))?;
                NotificationId::parse("_id", id).map_err(|e| unexpected("a search", e.message))
            })
            .collect::<PortResult<Vec<_>>>()?;
        let next = match hits.last() {
            Some(last) if more => {
                let sort = last["sort"].as_array().map(Vec::as_slice).unwrap_or_default();
                let cursor = document::cursor(filter.text.is_some(), sort);
                Some(cursor.ok_or_else(|| unexpected("a search", format!("sort values {sort:?}")))?)
            }
            _ => None,
        };
        Ok(SearchHits { ids, total, next })
    }

    async fn begin_rebuild(&self) -> PortResult<Box<dyn SearchRebuild>> {
        let server = &self.server;
        // What an unfinished rebuild left (a crash, a dropped one) only takes room: it goes first.
        let in_use = server.aliased().await?;
        let left: Vec<String> = server.indices().await?.into_iter().filter(|i| !in_use.contains(i)).collect();
        server.delete(&left).await?;
        let index = server.index_name(now_ms());
        server.create_index(&index, None).await?;
        Ok(Box::new(Rebuild { server: self.server.clone(), index }))
    }

    async fn ping(&self) -> PortResult<()> {
        let sent = self.server.client.ping().request_timeout(self.server.config.search_timeout).send().await;
        success("a ping", sent).await.map(drop)
    }
}

/// A new index being filled beside the one in use, which the alias names until `finish`.
struct Rebuild {
    server: Server,
    index: String,
}

#[async_trait]
impl SearchRebuild for Rebuild {
    async fn add(&mut self, documents: &[SearchDocument]) -> PortResult<()> {
        if documents.is_empty() {
            return Ok(());
        }
        let ops = Server::operations(documents, None)?;
        self.server.bulk(&self.index, ops, documents.len(), false).await
    }

    async fn finish(self: Box<Self>, position: u64) -> PortResult<()> {
        let mirror = &self.server;
        mirror.bulk(&self.index, Server::operations(&[], Some(position))?, 1, false).await?;
        let sent = mirror
            .client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[&self.index]))
            .request_timeout(mirror.config.write_timeout)
            .send()
            .await;
        success("refreshing the rebuilt index", sent).await?;
        // One call moves the alias: every search sees the old index or the new one, never neither.
        let old = mirror.aliased().await?;
        let mut actions = vec![json!({ "add": { "index": self.index, "alias": mirror.alias } })];
        actions.extend(old.iter().map(|index| json!({ "remove": { "index": index, "alias": mirror.alias } })));
        let sent = mirror
            .client
            .indices()
            .update_aliases()
            .body(json!({ "actions": actions }))
            .request_timeout(mirror.config.write_timeout)
            .send()
            .await;
        success("moving the alias", sent).await?;
        // The alias has moved: an old index left behind costs room, not correctness.
        if let Err(e) = mirror.delete(&old).await {
            tracing::warn!(error = %e, indices = ?old, "the search mirror's replaced index was not deleted");
        }
        Ok(())
    }
}
