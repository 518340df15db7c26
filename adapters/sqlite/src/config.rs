//! What a user sets for the SQL truth on SQLite.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The database file (created if missing, readable by its owner only).
    pub path: PathBuf,
}

impl SqliteConfig {
    /// `herald.db` in Herald's data directory.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self { path: data_dir.join("herald.db") }
    }
}
