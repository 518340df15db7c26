//! The inbox hints' hub: which apps are listening in this process, and for those that listen or
//! recently did, the sequence of their inbox's last change, so a reconnecting app
//! (`Last-Event-ID`) learns whether it missed one. It is also the in-process adapter of the
//! `InboxHints` port: the consumers' deliveries and the apps' reads in this process tell it
//! directly. A cross-process adapter (Redis pub/sub) would publish instead and feed every
//! process's hub from its subscription.
//!
//! A broadcast tells the hub about millions of receivers, almost none of them listening, so a
//! change of a receiver the hub does not track costs one lookup and nothing is kept for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herald_domain::ports::InboxHints;
use herald_domain::{ReceiverId, ReceiverKind, ReceiverRef};
use tokio::sync::watch;

/// How long the hub keeps tracking a receiver after its last stream closed, so that a reconnection
/// can tell whether it missed a change. One that comes back later is told to fetch, as when the hub
/// cannot tell.
const RECONNECT_WINDOW: Duration = Duration::from_secs(600);

/// At most this many departures (a receiver's last stream closing) are remembered, the latest;
/// a receiver whose departure is forgotten is no longer tracked.
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
    reconnect_window: Duration,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// One per call of `changed`.
    seq: u64,
    /// The receivers listening or recently listening, by kind (looked up by id without a copy).
    tracked: HashMap<ReceiverKind, HashMap<ReceiverId, Tracked>>,
    /// Receivers with at least one stream open.
    listening: usize,
    /// When each tracked receiver's last stream closed, oldest first (a receiver that came back
    /// and left again has a newer record; the older one no longer matches its `left`).
    left: VecDeque<(Instant, ReceiverRef)>,
}

struct Tracked {
    /// Tracking began after this sequence: the receiver's changes up to it are unknown.
    since: u64,
    /// Holds the sequence of the receiver's last change since `since` (0: none); its streams
    /// subscribe to it.
    changes: watch::Sender<u64>,
    /// When its last stream closed, while none is open.
    left: Option<Instant>,
}

impl HubState {
    /// Stops tracking receivers that left longer ago than the window, or too many receivers ago.
    fn forget_departed(&mut self, now: Instant, window: Duration, remembered: usize) {
        while let Some((at, _)) = self.left.front() {
            if now.duration_since(*at) < window && self.left.len() <= remembered {
                break;
            }
            let Some((at, receiver)) = self.left.pop_front() else { break };
            let Some(of_kind) = self.tracked.get_mut(&receiver.kind) else { continue };
            if of_kind.get(&receiver.id).is_some_and(|tracked| tracked.left == Some(at)) {
                of_kind.remove(&receiver.id);
            }
        }
    }
}

impl Default for InboxHub {
    fn default() -> Self {
        Self::new()
    }
}

impl InboxHub {
    pub fn new() -> Self {
        Self::remembering(REMEMBERED, RECONNECT_WINDOW)
    }

    fn remembering(remembered: usize, reconnect_window: Duration) -> Self {
        let epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        Self { epoch, remembered, reconnect_window, state: Mutex::new(HubState::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self, seq: u64) -> HintId {
        HintId { epoch: self.epoch, seq }
    }

    /// Starts listening for `receiver`'s hints. With the id of the last event an earlier
    /// connection got, the first `next` answers at once if a change came since — or if the hub
    /// cannot tell (another run's id, one from before the hub tracked this receiver, one that does
    /// not parse).
    pub fn listen(self: &Arc<Self>, receiver: ReceiverRef, last_event_id: Option<&str>) -> HintListener {
        let mut state = self.state();
        state.forget_departed(Instant::now(), self.reconnect_window, self.remembered);
        let current = state.seq;
        let tracked = state
            .tracked
            .entry(receiver.kind)
            .or_default()
            .entry(receiver.id.clone())
            .or_insert_with(|| Tracked { since: current, changes: watch::channel(0).0, left: None });
        let missed = last_event_id.is_some_and(|raw| match HintId::decode(raw) {
            Some(id) if id.epoch == self.epoch && id.seq >= tracked.since => *tracked.changes.borrow() > id.seq,
            _ => true,
        });
        let first_stream = tracked.changes.receiver_count() == 0;
        tracked.left = None;
        let mut changes = tracked.changes.subscribe();
        changes.mark_unchanged();
        if first_stream {
            state.listening += 1;
        }
        drop(state);
        HintListener { hub: self.clone(), receiver, changes, missed, opened_at: self.id(current) }
    }

    /// Receivers listening in this process.
    pub fn listening(&self) -> usize {
        self.state().listening
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
        let Some(tracked) = state.tracked.get(&kind) else { return };
        if tracked.is_empty() {
            return;
        }
        for id in receivers {
            if let Some(tracked) = tracked.get(id) {
                tracked.changes.send_replace(seq);
            }
        }
    }

    fn everyone(&self, kind: ReceiverKind) {
        let mut state = self.state();
        state.seq += 1;
        let seq = state.seq;
        for tracked in state.tracked.get(&kind).into_iter().flat_map(HashMap::values) {
            tracked.changes.send_replace(seq);
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
        let hub = &self.hub;
        let mut state = hub.state();
        let now = Instant::now();
        let Some(tracked) =
            state.tracked.get_mut(&self.receiver.kind).and_then(|of_kind| of_kind.get_mut(&self.receiver.id))
        else {
            return;
        };
        // This listener's receiver still counts: it is the last one when the count is 1.
        if tracked.changes.receiver_count() <= 1 {
            tracked.left = Some(now);
            state.listening -= 1;
            state.left.push_back((now, self.receiver.clone()));
            state.forget_departed(now, hub.reconnect_window, hub.remembered);
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
        tokio::time::timeout(Duration::from_millis(50), listener.next()).await.ok()
    }

    /// Receivers the hub keeps anything for.
    fn tracked(hub: &InboxHub) -> usize {
        hub.state().tracked.values().map(HashMap::len).sum()
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
        let again = hub.listen(rider("a"), None);
        assert_eq!(hub.listening(), 2, "two streams of one receiver count once");
        drop((a, b, again));
        assert_eq!(hub.listening(), 0, "a closed connection stops listening");
    }

    #[tokio::test]
    async fn nothing_is_kept_for_receivers_that_never_listened() {
        let hub = Arc::new(InboxHub::new());
        let listener = hub.listen(rider("a"), None);
        let broadcast: Vec<ReceiverId> = (0..1_000).map(|n| rider(&format!("r{n}")).id).collect();
        hub.changed(ReceiverKind::Rider, &broadcast);
        hub.changed(ReceiverKind::Merchant, &broadcast);
        assert_eq!(tracked(&hub), 1, "only the listening receiver is tracked");
        drop(listener);
        assert_eq!(tracked(&hub), 1, "one that just left is tracked for its reconnection");
    }

    #[tokio::test]
    async fn everyone_reaches_each_listener_of_the_kind_and_those_that_just_left() {
        let hub = Arc::new(InboxHub::new());
        let (mut a, mut b) = (hub.listen(rider("a"), None), hub.listen(rider("b"), None));
        let left = hub.listen(rider("c"), None);
        let seen = left.opened_at().encode();
        drop(left);
        hub.everyone(ReceiverKind::Merchant);
        assert!(ready(&mut a).await.is_none(), "the merchants' hint is not the riders'");
        hub.everyone(ReceiverKind::Rider);
        assert!(ready(&mut a).await.is_some() && ready(&mut b).await.is_some());
        let mut back = hub.listen(rider("c"), Some(&seen));
        assert!(ready(&mut back).await.is_some(), "it left before the hint, so it learns of it on return");
    }

    #[tokio::test]
    async fn a_reconnection_learns_what_it_missed() {
        let hub = Arc::new(InboxHub::remembering(3, RECONNECT_WINDOW));
        let first = hub.listen(rider("a"), None);
        let seen = first.opened_at().encode();
        drop(first);
        let mut again = hub.listen(rider("a"), Some(&seen));
        assert!(ready(&mut again).await.is_none(), "nothing changed since");
        drop(again);
        hub.changed(ReceiverKind::Rider, &[rider("a").id]);
        let mut again = hub.listen(rider("a"), Some(&seen));
        let missed = ready(&mut again).await.expect("missed one");
        drop(again);
        hub.changed(ReceiverKind::Rider, &[rider("b").id, rider("c").id, rider("d").id]);
        let caught_up = hub.listen(rider("a"), Some(&missed.encode()));
        assert!(!caught_up.missed, "it had seen a's change, and nothing of a's came since");
        drop(caught_up);
        for other in ["b", "c", "d"] {
            drop(hub.listen(rider(other), None));
        }
        let mut later = hub.listen(rider("a"), Some(&missed.encode()));
        assert!(ready(&mut later).await.is_some(), "three left after a: a was forgotten, so it hints");
        let mut stranger = hub.listen(rider("a"), Some("1-1"));
        assert!(ready(&mut stranger).await.is_some(), "another run's id says nothing");
        let mut garbage = hub.listen(rider("a"), Some("x"));
        assert!(ready(&mut garbage).await.is_some());
    }

    #[tokio::test]
    async fn a_receiver_away_longer_than_the_window_is_told_to_fetch() {
        let hub = Arc::new(InboxHub::remembering(REMEMBERED, Duration::ZERO));
        let first = hub.listen(rider("a"), None);
        let seen = first.opened_at().encode();
        drop(first);
        assert_eq!(tracked(&hub), 0, "left, and the window is over");
        hub.changed(ReceiverKind::Rider, &[rider("a").id]);
        let mut again = hub.listen(rider("a"), Some(&seen));
        assert!(ready(&mut again).await.is_some(), "the hub cannot tell, so it hints");
    }
}
