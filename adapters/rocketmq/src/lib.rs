//! The `Queue` port on a RocketMQ broker (rocketmq-rust 1.0.0 client).
//!
//! How the pull-shaped port maps onto the client: one clustering-mode push consumer per group a
//! process subscribes (`subscribe`), whose listener hands each message to `pull` through an
//! in-process hand-off (see `consumer`) and blocks until the holder answers:
//!
//! - `ack` answers `ConsumeSuccess` (the client moves the group's offset) and commits that offset
//!   to the broker at once, so an ack survives the process; `retry_later` answers
//!   `ReconsumeLater`: the client sends the message back and the broker redelivers it, with the
//!   next attempt number, after its delay level (+10 s, +30 s, +1 min, …; the port's `delay` is not
//!   the broker's) and after the group's `maxReconsumeTimes` (16) into `%DLQ%<group>`.
//! - the lease is the listener's wait: a message not answered within it goes back as
//!   `ReconsumeLater` and its receipt is void. A holder that dies never acked, so the group's
//!   offset never passed its messages: the next consumer the broker assigns the queue to reads
//!   them again (attempt unchanged — they were never sent back).
//! - receipts are `<client instance>/<n>`, meaningful only to the process that handed them out.
//! - priority: the hand-off keeps one queue per topic and `pull` drains them in the subscription's
//!   order, so among messages the client has fetched, earlier topics go first.
//! - topics are created by `declare` (4 queues each); a new group reads from each queue's first
//!   offset (`CONSUME_FROM_FIRST_OFFSET`), so what is published after `declare` and before any
//!   consumer runs is kept; tags are RocketMQ tags, subscribed as `rider||merchant`.
//! - `lag` is, per queue of the topics and of `%RETRY%<group>`, the broker's max offset minus the
//!   group's offset (this process's own when it consumes for the group, else the broker's).
//!
//! Pop consumption (RocketMQ 5's broker-side leases, receipts and `ChangeInvisibleTime`) would fit
//! the port more closely, but between this client and broker it does not work: an empty or
//! multi-queue pop fails to decode in the client, and the broker rejects its own pop checkpoint
//! timer messages ("timer delay exceeds the configured maximum"), so leases never expire.

// The client's types nest deeply enough to overflow the default limit when proving `Send`.
#![recursion_limit = "512"]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cheetah_string::CheetahString;
use herald_domain::ports::{Delivery, PortError, PortResult, Queue, QueueMessage, Subscription};
use rocketmq_client_rust::{
    ClientConfig, ClientError, ClientInstanceHandle, ClientRuntime, ClientRuntimeConfig, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, ReadOffsetType,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_observability::TelemetryHandle;
use rocketmq_protocol::protocol::header::namesrv::topic_operation_header::TopicRequestHeader;
use rocketmq_protocol::protocol::header::query_consumer_offset_request_header::QueryConsumerOffsetRequestHeader;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use rocketmq_transport::api::RpcRequestHeader;
use tokio::sync::{Mutex, RwLock};

mod consumer;

use consumer::{HandOff, Listener, Outcome};

const BACKEND: &str = "rocketmq";
/// The name server's answer for a topic it does not route.
const TOPIC_NOT_EXIST: i32 = 17;
/// The message property carrying the port's key intact (RocketMQ's KEYS splits on spaces).
pub(crate) const KEY_PROPERTY: &str = "HERALD_KEY";
/// The topic the broker creates new topics from (RocketMQ's default-topic template).
const TEMPLATE_TOPIC: &str = "TBW102";
/// A broker request that takes longer than this failed.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long an empty pull waits between looks at the hand-off.
const EMPTY_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How many 10 ms steps an ack waits for the client to move the offset past it.
const COMMIT_WAIT_STEPS: u32 = 20;
/// A batch sent in one request stays well under the broker's 4 MiB message limit.
const BATCH_BYTES: usize = 1 << 20;

/// Where and how the adapter reaches the broker.
#[derive(Debug, Clone)]
pub struct RocketMqSettings {
    /// `host:port` of the name server (`HERALD_MQ_NAMESRV`).
    pub namesrv: String,
    /// How long a pulled message stays its holder's before the broker hands it out again.
    pub lease: Duration,
    /// Queues per topic created by `declare` (consumers of one group share them).
    pub queues_per_topic: i32,
}

impl RocketMqSettings {
    pub fn new(namesrv: impl Into<String>) -> Self {
        Self { namesrv: namesrv.into(), lease: Duration::from_secs(60), queues_per_topic: 4 }
    }
}

#[derive(Debug, thiserror::Error)]
enum AdapterError {
    #[error("the topic {0} has no route on the name server")]
    NoRoute(String),
}

fn unavailable(source: impl std::fmt::Display) -> PortError {
    PortError::new(BACKEND, source.to_string())
}

/// The client's errors display only a generic public message; the broker's response code and where
/// the client raised it name the cause.
fn client_failure(e: ClientError) -> PortError {
    let code = e.broker_response_code();
    let at = e.into_error().location().to_string();
    PortError::new(BACKEND, format!("rocketmq client error (broker response code {code:?}) raised at {at}"))
}

/// A broker the queue can send to, as the name server routes a topic.
#[derive(Debug, Clone)]
struct Broker {
    name: CheetahString,
    addr: CheetahString,
    read_queues: i32,
}

/// A group this process consumes for.
struct Group {
    consumer: Mutex<DefaultMQPushConsumer>,
    hand_off: Arc<HandOff>,
}

impl Group {
    /// Commits the group's offset on the broker once the client has moved past `offset` (it does
    /// so as the listener returns), so an ack is durable at once rather than at the client's next
    /// periodic commit. Waits briefly: while an earlier message of the queue is still held, the
    /// offset cannot move past it, and the periodic commit takes over.
    async fn commit(&self, queue: &MessageQueue, offset: i64) {
        let Some(store) = self.consumer.lock().await.offset_store() else { return };
        for _ in 0..COMMIT_WAIT_STEPS {
            if store.read_offset(queue, ReadOffsetType::ReadFromMemory).await > offset {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.persist(queue).await;
    }

    /// The next offset this consumer will commit for `queue`, if it consumed there.
    async fn consumed_offset(&self, queue: &MessageQueue) -> Option<i64> {
        let store = self.consumer.lock().await.offset_store()?;
        let offset = store.read_offset(queue, ReadOffsetType::ReadFromMemory).await;
        (offset >= 0).then_some(offset)
    }
}

/// Distinguishes the client instances of one process (the broker tells consumers apart by it).
static INSTANCE: AtomicU64 = AtomicU64::new(0);

pub struct RocketMqQueue {
    settings: RocketMqSettings,
    client: ClientInstanceHandle,
    /// `create_topic` needs the producer exclusively; sends share it.
    producer: RwLock<DefaultMQProducer>,
    created_topics: Mutex<HashSet<String>>,
    /// The groups this process consumes for, each with its push consumer.
    groups: Mutex<HashMap<String, Arc<Group>>>,
    instance: String,
    client_runtime: Arc<ClientRuntime>,
    /// Last: the client's connections run on this runtime, so it outlives them.
    _owner: RuntimeOwner,
}

impl RocketMqQueue {
    /// Connects a producer and a pop client to the name server; fails (naming it) when it is not
    /// reachable or routes no broker.
    pub async fn connect(settings: RocketMqSettings) -> PortResult<Self> {
        let instance = format!("herald-{}-{}", std::process::id(), INSTANCE.fetch_add(1, Ordering::Relaxed));
        let owner = RuntimeOwner::plan(RuntimeConfig { thread_name: "herald-rocketmq".into(), ..Default::default() })
            .map_err(unavailable)?
            .build()
            .map_err(unavailable)?;
        let client_runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            TelemetryHandle::default(),
        )
        .map_err(unavailable)?;
        let mut config = ClientConfig::new();
        config.set_namesrv_addr(settings.namesrv.clone().into());
        config.set_instance_name(instance.clone().into());
        let client = ClientInstanceHandle::get_or_create(&client_runtime, 0, config, None).map_err(unavailable)?;
        client.start().await.map_err(client_failure)?;
        let mut producer = DefaultMQProducer::builder(client_runtime.clone())
            .producer_group(format!("herald-producer-{instance}"))
            .name_server_addr(settings.namesrv.clone())
            .build();
        producer.start().await.map_err(client_failure)?;
        let queue = Self {
            settings,
            client,
            producer: RwLock::new(producer),
            created_topics: Mutex::new(HashSet::new()),
            groups: Mutex::new(HashMap::new()),
            instance,
            client_runtime,
            _owner: owner,
        };
        queue.ping().await?;
        Ok(queue)
    }

    /// Leaves the group and closes the connections.
    pub async fn shutdown(&self) {
        for group in self.groups.lock().await.drain().map(|(_, g)| g) {
            group.consumer.lock().await.shutdown().await;
        }
        self.producer.write().await.shutdown().await;
        self.client.shutdown_owned().await;
        self.client_runtime.shutdown().await;
    }

    async fn route(&self, topic: &str) -> PortResult<Option<TopicRouteData>> {
        match self.client.topic_route(topic, REQUEST_TIMEOUT_MS).await {
            Ok(route) => Ok(route),
            // The name server answers an unknown topic with TOPIC_NOT_EXIST.
            Err(e) if e.broker_response_code() == Some(TOPIC_NOT_EXIST) => Ok(None),
            Err(e) => Err(client_failure(e)),
        }
    }

    /// The master brokers serving `topic`, with their read queue counts.
    async fn brokers(&self, topic: &str) -> PortResult<Vec<Broker>> {
        let route = self.route(topic).await?.ok_or_else(|| unavailable(AdapterError::NoRoute(topic.into())))?;
        let brokers: Vec<_> = route
            .broker_datas
            .iter()
            .filter_map(|b| {
                let addr = b.broker_addrs().get(&0)?.clone();
                let read_queues = route
                    .queue_datas
                    .iter()
                    .find(|q| q.broker_name() == b.broker_name())
                    .map_or(0, |q| q.read_queue_nums() as i32);
                Some(Broker { name: b.broker_name().clone(), addr, read_queues })
            })
            .collect();
        if brokers.is_empty() {
            return Err(unavailable(AdapterError::NoRoute(topic.into())));
        }
        Ok(brokers)
    }

    /// Creates each topic not routed yet (once per adapter), so a group's messages are kept
    /// from the first publish on.
    async fn ensure_topics(&self, topics: &[String]) -> PortResult<()> {
        let mut created = self.created_topics.lock().await;
        for topic in topics {
            if created.contains(topic) {
                continue;
            }
            if self.route(topic).await?.is_none() {
                self.producer
                    .write()
                    .await
                    .create_topic(TEMPLATE_TOPIC, topic, self.settings.queues_per_topic, HashMap::new())
                    .await
                    .map_err(client_failure)?;
                // The broker registers the new route with the name server asynchronously.
                for _ in 0..50 {
                    if self.route(topic).await?.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            created.insert(topic.clone());
        }
        Ok(())
    }

    async fn group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.lock().await.get(name).cloned()
    }

    /// Lag of one topic for the group: max offset minus consumed offset, per queue. The consumed
    /// offset is this process's own when it consumes for the group (the broker's copy trails it
    /// by the client's commit interval), else the broker's.
    async fn topic_lag(&self, group: &str, topic: &str, local: Option<&Group>) -> PortResult<u64> {
        let Some(_) = self.route(topic).await? else { return Ok(0) };
        let mut lag = 0;
        for broker in self.brokers(topic).await? {
            for queue_id in 0..broker.read_queues {
                let queue = MessageQueue::from_parts(topic, broker.name.clone(), queue_id);
                let max =
                    self.client.max_offset(&broker.addr, &queue, REQUEST_TIMEOUT_MS).await.map_err(client_failure)?;
                let header = QueryConsumerOffsetRequestHeader {
                    consumer_group: group.into(),
                    topic: topic.into(),
                    queue_id,
                    set_zero_if_not_found: None,
                    topic_request_header: Some(TopicRequestHeader {
                        lo: None,
                        rpc: Some(RpcRequestHeader { broker_name: Some(broker.name.clone()), ..Default::default() }),
                    }),
                };
                let consumed = match local {
                    Some(group) => group.consumed_offset(&queue).await,
                    None => None,
                };
                // A group that never consumed this queue starts at its first offset.
                let committed = match consumed {
                    Some(offset) => offset,
                    None => match self.client.query_consumer_offset(&broker.addr, header, REQUEST_TIMEOUT_MS).await {
                        Ok(offset) if offset >= 0 => offset,
                        _ => self
                            .client
                            .min_offset(&broker.addr, &queue, REQUEST_TIMEOUT_MS)
                            .await
                            .map_err(client_failure)?,
                    },
                };
                lag += (max - committed).max(0) as u64;
            }
        }
        Ok(lag)
    }
}

#[async_trait]
impl Queue for RocketMqQueue {
    /// The name server answers and routes at least one broker (the readiness check).
    async fn ping(&self) -> PortResult<()> {
        self.brokers(TEMPLATE_TOPIC).await.map(|_| ())
    }

    async fn publish(&self, messages: &[QueueMessage]) -> PortResult<()> {
        let mut by_topic: Vec<(&str, Vec<&QueueMessage>)> = Vec::new();
        for m in messages {
            match by_topic.iter_mut().find(|(t, _)| *t == m.topic) {
                Some((_, ms)) => ms.push(m),
                None => by_topic.push((&m.topic, vec![m])),
            }
        }
        let producer = self.producer.read().await;
        for (_, ms) in by_topic {
            // One batch per request: a batch goes to one queue, in order.
            let mut batch = Vec::new();
            let mut bytes = 0;
            for m in ms {
                if bytes + m.body.len() > BATCH_BYTES && !batch.is_empty() {
                    producer.send_batch(std::mem::take(&mut batch)).await.map_err(client_failure)?;
                    bytes = 0;
                }
                bytes += m.body.len();
                batch.push(to_message(m)?);
            }
            if !batch.is_empty() {
                producer.send_batch(batch).await.map_err(client_failure)?;
            }
        }
        Ok(())
    }

    async fn declare(&self, subscription: &Subscription) -> PortResult<()> {
        self.ensure_topics(&subscription.topics).await
    }

    async fn subscribe(&self, subscription: &Subscription) -> PortResult<()> {
        self.declare(subscription).await?;
        let mut groups = self.groups.lock().await;
        if groups.contains_key(&subscription.group) {
            return Ok(());
        }
        let hand_off = HandOff::new(self.instance.clone(), self.settings.lease);
        let mut consumer = DefaultMQPushConsumer::builder(self.client_runtime.clone())
            .consumer_group(subscription.group.clone())
            .name_server_addr(self.settings.namesrv.clone())
            .message_model(MessageModel::Clustering)
            // A new group reads what was published before it first ran (see `declare`).
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_message_batch_max_size(1)
            // The client's own redelivery of a message its listener still holds: after the lease.
            .consume_timeout(self.settings.lease.as_secs().div_ceil(60).max(1))
            .build();
        let tags = subscription.tags.join("||");
        for topic in &subscription.topics {
            consumer.subscribe(topic.as_str(), tags.as_str()).await.map_err(client_failure)?;
        }
        consumer.register_message_listener_concurrently(Listener(hand_off.clone()));
        consumer.start().await.map_err(client_failure)?;
        groups.insert(subscription.group.clone(), Arc::new(Group { consumer: Mutex::new(consumer), hand_off }));
        Ok(())
    }

    async fn pull(&self, subscription: &Subscription, max: usize, wait: Duration) -> PortResult<Vec<Delivery>> {
        let Some(group) = self.group(&subscription.group).await else { return Ok(Vec::new()) };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = group.hand_off.take(&subscription.topics, max);
            let now = tokio::time::Instant::now();
            if !got.is_empty() || max == 0 || now >= deadline {
                return Ok(got);
            }
            group.hand_off.wait(EMPTY_POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    async fn ack(&self, subscription: &Subscription, receipts: &[String]) -> PortResult<()> {
        let Some(group) = self.group(&subscription.group).await else { return Ok(()) };
        let mut queues: HashMap<MessageQueue, i64> = HashMap::new();
        for receipt in receipts {
            if let Some(p) = group.hand_off.answer(receipt, Outcome::Ack) {
                let highest = queues.entry(p.queue).or_insert(p.offset);
                *highest = (*highest).max(p.offset);
            }
        }
        for (queue, offset) in queues {
            group.commit(&queue, offset).await;
        }
        Ok(())
    }

    async fn retry_later(&self, subscription: &Subscription, receipt: &str, _delay: Duration) -> PortResult<()> {
        // The broker decides the delay: the group's next delay level (+10 s, +30 s, +1 min, …).
        if let Some(group) = self.group(&subscription.group).await {
            group.hand_off.answer(receipt, Outcome::Retry);
        }
        Ok(())
    }

    async fn lag(&self, subscription: &Subscription) -> PortResult<u64> {
        let local = self.group(&subscription.group).await;
        let mut lag = 0;
        for topic in &subscription.topics {
            lag += self.topic_lag(&subscription.group, topic, local.as_deref()).await?;
        }
        let retry = format!("%RETRY%{}", subscription.group);
        lag += self.topic_lag(&subscription.group, &retry, local.as_deref()).await?;
        Ok(lag)
    }
}

fn to_message(m: &QueueMessage) -> PortResult<Message> {
    Message::builder()
        .topic(m.topic.as_str())
        .tags(m.tag.as_str())
        .key(m.key.as_str())
        .body_slice(&m.body)
        .raw_property(KEY_PROPERTY, m.key.as_str())
        .map_err(unavailable)?
        .build()
        .map_err(unavailable)
}
