//! The `Queue` port on a RocketMQ broker (rocketmq-rust 1.0.0 client).
//!
//! How the pull-shaped port maps onto the client: one clustering-mode push consumer per group a
//! process subscribes (`subscribe`), whose listener hands each message to `pull` through an
//! in-process hand-off (see `consumer`) and blocks until the holder answers:
//!
//! - `ack` answers `ConsumeSuccess` (the client moves the group's offset) and commits that offset
//!   to the broker at once, awaiting the broker's answer, so an ack survives the process and
//!   every process's `lag` sees it; `retry_later` sends the message back itself at the broker
//!   delay level nearest above the port's `delay` (1 s, 5 s, 10 s, 30 s, 1 min, … 2 h), then
//!   answers `ConsumeSuccess`: the broker redelivers it from `%RETRY%<group>` with the next
//!   attempt number. Retries go on forever unless the settings give a limit; past it the broker
//!   moves the message to `%DLQ%<group>`, which the group's consumer also reads, handing each
//!   dead letter out once more as `given_up` (on the topic it was published to) so it is kept as
//!   a dead letter, never lost silently.
//! - the lease is the listener's wait: a message not answered within it goes back as
//!   `ReconsumeLater` and its receipt is void. A holder that dies never acked, so the group's
//!   offset never passed its messages: the next consumer the broker assigns the queue to reads
//!   them again (attempt unchanged — they were never sent back). While the broker moves a queue
//!   between live consumers (a consumer joins or leaves; every 20 s at most), what the old owner
//!   holds may be handed out by the new one too: at least once, as everywhere.
//! - receipts are `<client instance>/<n>`, meaningful only to the process that handed them out.
//! - priority: the hand-off keeps one queue per topic and `pull` drains them in the subscription's
//!   order, so among messages the client has fetched, earlier topics go first.
//! - topics are created by `declare` (4 queues each); a new group reads from each queue's first
//!   offset (`CONSUME_FROM_FIRST_OFFSET`), so what is published after `declare` and before any
//!   consumer runs is kept; tags are RocketMQ tags, subscribed as `rider||merchant`.
//! - names: every topic and group is the port's name under `RocketMqSettings::prefix` on the
//!   broker (`<prefix>herald_bulk`), and deliveries carry the port's name again.
//! - `lag` is, per queue of the topics, `%RETRY%<group>` and `%DLQ%<group>`, the broker's max
//!   offset minus the group's offset (the later of this process's and the broker's).
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
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_observability::TelemetryHandle;
use rocketmq_protocol::protocol::header::namesrv::topic_operation_header::TopicRequestHeader;
use rocketmq_protocol::protocol::header::query_consumer_offset_request_header::QueryConsumerOffsetRequestHeader;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use rocketmq_runtime::{RuntimeConfig, RuntimeContractViolation, RuntimeOwner};
use rocketmq_transport::api::RpcRequestHeader;
use tokio::sync::{Mutex, RwLock};

mod consumer;

use consumer::{HandOff, Listener, Outcome, Position};

const BACKEND: &str = "rocketmq";
/// The name server's answer for a topic it does not route.
const TOPIC_NOT_EXIST: i32 = 17;
/// The message property carrying the port's key intact (RocketMQ's KEYS splits on spaces).
pub(crate) const KEY_PROPERTY: &str = "HERALD_KEY";
/// The group's dead-letter topic is this prefix and the group's name.
pub(crate) const DLQ_PREFIX: &str = "%DLQ%";
/// The group's retry topic is this prefix and the group's name.
const RETRY_PREFIX: &str = "%RETRY%";
/// The broker's delay levels (its default `messageDelayLevel`), level 1 first.
const DELAY_LEVELS: [Duration; 18] = {
    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }
    [
        s(1),
        s(5),
        s(10),
        s(30),
        s(60),
        s(120),
        s(180),
        s(240),
        s(300),
        s(360),
        s(420),
        s(480),
        s(540),
        s(600),
        s(1200),
        s(1800),
        s(3600),
        s(7200),
    ]
};
/// The topic the broker creates new topics from (RocketMQ's default-topic template).
const TEMPLATE_TOPIC: &str = "TBW102";
/// A broker request that takes longer than this failed.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long an empty pull waits between looks at the hand-off.
const EMPTY_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Messages one process may hold at once, unanswered (listener calls blocked at the same time).
const HELD_MESSAGES: usize = 128;
/// The default of `RocketMqSettings::prefetch_per_queue` (the client's own is 1,000 a queue).
pub const PREFETCH_PER_QUEUE: u32 = 64;
/// Messages the client fetches from one queue in one pull request (the client's default is 32).
/// The client fetches again while a queue caches at most the prefetch, so a queue caches at most
/// the prefetch plus this.
pub const PULL_BATCH: u32 = 16;
/// How long a pull may hold back a later topic's messages while an earlier topic's are fetched.
const PRIORITY_WAIT: Duration = Duration::from_secs(3);
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
    /// After how many attempts the broker gives a message up into `%DLQ%<group>` (read back and
    /// handed out as given up); `None`: retries go on forever, as the port's contract has it.
    pub give_up_after: Option<u32>,
    /// Starts every topic and consumer group name on the broker (`HERALD_MQ_PREFIX`): the port's
    /// `herald_bulk` is the broker's `<prefix>herald_bulk`, so several Heralds (or test runs) share
    /// one broker without seeing each other's messages. Empty: the port's names as they are.
    pub prefix: String,
    /// The bound on memory (`HERALD_MQ_PREFETCH`): messages the client caches per queue this
    /// process consumes (1 to 65,535) before it stops fetching from that queue until some are
    /// answered; the messages parked for `pull` and those held are among them. A process thus
    /// keeps at most `queues × (prefetch_per_queue + PULL_BATCH)` messages of a group, however far
    /// the broker's backlog runs ahead.
    pub prefetch_per_queue: u32,
}

impl RocketMqSettings {
    pub fn new(namesrv: impl Into<String>) -> Self {
        Self {
            namesrv: namesrv.into(),
            lease: Duration::from_secs(60),
            queues_per_topic: 4,
            give_up_after: None,
            prefix: String::new(),
            prefetch_per_queue: PREFETCH_PER_QUEUE,
        }
    }

    /// The client's `maxReconsumeTimes`: retries after the first attempt.
    fn max_reconsume_times(&self) -> i32 {
        self.give_up_after.map_or(i32::MAX, |attempts| attempts.saturating_sub(1).min(i32::MAX as u32) as i32)
    }
}

/// The client runtime. Its listener calls run on the metadata blocking lane and each blocks until
/// its message is answered, so that lane is as wide as the messages a process may hold, and a call
/// may last the lease (the default 4 lanes and 30 s would stall a busy consumer and redeliver).
fn runtime_config(lease: Duration) -> Result<RuntimeConfig, RuntimeContractViolation> {
    let mut config = RuntimeConfig { thread_name: "herald-rocketmq".into(), ..Default::default() }
        .with_max_blocking_threads(HELD_MESSAGES + 32)?;
    let lane = &mut config.blocking_lane_policies.metadata_io;
    lane.max_concurrency = HELD_MESSAGES;
    lane.max_queue_depth = HELD_MESSAGES * 16;
    lane.queue_timeout = lease;
    lane.task_timeout = lease + Duration::from_secs(10);
    Ok(config)
}

/// The broker delay level that waits at least `delay` (the longest level when none does).
fn delay_level(delay: Duration) -> i32 {
    DELAY_LEVELS.iter().position(|level| *level >= delay).unwrap_or(DELAY_LEVELS.len() - 1) as i32 + 1
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

/// Which queues of a topic a lag counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every queue: the group's lag.
    Group,
    /// Only those this process consumes: what is on its way to it.
    OwnQueues,
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
    /// so as the listener returns), awaiting the broker's answer, so an ack is durable and seen by
    /// every process at once rather than at the client's next periodic commit. Waits briefly:
    /// while an earlier message of the queue is still held, the offset cannot move past it, and
    /// the periodic commit takes over.
    async fn commit(&self, queue: &MessageQueue, offset: i64) -> PortResult<()> {
        let Some(store) = self.consumer.lock().await.offset_store() else { return Ok(()) };
        let mut next = -1;
        for _ in 0..COMMIT_WAIT_STEPS {
            next = store.read_offset(queue, ReadOffsetType::ReadFromMemory).await;
            if next > offset {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if next < 0 {
            // The queue moved to another consumer of the group (which may hand the message out
            // again): the ack still counts, never moving the group's offset back.
            if store.read_offset(queue, ReadOffsetType::ReadFromStore).await > offset {
                return Ok(());
            }
            next = offset + 1;
        }
        store.update_consume_offset_to_broker(queue, next, false).await.map_err(client_failure)
    }

    /// Sends `message` back to the group's retry topic at `delay_level`.
    async fn send_back(&self, message: MessageExt, delay_level: i32) -> PortResult<()> {
        let mut consumer = self.consumer.lock().await;
        consumer.send_message_back_to_origin_broker(message, delay_level).await.map_err(client_failure)
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
        let owner = RuntimeOwner::plan(runtime_config(settings.lease).map_err(unavailable)?)
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

    /// Whether a topic of `subscription` before the first one with messages parked has messages
    /// kept for the group that this process does not have yet (on their way from the broker).
    async fn earlier_topic_in_flight(&self, group: &Group, subscription: &Subscription) -> PortResult<bool> {
        let in_hand = group.hand_off.in_hand(&subscription.topics);
        let Some(first_parked) = in_hand.iter().position(|(_, parked)| *parked) else { return Ok(false) };
        for (topic, (have, _)) in subscription.topics.iter().zip(&in_hand).take(first_parked) {
            if self.topic_lag(&subscription.group, topic, Some(group), Scope::OwnQueues).await? > *have {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `subscription` as the broker names it: its group and topics under the prefix.
    fn on_broker(&self, subscription: &Subscription) -> Subscription {
        let prefix = &self.settings.prefix;
        Subscription {
            group: format!("{prefix}{}", subscription.group),
            topics: subscription.topics.iter().map(|topic| format!("{prefix}{topic}")).collect(),
            tags: subscription.tags.clone(),
        }
    }

    async fn group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.lock().await.get(name).cloned()
    }

    /// Lag of one topic for the group: max offset minus consumed offset, per queue. The consumed
    /// offset is the later of this process's own, when it consumes the queue (the broker's copy
    /// trails it by the client's commit interval), and the broker's (another process's acks).
    async fn topic_lag(&self, group: &str, topic: &str, local: Option<&Group>, scope: Scope) -> PortResult<u64> {
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
                let own = match local {
                    Some(group) => group.consumed_offset(&queue).await,
                    None => None,
                };
                if own.is_none() && scope == Scope::OwnQueues {
                    continue;
                }
                // The broker answers a group that never committed on this queue with an error.
                let broker_offset =
                    self.client.query_consumer_offset(&broker.addr, header, REQUEST_TIMEOUT_MS).await.ok();
                let committed = match own.max(broker_offset.filter(|o| *o >= 0)) {
                    Some(offset) => offset,
                    // A group that never consumed this queue starts at its first offset.
                    None => self
                        .client
                        .min_offset(&broker.addr, &queue, REQUEST_TIMEOUT_MS)
                        .await
                        .map_err(client_failure)?,
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
                batch.push(to_message(m, &self.settings.prefix)?);
            }
            if !batch.is_empty() {
                producer.send_batch(batch).await.map_err(client_failure)?;
            }
        }
        Ok(())
    }

    async fn declare(&self, subscription: &Subscription) -> PortResult<()> {
        self.ensure_topics(&self.on_broker(subscription).topics).await
    }

    async fn subscribe(&self, subscription: &Subscription) -> PortResult<()> {
        let subscription = &self.on_broker(subscription);
        self.ensure_topics(&subscription.topics).await?;
        let mut groups = self.groups.lock().await;
        if groups.contains_key(&subscription.group) {
            return Ok(());
        }
        // Created now, so the consumer routes it from the start and reads back what the broker
        // gives up on.
        let dead_letters = format!("{DLQ_PREFIX}{}", subscription.group);
        self.ensure_topics(std::slice::from_ref(&dead_letters)).await?;
        let hand_off = HandOff::new(self.instance.clone(), self.settings.lease);
        let mut consumer = DefaultMQPushConsumer::builder(self.client_runtime.clone())
            .consumer_group(subscription.group.clone())
            .name_server_addr(self.settings.namesrv.clone())
            .message_model(MessageModel::Clustering)
            // A new group reads what was published before it first ran (see `declare`).
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_message_batch_max_size(1)
            // The bound on what a consumer that falls behind keeps in memory (see the settings).
            .pull_threshold_for_queue(self.settings.prefetch_per_queue.clamp(1, 65_535))
            .pull_batch_size(PULL_BATCH)
            // One listener call per message held (see `runtime_config`).
            .consume_thread_min(HELD_MESSAGES as u32)
            .consume_thread_max(HELD_MESSAGES as u32)
            .max_reconsume_times(self.settings.max_reconsume_times())
            // The client's own redelivery of a message its listener still holds: after the lease.
            .consume_timeout(self.settings.lease.as_secs().div_ceil(60).max(1))
            .build();
        let tags = subscription.tags.join("||");
        for topic in &subscription.topics {
            consumer.subscribe(topic.as_str(), tags.as_str()).await.map_err(client_failure)?;
        }
        consumer.subscribe(dead_letters.as_str(), "*").await.map_err(client_failure)?;
        consumer.register_message_listener_concurrently(Listener(hand_off.clone()));
        consumer.start().await.map_err(client_failure)?;
        groups.insert(subscription.group.clone(), Arc::new(Group { consumer: Mutex::new(consumer), hand_off }));
        Ok(())
    }

    async fn pull(&self, subscription: &Subscription, max: usize, wait: Duration) -> PortResult<Vec<Delivery>> {
        let subscription = &self.on_broker(subscription);
        let Some(group) = self.group(&subscription.group).await else { return Ok(Vec::new()) };
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        // The client fetches each queue on its own: hand out nothing of a later topic while an
        // earlier one has messages on the broker on their way to this process (a moment).
        let priority_deadline = started + wait.max(PRIORITY_WAIT);
        loop {
            if tokio::time::Instant::now() < priority_deadline
                && self.earlier_topic_in_flight(&group, subscription).await?
            {
                group.hand_off.wait(EMPTY_POLL_INTERVAL).await;
                continue;
            }
            let mut got = group.hand_off.take(&subscription.topics, max);
            let now = tokio::time::Instant::now();
            if !got.is_empty() || max == 0 || now >= deadline {
                // Served on the port's topic names (every topic subscribed starts with the prefix).
                for delivery in &mut got {
                    if let Some(topic) = delivery.message.topic.strip_prefix(self.settings.prefix.as_str()) {
                        delivery.message.topic = topic.to_string();
                    }
                }
                return Ok(got);
            }
            group.hand_off.wait(EMPTY_POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    async fn ack(&self, subscription: &Subscription, receipts: &[String]) -> PortResult<()> {
        let subscription = &self.on_broker(subscription);
        let Some(group) = self.group(&subscription.group).await else { return Ok(()) };
        let mut queues: HashMap<MessageQueue, i64> = HashMap::new();
        for held in receipts.iter().filter_map(|r| group.hand_off.release(r)) {
            let Position { queue, offset } = held.position.clone();
            if held.answer(Outcome::Consumed) {
                let highest = queues.entry(queue).or_insert(offset);
                *highest = (*highest).max(offset);
            }
        }
        for (queue, offset) in queues {
            group.commit(&queue, offset).await?;
        }
        Ok(())
    }

    async fn retry_later(&self, subscription: &Subscription, receipt: &str, delay: Duration) -> PortResult<()> {
        let subscription = &self.on_broker(subscription);
        let Some(group) = self.group(&subscription.group).await else { return Ok(()) };
        let Some(held) = group.hand_off.release(receipt) else { return Ok(()) };
        // Sent back by us at the delay asked for, then consumed; if that fails, the listener's
        // `ReconsumeLater` has the client send it back at the broker's own delay instead.
        match group.send_back(held.message.clone(), delay_level(delay)).await {
            Ok(()) => held.answer(Outcome::Consumed),
            Err(e) => {
                tracing::warn!(error = %e, "sending a message back failed; retrying at the broker's delay");
                held.answer(Outcome::Retry)
            }
        };
        Ok(())
    }

    async fn lag(&self, subscription: &Subscription) -> PortResult<u64> {
        let subscription = &self.on_broker(subscription);
        let local = self.group(&subscription.group).await;
        let mut lag = 0;
        for topic in &subscription.topics {
            lag += self.topic_lag(&subscription.group, topic, local.as_deref(), Scope::Group).await?;
        }
        for prefix in [RETRY_PREFIX, DLQ_PREFIX] {
            let topic = format!("{prefix}{}", subscription.group);
            lag += self.topic_lag(&subscription.group, &topic, local.as_deref(), Scope::Group).await?;
        }
        Ok(lag)
    }
}

/// `m` as the broker takes it, on its topic under `prefix`.
fn to_message(m: &QueueMessage, prefix: &str) -> PortResult<Message> {
    Message::builder()
        .topic(format!("{prefix}{}", m.topic).as_str())
        .tags(m.tag.as_str())
        .key(m.key.as_str())
        .body_slice(&m.body)
        .raw_property(KEY_PROPERTY, m.key.as_str())
        .map_err(unavailable)?
        .build()
        .map_err(unavailable)
}
