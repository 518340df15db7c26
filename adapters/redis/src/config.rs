//! What a user sets for the Redis inbox store: where the server is (one server, or a cluster), the
//! key prefix that keeps several Heralds (or test runs) apart on one server, and the inbox cap.

use herald_domain::InboxCap;

/// Why a Redis address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedisConfigError {
    #[error("{0:?} is not a Redis address: expected redis://…, rediss://…, redis+cluster://… or rediss+cluster://…")]
    Scheme(String),
    #[error("a key prefix is 1 to 64 characters without braces or spaces, not {0:?}")]
    Prefix(String),
}

/// Where the inbox store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisServer {
    /// One server (or a proxy in front of several).
    Single(String),
    /// A Redis Cluster, found from these nodes (any of its masters; the client learns the rest).
    Cluster(Vec<String>),
}

impl RedisServer {
    /// `HERALD_REDIS_URL`: one `redis://` / `rediss://` URL is one server; several, separated by
    /// commas, are the seed nodes of a cluster; a `redis+cluster://` or `rediss+cluster://` URL is a
    /// cluster found from that one node.
    pub fn parse(raw: &str) -> Result<Self, RedisConfigError> {
        let parts: Vec<&str> = raw.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        let mut cluster = parts.len() > 1;
        let mut nodes = Vec::with_capacity(parts.len());
        for part in &parts {
            let url = if let Some(rest) = part.strip_prefix("redis+cluster://") {
                cluster = true;
                format!("redis://{rest}")
            } else if let Some(rest) = part.strip_prefix("rediss+cluster://") {
                cluster = true;
                format!("rediss://{rest}")
            } else {
                part.to_string()
            };
            let host = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://"));
            if host.is_none_or(str::is_empty) {
                return Err(RedisConfigError::Scheme(part.to_string()));
            }
            nodes.push(url);
        }
        match nodes.len() {
            0 => Err(RedisConfigError::Scheme(raw.to_string())),
            1 if !cluster => Ok(Self::Single(nodes.remove(0))),
            _ => Ok(Self::Cluster(nodes)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub server: RedisServer,
    /// Every key starts with `<prefix>:` (`HERALD_REDIS_PREFIX`).
    pub prefix: String,
    /// Most entries an inbox keeps (`HERALD_INBOX_CAP`).
    pub cap: InboxCap,
}

impl RedisConfig {
    pub const DEFAULT_PREFIX: &str = "herald";

    pub fn new(url: &str, prefix: &str, cap: InboxCap) -> Result<Self, RedisConfigError> {
        let bad = prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}', ' ', '\n', '\t']);
        if bad {
            return Err(RedisConfigError::Prefix(prefix.to_string()));
        }
        Ok(Self { server: RedisServer::parse(url)?, prefix: prefix.to_string(), cap })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_server_several_or_a_cluster_scheme_are_a_cluster() {
        assert_eq!(
            RedisServer::parse("redis://127.0.0.1:6379"),
            Ok(RedisServer::Single("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            RedisServer::parse("redis://a:7000, redis://b:7001"),
            Ok(RedisServer::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()]))
        );
        assert_eq!(
            RedisServer::parse("rediss+cluster://user:pw@a:7000"),
            Ok(RedisServer::Cluster(vec!["rediss://user:pw@a:7000".into()]))
        );
        assert!(
            matches!(RedisServer::parse("redis://a:1,http://b"), Err(RedisConfigError::Scheme(p)) if p == "http://b")
        );
        assert!(RedisServer::parse("redis://").is_err());
        assert!(RedisServer::parse(" , ").is_err());
        assert!(RedisConfig::new("redis://a", "x{y}", InboxCap::default()).is_err(), "a brace would change the slot");
        assert!(RedisConfig::new("redis://a", "", InboxCap::default()).is_err());
    }
}
