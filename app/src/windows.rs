//! Hints for validity windows opening or closing: an entry appears or vanishes by time alone, with
//! nothing written anywhere, so nothing else would tell the apps. Every API process looks about
//! every second for the notifications whose window opened or closed since its last look and tells
//! the apps listening to it — its hub only, since every other API process looks for itself.

use std::time::Duration;

use herald_domain::ReceiverKind;
use herald_domain::ports::InboxHints as _;
use tokio_util::sync::CancellationToken;

use crate::Herald;

/// How often the watch looks: a window's hint comes at most about this late.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Notifications read per look; when as many edge at once, every listener here is told to fetch
/// instead (never missing one).
const EDGES_PER_LOOK: usize = 1_000;

impl Herald {
    /// Until `stop`, hints the apps listening in this process whenever a window of a notification
    /// being or already sent opens or closes.
    pub async fn watch_windows(&self, stop: CancellationToken) {
        let mut after = self.clock.now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
            let until = self.clock.now();
            match self.ports.notifications.window_edges(after, until, EDGES_PER_LOOK).await {
                Ok(edging) if edging.len() >= EDGES_PER_LOOK => {
                    for kind in ReceiverKind::ALL {
                        self.hub.everyone(kind);
                    }
                }
                Ok(edging) => {
                    for n in &edging {
                        self.hint_holders(n, &*self.hub);
                    }
                }
                Err(e) => {
                    // The next look covers this one's interval too.
                    tracing::debug!(error = %e, "looking for validity windows that opened or closed failed");
                    continue;
                }
            }
            after = until;
        }
    }
}
