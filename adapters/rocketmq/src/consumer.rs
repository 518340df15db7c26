//! One push consumer per subscribed group, turned into the port's pull: the client's listener
//! parks each message in a hand-off (one queue per topic, so `pull` can serve them in the
//! subscription's priority order) and blocks its client thread until the holder acks or retries
//! it, or the lease runs out. The listener's answer is the broker's: `ConsumeSuccess` commits the
//! offset, `ReconsumeLater` sends the message back to the group's retry topic.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheetah_string::CheetahString;
use herald_domain::ports::{Delivery, QueueMessage};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MessageListenerConcurrently,
};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use tokio::sync::Notify;

use crate::KEY_PROPERTY;

/// What the holder decided about a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Ack,
    Retry,
}

/// Where a message sits on the broker: its queue and offset there.
#[derive(Debug, Clone)]
pub(crate) struct Position {
    pub(crate) queue: MessageQueue,
    pub(crate) offset: i64,
}

struct Parked {
    delivery: Delivery,
    answer: mpsc::Sender<Outcome>,
    position: Position,
}

#[derive(Default)]
struct State {
    /// Messages the client handed over and no one pulled yet, per topic.
    waiting: HashMap<String, VecDeque<Parked>>,
    /// Pulled, not yet answered: receipt → where the answer goes.
    held: HashMap<String, (mpsc::Sender<Outcome>, Position)>,
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
                state.held.insert(parked.delivery.receipt.clone(), (parked.answer, parked.position));
                out.push(parked.delivery);
            }
        }
        out
    }

    /// Waits until the listener parks something, or `wait` passes.
    pub(crate) async fn wait(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.arrived.notified()).await;
    }

    /// Answers the message a receipt names and says where it was; a receipt whose lease ended
    /// (or that is not ours) does nothing.
    pub(crate) fn answer(&self, receipt: &str, outcome: Outcome) -> Option<Position> {
        let (answer, position) = self.state.lock().expect("hand-off lock").held.remove(receipt)?;
        // Refused only when the listener stopped waiting: the lease is over, the broker redelivers.
        answer.send(outcome).ok().map(|()| position)
    }

    /// Parks a message until someone pulls it; returns its receipt and where its answer arrives.
    fn park(&self, message: &MessageExt) -> (String, mpsc::Receiver<Outcome>) {
        let (answer, outcome) = mpsc::channel();
        let key = message.property(&CheetahString::from_static_str(KEY_PROPERTY)).map(|k| k.to_string());
        let mut state = self.state.lock().expect("hand-off lock");
        state.next_receipt += 1;
        let receipt = format!("{}/{}", self.instance, state.next_receipt);
        let delivery = Delivery {
            receipt: receipt.clone(),
            attempt: message.reconsume_times().max(0) as u32 + 1,
            message: QueueMessage {
                topic: message.topic().to_string(),
                tag: message.get_tags().map(|t| t.to_string()).unwrap_or_default(),
                key: key.unwrap_or_default(),
                body: message.body().map(|b| b.to_vec()).unwrap_or_default(),
            },
        };
        let topic = delivery.message.topic.clone();
        let position = Position {
            queue: MessageQueue::from_parts(message.topic().clone(), message.broker_name(), message.queue_id()),
            offset: message.queue_offset(),
        };
        state.waiting.entry(topic).or_default().push_back(Parked { delivery, answer, position });
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
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        // The consumer is configured with batches of one; answer a larger batch as its worst.
        let mut status = ConsumeConcurrentlyStatus::ConsumeSuccess;
        for message in msgs {
            let (receipt, outcome) = self.0.park(message);
            match outcome.recv_timeout(self.0.lease) {
                Ok(Outcome::Ack) => {}
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
