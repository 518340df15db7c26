//! What a user sets for the embedded inbox store.

use std::path::{Path, PathBuf};

use herald_domain::InboxCap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedInboxConfig {
    /// The inbox store's file.
    pub path: PathBuf,
    /// Most entries an inbox keeps (`HERALD_INBOX_CAP`).
    pub cap: InboxCap,
}

impl EmbeddedInboxConfig {
    /// `inbox.db` in Herald's data directory, with inboxes of at most `cap` entries.
    pub fn in_data_dir(data_dir: &Path, cap: InboxCap) -> Self {
        Self { path: data_dir.join("inbox.db"), cap }
    }
}
