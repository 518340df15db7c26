//! One push consumer per subscribed group, turned into the port's pull: the client's listener
//! parks each message in a hand-off (one queue per topic, so `pull` can serve them in the
//! subscription's priority order) and blocks its client thread until the holder acks or retries
//! it, or the lease runs out. The listener's answer is the broker's: `ConsumeSuccess` moves the
//! offset past the message, `ReconsumeLater` has the client send it back to the group's retry
//! topic at the broker's own delay.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheetah_string::CheetahString;
use herald_domain::ports::{Delivery, QueueMessage};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::{MessageConst, MessageTrait};
use tokio::sync::Notify;

use crate::{DLQ_PREFIX, KEY_PROPERTY};

/// What the holder decided about a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// Done with it (acked, or already sent back for a retry by the holder).
    Consumed,
    /// Send it back at the broker's delay.
    Retry,
}

/// Where a message sits on the broker: the queue it was read from and its offset there.
#[derive(Debug, Clone)]
pub(crate) struct Position {
    pub(crate) queue: MessageQueue,
    pub(crate) offset: i64,
}

/// A message someone pulled and has not answered yet.
pub(crate) struct Held {
    answer: mpsc::Sender<Outcome>,
    pub(crate) position: Position,
    /// As the broker sent it: what a retry sends back.
    pub(crate) message: MessageExt,
    /// The topic it is served on.
    topic: String,
}

impl Held {
    /// Answers the listener; false when it stopped waiting (the lease is over, the broker
    /// redelivers).
    pub(crate) fn answer(self, outcome: Outcome) -> bool {
        self.answer.send(outcome).is_ok()
    }
}

struct Parked {
    delivery: Delivery,
    held: Held,
}

#[derive(Default)]
struct State {
    /// Messages the client handed over and no one pulled yet, per topic.
    waiting: HashMap<String, VecDeque<Parked>>,
    /// Pulled, not yet answered, by receipt.
    held: HashMap<String, Held>,
    next_receipt: u64,
}

/// The hand-off between the client's listener threads and the port's callers.
pub(crate) struct HandOff {
    /// Names this process's receipts, so another holder's receipt never matches one of ours.
    instance: String,
    lease: Duration,
    state: Mutex<State>,
    arrived: Notify,
}

impl HandOff {
    pub(crate) fn new(instance: String, lease: Duration) -> Arc<Self> {
        Arc::new(Self { instance, lease, state: Mutex::default(), arrived: Notify::new() })
    }

    /// Up to `max` parked messages, earlier topics first.
    pub(crate) fn take(&self, topics: &[String], max: usize) -> Vec<Delivery> {
        let mut state = self.state.lock().expect("hand-off lock");
        let mut out = Vec::new();
        for topic in topics {
            while out.len() < max {
                let Some(parked) = state.waiting.get_mut(topic).and_then(VecDeque::pop_front) else { break };
                state.held.insert(parked.delivery.receipt.clone(), parked.held);
                out.push(parked.delivery);
            }
        }
        out
    }

    /// Per topic, how many of its messages this process has (parked or held), and whether some are
    /// parked (could be handed out now).
    pub(crate) fn in_hand(&self, topics: &[String]) -> Vec<(u64, bool)> {
        let state = self.state.lock().expect("hand-off lock");
        topics
            .iter()
            .map(|topic| {
                let parked = state.waiting.get(topic).map_or(0, VecDeque::len);
                let held = state.held.values().filter(|h| h.topic == *topic).count();
                ((parked + held) as u64, parked > 0)
            })
            .collect()
    }

    /// Waits until the listener parks something, or `wait` passes.
    pub(crate) async fn wait(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.arrived.notified()).await;
    }

    /// The held message a receipt names, no longer held; `None` when its lease ended (or it is
    /// not ours).
    pub(crate) fn release(&self, receipt: &str) -> Option<Held> {
        self.state.lock().expect("hand-off lock").held.remove(receipt)
    }

    /// Parks a message read from `queue` until someone pulls it; returns its receipt and where
    /// its answer arrives.
    fn park(&self, message: &MessageExt, queue: &MessageQueue) -> (String, mpsc::Receiver<Outcome>) {
        let (answer, outcome) = mpsc::channel();
        let property = |name: &'static str| message.property(&CheetahString::from_static_str(name));
        // A dead letter is served on the topic it was first published to, given up.
        let (topic, given_up) = match message.topic().strip_prefix(DLQ_PREFIX) {
            Some(_) => (property(MessageConst::PROPERTY_RETRY_TOPIC).unwrap_or_default().to_string(), true),
            None => (message.topic().to_string(), false),
        };
        let mut state = self.state.lock().expect("hand-off lock");
        state.next_receipt += 1;
        let receipt = format!("{}/{}", self.instance, state.next_receipt);
        let delivery = Delivery {
            receipt: receipt.clone(),
            attempt: message.reconsume_times().max(0) as u32 + 1,
            message: QueueMessage {
                topic: topic.clone(),
                tag: message.get_tags().map(|t| t.to_string()).unwrap_or_default(),
                key: property(KEY_PROPERTY).map(|k| k.to_string()).unwrap_or_default(),
                body: message.body().map(|b| b.to_vec()).unwrap_or_default(),
            },
            given_up,
        };
        let position = Position { queue: queue.clone(), offset: message.queue_offset() };
        let parked =
            Parked { delivery, held: Held { answer, position, message: message.clone(), topic: topic.clone() } };
        let waiting = state.waiting.entry(topic).or_default();
        // Listener threads park concurrently: keep each broker queue's messages in offset order.
        let at = waiting
            .iter()
            .rposition(|p| p.held.position.queue != *queue || p.held.position.offset < parked.held.position.offset)
            .map_or(0, |i| i + 1);
        waiting.insert(at, parked);
        drop(state);
        self.arrived.notify_waiters();
        (receipt, outcome)
    }

    /// The lease of `receipt` ended: whether parked or held, it is no one's any more.
    fn expire(&self, receipt: &str) {
        let mut state = self.state.lock().expect("hand-off lock");
        state.held.remove(receipt);
        for queue in state.waiting.values_mut() {
            queue.retain(|p| p.delivery.receipt != receipt);
        }
    }
}

/// The client's listener: parks each message and waits for the holder's answer.
pub(crate) struct Listener(pub(crate) Arc<HandOff>);

impl MessageListenerConcurrently for Listener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        // The consumer is configured with batches of one; answer a larger batch as its worst.
        let mut status = ConsumeConcurrentlyStatus::ConsumeSuccess;
        for message in msgs {
            let (receipt, outcome) = self.0.park(message, context.get_message_queue());
            match outcome.recv_timeout(self.0.lease) {
                Ok(Outcome::Consumed) => {}
                Ok(Outcome::Retry) => status = ConsumeConcurrentlyStatus::ReconsumeLater,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.0.expire(&receipt);
                    status = ConsumeConcurrentlyStatus::ReconsumeLater;
                }
            }
        }
        Ok(status)
    }
}
