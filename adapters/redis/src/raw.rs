//! What `herald bench fanout --mode distributed` compares Herald with on Redis: the raw limit (the
//! same inbox writes by the most direct client path) and the server's memory.

use std::time::Instant;

use crate::config::RedisServer;

/// Commands per pipeline of the raw writer: one page of receivers.
const PIPELINE: usize = 500;

/// The one server `url` names; the raw figures are measured on one server, not across a cluster.
fn single(url: &str) -> anyhow::Result<String> {
    match RedisServer::parse(url)? {
        RedisServer::Single(url) => Ok(url),
        RedisServer::Cluster(_) => {
            anyhow::bail!("{url}: the raw Redis figures are measured on one server, not a cluster")
        }
    }
}

/// Seconds to `ZADD` one entry into each of `entries` receivers' sorted sets under `prefix` on the
/// server `url` names, in pipelines of 500 from one connection, nothing else (no Lua, no counters,
/// no page ledger). The keys stay under `prefix:raw:` for the caller to erase with the rest.
pub async fn raw_write_seconds(url: &str, prefix: &str, entries: u64) -> anyhow::Result<f64> {
    let mut conn = redis::Client::open(single(url)?)?.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = (0..entries).map(|i| format!("{prefix}:raw:rider:r{i:09}")).collect();
    let started = Instant::now();
    for page in keys.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for (i, key) in page.iter().enumerate() {
            pipe.cmd("ZADD").arg(key).arg(i).arg("raw").ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `used_memory` of the server `url` names (`INFO memory`), in bytes; of a cluster, the sum over
/// the nodes the URL lists (list every master to count the whole cluster).
pub async fn used_memory(url: &str) -> anyhow::Result<u64> {
    let nodes = match RedisServer::parse(url)? {
        RedisServer::Single(url) => vec![url],
        RedisServer::Cluster(nodes) => nodes,
    };
    let mut total = 0;
    for node in nodes {
        let mut conn = redis::Client::open(node.as_str())?.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
        let line = info.lines().find_map(|l| l.strip_prefix("used_memory:"));
        total += line.ok_or_else(|| anyhow::anyhow!("{node}: no used_memory in INFO memory"))?.trim().parse::<u64>()?;
    }
    Ok(total)
}
