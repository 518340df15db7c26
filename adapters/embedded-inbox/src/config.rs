//! What a user sets for the embedded inbox store.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedInboxConfig {
    /// The inbox store's file.
    pub path: PathBuf,
}

impl EmbeddedInboxConfig {
    /// `inbox.db` in Herald's data directory.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self { path: data_dir.join("inbox.db") }
    }
}
