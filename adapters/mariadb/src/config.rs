//! What a user sets for the SQL truth on MariaDB / MySQL.

/// Where the database is, and how many connections this process keeps to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaDbConfig {
    /// `mysql://user:password@host:port/database` (`mariadb://` is read as `mysql://`).
    pub url: String,
    /// Connections of this process's main pool (the console's are apart: `ReadLimits`).
    pub connections: u32,
}

impl MariaDbConfig {
    /// The server at `url`, with a pool sized for one Herald process running every role.
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), connections: 16 }
    }
}
