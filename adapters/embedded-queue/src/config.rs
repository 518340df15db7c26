//! What a user sets for the embedded queue.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedQueueConfig {
    /// The queue's file.
    pub path: PathBuf,
    /// How long a pulled message stays hidden before it is handed out again (as a RocketMQ listener
    /// that runs over its timeout is redelivered).
    pub lease: Duration,
    /// A consuming handle silent this long is dead (killed, crashed): its leases are void and its
    /// messages go to whoever pulls next. Short, so a restarted consumer resumes within seconds;
    /// several times the heartbeat (1 s), so a busy live one is never taken for dead.
    pub holder_stale_after: Duration,
}

impl EmbeddedQueueConfig {
    /// `queue.db` in Herald's data directory, a 30 s lease, holders dead after 4 s of silence.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("queue.db"),
            lease: Duration::from_secs(30),
            holder_stale_after: Duration::from_secs(4),
        }
    }
}
