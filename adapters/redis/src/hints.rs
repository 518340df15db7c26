//! Inbox hints across processes on Redis pub/sub. Every process that hints (a consumer's
//! deliveries, an API's reads and revokes) tells its own hub at once and publishes one message per
//! call — a page's kind and receiver ids, never one message per receiver — on `<prefix>:hints`;
//! every API process subscribes and feeds its own hub what the others published (its own messages
//! come back too, and are skipped by their origin).
//!
//! **Plain `PUBLISH`, also on a cluster.** Every API process needs every hint (an app may listen
//! on any of them), so sharding the channel (`SPUBLISH`) could not cut what a subscriber receives;
//! it would only pin all hint traffic to one shard and make the subscriber follow that shard's
//! slot across failovers and resharding. A cluster forwards a plain `PUBLISH` to every node, so
//! the subscriber may hold one connection to any node and move to another seed when it fails.
//! The cost is the cluster bus carrying each message to each node, small next to a page's own
//! writes (one message of ≈ 5 KB per page of 500).
//!
//! **A lost subscription** (Redis restarted, a node gone) is retried every second, on the next seed
//! node for a cluster; once subscribed again, every listener of this process is told to fetch,
//! since hints published meanwhile were missed. Publishing never waits: messages queue (up to
//! [`QUEUED`]) for a task that sends them, and one that cannot be sent is dropped (a hint is only a
//! hint; the apps' fetches stay correct).

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use herald_domain::ports::InboxHints;
use herald_domain::{ReceiverId, ReceiverKind};
use redis::aio::PubSub;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{CONNECT_TIMEOUT, Conn, Keys, RedisConfig, RedisServer, connect};

/// Messages waiting to be published; past this, hints are dropped until the publisher catches up.
pub const QUEUED: usize = 4096;
/// How long a lost connection waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// The first word of every message: its format's version.
const FORMAT: &str = "h1";

/// What one message says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hint {
    Changed(ReceiverKind, Vec<ReceiverId>),
    Everyone(ReceiverKind),
}

impl Hint {
    /// `h1 <origin> c <kind> <id> <id> …` or `h1 <origin> e <kind>`: ids never hold spaces.
    fn encode(&self, origin: u64) -> String {
        match self {
            Hint::Changed(kind, ids) => {
                let mut out = format!("{FORMAT} {origin:x} c {}", kind.as_str());
                for id in ids {
                    out.push(' ');
                    out.push_str(id.as_str());
                }
                out
            }
            Hint::Everyone(kind) => format!("{FORMAT} {origin:x} e {}", kind.as_str()),
        }
    }

    fn decode(raw: &[u8]) -> Option<(u64, Hint)> {
        let mut words = std::str::from_utf8(raw).ok()?.split(' ');
        if words.next()? != FORMAT {
            return None;
        }
        let origin = u64::from_str_radix(words.next()?, 16).ok()?;
        let what = words.next()?;
        let kind = ReceiverKind::parse("kind", words.next()?).ok()?;
        let hint = match what {
            "c" => Hint::Changed(kind, words.map(|id| ReceiverId::parse("id", id).ok()).collect::<Option<_>>()?),
            "e" if words.next().is_none() => Hint::Everyone(kind),
            _ => return None,
        };
        Some((origin, hint))
    }

    fn tell(self, local: &dyn InboxHints) {
        match self {
            Hint::Changed(kind, ids) => local.changed(kind, &ids),
            Hint::Everyone(kind) => local.everyone(kind),
        }
    }
}

/// The `InboxHints` adapter on Redis pub/sub, in front of this process's own hub.
pub struct RedisHints {
    local: Arc<dyn InboxHints>,
    /// Tells this instance's messages from the others' (random per instance).
    origin: u64,
    outgoing: mpsc::Sender<String>,
    /// The publisher and, when listening, the subscriber: stopped when this is dropped.
    tasks: Vec<JoinHandle<()>>,
}

impl RedisHints {
    /// Hints through the server (or cluster) `config` names, telling `local` at once. With
    /// `listen`, it also subscribes and feeds `local` every other process's hints (an API process;
    /// a process without apps only publishes). Fails if Redis does not answer, or the first
    /// subscription cannot be made, within the connect timeout: once this returns, every hint
    /// published anywhere reaches `local`.
    pub async fn open(config: &RedisConfig, local: Arc<dyn InboxHints>, listen: bool) -> anyhow::Result<Self> {
        let channel = Keys { prefix: config.prefix.clone() }.global("hints");
        let origin = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let publisher = connect(&config.server).await?;
        let (outgoing, queued) = mpsc::channel(QUEUED);
        let mut tasks = vec![tokio::spawn(publish(config.server.clone(), publisher, channel.clone(), queued))];
        if listen {
            let nodes = match &config.server {
                RedisServer::Single(url) => vec![url.clone()],
                RedisServer::Cluster(nodes) => nodes.clone(),
            };
            let first = tokio::time::timeout(CONNECT_TIMEOUT, subscription(&nodes[0], &channel))
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
                .and_then(|s| s)?;
            let subscriber = Subscriber { nodes, channel, origin, local: local.clone() };
            tasks.push(tokio::spawn(subscriber.run(first)));
        }
        Ok(Self { local, origin, outgoing, tasks })
    }

    fn send(&self, hint: Hint) {
        if let Err(e) = self.outgoing.try_send(hint.encode(self.origin)) {
            tracing::debug!(error = %e, "an inbox hint was not published (the publisher is behind or stopped)");
        }
    }
}

impl Drop for RedisHints {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl InboxHints for RedisHints {
    fn changed(&self, kind: ReceiverKind, receivers: &[ReceiverId]) {
        if receivers.is_empty() {
            return;
        }
        self.local.changed(kind, receivers);
        self.send(Hint::Changed(kind, receivers.to_vec()));
    }

    fn everyone(&self, kind: ReceiverKind) {
        self.local.everyone(kind);
        self.send(Hint::Everyone(kind));
    }
}

/// Publishes what is queued, in order; a message that fails is dropped and the connection made
/// again before the next.
async fn publish(server: RedisServer, conn: Conn, channel: String, mut queued: mpsc::Receiver<String>) {
    let mut conn = Some(conn);
    while let Some(message) = queued.recv().await {
        if conn.is_none() {
            match connect(&server).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot publish inbox hints; dropping one"),
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH").arg(&channel).arg(&message).query_async(c).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "publishing an inbox hint failed; reconnecting");
            conn = None;
        }
    }
}

/// One subscription to the hints' channel on `node`, confirmed by the server.
async fn subscription(node: &str, channel: &str) -> anyhow::Result<PubSub> {
    let mut pubsub = redis::Client::open(node)?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Feeds the hub the other processes' hints, subscribing again whenever the subscription is lost.
struct Subscriber {
    nodes: Vec<String>,
    channel: String,
    origin: u64,
    local: Arc<dyn InboxHints>,
}

impl Subscriber {
    async fn run(self, first: PubSub) {
        let mut current = Some(first);
        let mut node = 0;
        loop {
            let pubsub = match current.take() {
                Some(p) => p,
                None => {
                    tokio::time::sleep(RETRY).await;
                    node = (node + 1) % self.nodes.len();
                    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, subscription(&self.nodes[node], &self.channel));
                    match attempt.await {
                        Ok(Ok(p)) => {
                            tracing::info!("inbox hints subscribed again; every listener here is told to fetch");
                            for kind in ReceiverKind::ALL {
                                self.local.everyone(kind);
                            }
                            p
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %format!("{e:#}"), "cannot subscribe to inbox hints; retrying");
                            continue;
                        }
                        Err(_) => {
                            tracing::warn!("subscribing to inbox hints timed out; retrying");
                            continue;
                        }
                    }
                }
            };
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                match Hint::decode(message.get_payload_bytes()) {
                    Some((origin, _)) if origin == self.origin => {}
                    Some((_, hint)) => hint.tell(&*self.local),
                    None => tracing::warn!("an inbox hint on {} that does not decode; ignored", self.channel),
                }
            }
            tracing::warn!("the inbox hints' subscription was lost; subscribing again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &[&str]) -> Vec<ReceiverId> {
        raw.iter().map(|id| ReceiverId::parse("id", id).unwrap()).collect()
    }

    #[test]
    fn a_message_is_its_kind_and_ids_and_decodes_back() {
        let changed = Hint::Changed(ReceiverKind::Merchant, ids(&["m1", "商户:2", "a.b-c_d"]));
        assert_eq!(changed.encode(0xab), "h1 ab c merchant m1 商户:2 a.b-c_d");
        assert_eq!(Hint::decode(changed.encode(7).as_bytes()), Some((7, changed)));
        let everyone = Hint::Everyone(ReceiverKind::Rider);
        assert_eq!(Hint::decode(everyone.encode(u64::MAX).as_bytes()), Some((u64::MAX, everyone)));
        for bad in [
            "",
            "h2 1 e rider",
            "h1 zz e rider",
            "h1 1 e rider extra",
            "h1 1 c pilot r1",
            "h1 1 c rider a,b",
            "h1 1 x rider",
        ] {
            assert_eq!(Hint::decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
