//! The inbox hints' hub: which apps are listening in this process, and the recent changes, so a
//! reconnecting app (`Last-Event-ID`) learns whether it missed one. It is also the in-process
//! adapter of the `InboxHints` port: the consumers' deliveries and the apps' reads in this process
//! tell it directly. A cross-process adapter (Redis pub/sub) would publish instead and feed every
//! process's hub from its subscription.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use herald_domain::ports::InboxHints;
use herald_domain::{ReceiverId, ReceiverKind, ReceiverRef};
use tokio::sync::watch;

/// Changes remembered for reconnections; an app away for more than this many inbox changes (of
/// anyone's) is told to fetch, as when it cannot be told.
const REMEMBERED: usize = 100_000;

/// A position in the hints, as an SSE event id: `<epoch>-<sequence>`. The epoch (the hub's start
/// time) tells an id from an earlier run or another process, which says nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintId {
    epoch: u64,
    seq: u64,
}

impl HintId {
    pub fn encode(&self) -> String {
        format!("{}-{}", self.epoch, self.seq)
    }

    fn decode(raw: &str) -> Option<Self> {
        let (epoch, seq) = raw.trim().split_once('-')?;
        Some(Self { epoch: epoch.parse().ok()?, seq: seq.parse().ok()? })
    }
}

pub struct InboxHub {
    epoch: u64,
    remembered: usize,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// One per call of `changed`.
    seq: u64,
    /// One channel per receiver with a listener, holding the sequence of its last change.
    listening: HashMap<ReceiverRef, watch::Sender<u64>>,
    /// The last change of each receiver among the `remembered` latest, and those in order.
    last_change: HashMap<ReceiverRef, u64>,
    recent: VecDeque<(u64, ReceiverRef)>,
    /// Changes up to this sequence may have been forgotten.
    forgotten_up_to: u64,
}

impl Default for InboxHub {
    fn default() -> Self {
        Self::new()
    }
}

impl InboxHub {
    pub fn new() -> Self {
        Self::remembering(REMEMBERED)
    }

    fn remembering(remembered: usize) -> Self {
        let epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        Self { epoch, remembered: remembered.max(1), state: Mutex::new(HubState::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self, seq: u64) -> HintId {
        HintId { epoch: self.epoch, seq }
    }

    /// Starts listening for `receiver`'s hints. With the id of the last event an earlier
    /// connection got, the first `next` answers at once if a change came since — or if the hub
    /// cannot tell (another run's id, one too old, one that does not parse).
    pub fn listen(self: &Arc<Self>, receiver: ReceiverRef, last_event_id: Option<&str>) -> HintListener {
        let mut state = self.state();
        let missed = last_event_id.is_some_and(|raw| match HintId::decode(raw) {
            Some(id) if id.epoch == self.epoch && id.seq >= state.forgotten_up_to => {
                state.last_change.get(&receiver).is_some_and(|&seq| seq > id.seq)
            }
            _ => true,
        });
        let current = state.seq;
        let mut changes = state.listening.entry(receiver.clone()).or_insert_with(|| watch::channel(0).0).subscribe();
        changes.mark_unchanged();
        drop(state);
        HintListener { hub: self.clone(), receiver, changes, missed, opened_at: self.id(current) }
    }

    /// Receivers listening in this process.
    pub fn listening(&self) -> usize {
        self.state().listening.len()
    }
}

impl InboxHints for InboxHub {
    fn changed(&self, kind: ReceiverKind, receivers: &[ReceiverId]) {
        if receivers.is_empty() {
            return;
        }
        let mut state = self.state();
        state.seq += 1;
        let seq = state.seq;
        for id in receivers {
            let receiver = ReceiverRef { kind, id: id.clone() };
            if let Some(listener) = state.listening.get(&receiver) {
                listener.send_replace(seq);
            }
            state.last_change.insert(receiver.clone(), seq);
            state.recent.push_back((seq, receiver));
        }
        while state.recent.len() > self.remembered {
            let Some((old, receiver)) = state.recent.pop_front() else { break };
            if state.last_change.get(&receiver) == Some(&old) {
                state.last_change.remove(&receiver);
            }
            state.forgotten_up_to = old;
        }
    }
}

/// One connection's hints for one receiver; dropping it stops listening.
pub struct HintListener {
    hub: Arc<InboxHub>,
    receiver: ReceiverRef,
    changes: watch::Receiver<u64>,
    /// A change was missed while disconnected: the first `next` answers at once.
    missed: bool,
    opened_at: HintId,
}

impl HintListener {
    /// Where the hints stood when listening began: the stream's first event id.
    pub fn opened_at(&self) -> HintId {
        self.opened_at
    }

    /// Waits for the next change of this receiver's inbox (changes while the caller was busy
    /// collapse into one) and answers its id.
    pub async fn next(&mut self) -> HintId {
        if std::mem::take(&mut self.missed) {
            return self.opened_at;
        }
        if self.changes.changed().await.is_err() {
            // The hub keeps the channel while anyone listens, so this never ends; wait as such.
            std::future::pending::<()>().await;
        }
        self.hub.id(*self.changes.borrow_and_update())
    }
}

impl Drop for HintListener {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        // This listener's receiver still counts: it is the last one when the count is 1.
        if state.listening.get(&self.receiver).is_some_and(|tx| tx.receiver_count() <= 1) {
            state.listening.remove(&self.receiver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rider(id: &str) -> ReceiverRef {
        ReceiverRef { kind: ReceiverKind::Rider, id: ReceiverId::parse("id", id).unwrap() }
    }

    async fn ready(listener: &mut HintListener) -> Option<HintId> {
        tokio::time::timeout(std::time::Duration::from_millis(50), listener.next()).await.ok()
    }

    #[tokio::test]
    async fn a_change_reaches_its_listeners_only() {
        let hub = Arc::new(InboxHub::new());
        let (mut a, mut b) = (hub.listen(rider("a"), None), hub.listen(rider("b"), None));
        hub.changed(ReceiverKind::Rider, &[rider("a").id]);
        hub.changed(ReceiverKind::Merchant, &[rider("b").id]);
        assert!(ready(&mut a).await.is_some());
        assert!(ready(&mut a).await.is_none(), "one change, one hint");
        assert!(ready(&mut b).await.is_none(), "a merchant's change is not a rider's");
        drop((a, b));
        assert_eq!(hub.listening(), 0, "a closed connection stops listening");
    }

    #[tokio::test]
    async fn a_reconnection_learns_what_it_missed() {
        let hub = Arc::new(InboxHub::remembering(3));
        let first = hub.listen(rider("a"), None);
        let seen = first.opened_at().encode();
        drop(first);
        let mut again = hub.listen(rider("a"), Some(&seen));
        assert!(ready(&mut again).await.is_none(), "nothing changed since");
        drop(again);
        hub.changed(ReceiverKind::Rider, &[rider("a").id]);
        let mut again = hub.listen(rider("a"), Some(&seen));
        let missed = ready(&mut again).await.expect("missed one");
        hub.changed(ReceiverKind::Rider, &[rider("b").id, rider("c").id, rider("d").id]);
        let mut caught_up = hub.listen(rider("a"), Some(&missed.encode()));
        assert!(ready(&mut caught_up).await.is_none(), "it had seen a's change, and nothing of a's came since");
        let mut later = hub.listen(rider("a"), Some(&seen));
        assert!(ready(&mut later).await.is_some(), "a's change was forgotten: it cannot tell, so it hints");
        let mut stranger = hub.listen(rider("a"), Some("1-1"));
        assert!(ready(&mut stranger).await.is_some(), "another run's id says nothing");
        let mut garbage = hub.listen(rider("a"), Some("x"));
        assert!(ready(&mut garbage).await.is_some());
    }
}
