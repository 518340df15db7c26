//! What a user sets for the embedded search index.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TantivyConfig {
    /// The directory holding the index in use (and, while one runs, a rebuild beside it).
    pub dir: PathBuf,
}

impl TantivyConfig {
    /// `search/` in Herald's data directory.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("search") }
    }
}
