use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_application::backend::{self, DispatchSettings, OpenGate};
use bento_application::{
    BusError, EnvelopeHandler, MessageBus, PublishOptions, Subscription as Handle,
    SubscriptionKind, SubscriptionSpec,
};
use bento_domain::Envelope;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;

use crate::consumer::Consumer;
use crate::subscription::Subscription;

/// Settings of the in-memory bus.
///
/// The bus holds everything in the process, so it bounds what it holds and makes publishers
/// wait beyond that, the way a broker's backlog quota holds producers: it never drops a
/// message to stay within a bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// How many of the latest messages each topic keeps for [`MemoryBus::published`]; `0`
    /// keeps none (fastest). Dead-letter topics always keep theirs, up to this many or 10,000.
    pub retain_per_topic: usize,
    /// Bytes of unsettled messages one subscription holds at most: waiting for a consumer, in
    /// a handler, or waiting for a retry (a message counts its payload plus 256 bytes). A
    /// publish waits for room when a subscription of its topic is full, so a subscription
    /// with no consumer eventually holds its publishers. Default 64 MiB.
    pub max_bytes_per_subscription: usize,
    /// Delayed messages (published with a future delivery time) the bus holds at most; a
    /// delayed publish waits beyond that until earlier ones are due. Default 10,000.
    pub max_delayed_messages: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            retain_per_topic: 0,
            max_bytes_per_subscription: 64 * 1024 * 1024,
            max_delayed_messages: 10_000,
        }
    }
}

/// Why a publish waits for a subscription after offering it a message.
enum Hold {
    /// It had no room: the message waits for room, then goes to it.
    Full,
    /// It took the message, but its consumers are behind: the publisher lets them catch up.
    Ahead,
}

/// The subscriptions a publish waits for (usually none: no allocation then).
type Holds = Vec<(Arc<Subscription>, Hold)>;

/// Dead letters kept per dead-letter topic when retention is otherwise off.
const DEAD_LETTERS_KEPT: usize = 10_000;

#[derive(Default)]
struct Topic {
    subscriptions: RwLock<Vec<Arc<Subscription>>>,
    retained: Mutex<VecDeque<Arc<Envelope>>>,
}

pub(crate) struct Inner {
    config: MemoryConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    gate: OpenGate,
    /// Room for delayed messages, one permit each.
    delayed: Arc<Semaphore>,
}

impl Inner {
    fn topic(&self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self.topics.read().get(name) {
            return topic.clone();
        }
        self.topics
            .write()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// [`Inner::offer`] to the topic named `name`, looked up under the read lock of the
    /// topics: the common publish then takes no handle to its topic.
    fn offer_to(&self, name: &str, envelope: &Arc<Envelope>) -> Holds {
        if let Some(topic) = self.topics.read().get(name) {
            return self.offer(topic, envelope, false);
        }
        self.offer(&self.topic(name), envelope, false)
    }

    /// Delivers to every subscription of `topic` now, waiting for room in full ones;
    /// `dead_letter` topics always retain.
    pub(crate) async fn publish_now(&self, topic: &str, envelope: Envelope, dead_letter: bool) {
        self.publish_to(&self.topic(topic), envelope, dead_letter)
            .await;
    }

    /// [`Inner::publish_now`] to a topic already looked up.
    async fn publish_to(&self, topic: &Topic, envelope: Envelope, dead_letter: bool) {
        let envelope = Arc::new(envelope);
        let holds = self.offer(topic, &envelope, dead_letter);
        self.wait_for(holds, envelope).await;
    }

    /// Hands `envelope` to every subscription of `topic` that has room for it now, and
    /// returns those to wait for: the ones without room, and those whose consumers are behind.
    ///
    /// Not async, so that the common publish, which waits for nothing, builds no future that
    /// has room for waiting.
    fn offer(&self, topic: &Topic, envelope: &Arc<Envelope>, dead_letter: bool) -> Holds {
        let keep = match (self.config.retain_per_topic, dead_letter) {
            (0, true) => DEAD_LETTERS_KEPT,
            (n, _) => n,
        };
        if keep > 0 {
            let mut retained = topic.retained.lock();
            if retained.len() >= keep {
                retained.pop_front();
            }
            retained.push_back(envelope.clone());
        }
        // Subscriptions with room take the message at once; the others are waited for after
        // the lock is released. While a publish waits for a subscription, new publishes queue
        // behind it.
        let subscriptions = topic.subscriptions.read();
        let mut holds = Vec::new();
        for subscription in subscriptions.iter() {
            match subscription.try_reserve(envelope) {
                Some(message) => {
                    subscription.deliver(message);
                    if subscription.ahead() {
                        holds.push((subscription.clone(), Hold::Ahead));
                    }
                }
                None => holds.push((subscription.clone(), Hold::Full)),
            }
        }
        holds
    }

    /// Delivers `envelope` to each full subscription once it has room, and lets the consumers
    /// of those ahead catch up.
    async fn wait_for(&self, holds: Holds, envelope: Arc<Envelope>) {
        for (subscription, hold) in holds {
            if let Hold::Ahead = hold {
                subscription.catch_up().await;
                continue;
            }
            if subscription.unattended() {
                // Otherwise a publisher held by a subscription nobody reads just hangs.
                tracing::warn!(
                    topic = %subscription.topic,
                    subscription = %subscription.name,
                    limit_bytes = self.config.max_bytes_per_subscription,
                    "a publish waits for room in a subscription that is full and has no consumer: \
                     it holds its messages until a consumer of it reads them"
                );
            }
            let message = subscription.reserve(&envelope).await;
            subscription.deliver(message);
        }
    }

    fn subscription(
        &self,
        topic: &str,
        spec: &SubscriptionSpec,
    ) -> Result<Arc<Subscription>, BusError> {
        if !matches!(
            spec.kind,
            SubscriptionKind::Exclusive
                | SubscriptionKind::Shared
                | SubscriptionKind::Failover
                | SubscriptionKind::KeyShared
        ) {
            return Err(BusError::Unsupported {
                backend: "memory",
                what: format!("the `{}` subscription kind", spec.kind),
                reason: "this version of the in-memory bus does not know it".to_owned(),
            });
        }
        let topic_entry = self.topic(topic);
        let mut subscriptions = topic_entry.subscriptions.write();
        if let Some(existing) = subscriptions.iter().find(|s| s.name == spec.name) {
            if existing.kind != spec.kind {
                return Err(BusError::Subscribe {
                    topic: topic.to_owned(),
                    subscription: spec.name.clone(),
                    source: (format!(
                        "the subscription exists as {}, not {}",
                        existing.kind, spec.kind
                    ))
                    .into(),
                });
            }
            return Ok(existing.clone());
        }
        let created = Arc::new(Subscription::new(
            topic,
            &spec.name,
            spec.kind,
            self.config.max_bytes_per_subscription,
        ));
        subscriptions.push(created.clone());
        Ok(created)
    }
}

/// The in-memory message bus. Cheap to clone; clones share topics and subscriptions.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("config", &self.inner.config)
            .field("topics", &self.inner.topics.read().len())
            .finish()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new(config: MemoryConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                delayed: Arc::new(Semaphore::new(
                    config.max_delayed_messages.clamp(1, Semaphore::MAX_PERMITS),
                )),
                config,
                topics: RwLock::new(HashMap::new()),
                gate: OpenGate::new(),
            }),
        }
    }

    /// The messages retained on `topic`, oldest first (see [`MemoryConfig::retain_per_topic`];
    /// dead-letter topics always retain).
    pub fn published(&self, topic: &str) -> Vec<Envelope> {
        match self.inner.topics.read().get(topic) {
            Some(topic) => topic
                .retained
                .lock()
                .iter()
                .map(|e| (**e).clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Names of the topics that exist so far.
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics.read().keys().cloned().collect()
    }

    fn check_open(&self) -> Result<(), BusError> {
        self.inner.gate.check()
    }

    /// Publishes `envelope` now, if it is due and every subscription of its topic has room
    /// for it; otherwise returns the wait, boxed.
    ///
    /// Not async: the future of every publish then stays the size of the common case, which
    /// waits for nothing. (With the waits inside it, it outgrew 1 KiB, and allocating it took
    /// the allocator off its per-thread cache on every publish.)
    fn publish_one(
        &self,
        envelope: Envelope,
        options: &PublishOptions,
    ) -> Option<BoxFuture<'static, ()>> {
        let delay = options
            .deliver
            .map_or(Duration::ZERO, |at| at.delay_from_now());
        if delay.is_zero() {
            let envelope = Arc::new(envelope);
            let holds = self.inner.offer_to(topic_of(&envelope, options), &envelope);
            if holds.is_empty() {
                return None;
            }
            let inner = self.inner.clone();
            return Some(Box::pin(async move {
                inner.wait_for(holds, envelope).await;
            }));
        }
        let topic = self.inner.topic(topic_of(&envelope, options));
        let inner = self.inner.clone();
        let deliver = options.deliver;
        Some(Box::pin(async move {
            // The semaphore is never closed; a delayed message holds its permit until it is
            // due.
            let held = inner.delayed.clone().acquire_owned().await.ok();
            // Waiting for room may have taken it to its time.
            let delay = deliver.map_or(Duration::ZERO, |at| at.delay_from_now());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                inner.publish_to(&topic, envelope, false).await;
                drop(held);
            });
        }))
    }
}

#[async_trait]
impl MessageBus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<(), BusError> {
        self.check_open()?;
        if let Some(wait) = self.publish_one(envelope, &options) {
            wait.await;
        }
        Ok(())
    }

    async fn publish_batch(
        &self,
        envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        self.check_open()?;
        for envelope in envelopes {
            if let Some(wait) = self.publish_one(envelope, &options) {
                wait.await;
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Result<Handle, BusError> {
        self.check_open()?;
        let topic = spec.source.topic(|event_type| self.topic_for(event_type));
        let subscription = self.inner.subscription(&topic, &spec)?;
        let (id, rx) = subscription.connect()?;
        let consumer = Consumer::new(id, rx, subscription, Arc::downgrade(&self.inner));
        let dead_letter_topic = spec.dead_letter.topic_for(&topic, &spec.name);
        let settings = DispatchSettings::new(&topic, spec, dead_letter_topic);
        Ok(backend::spawn(consumer, handler, settings, None))
    }

    fn topic_for(&self, event_type: &str) -> String {
        topic_name(event_type).to_owned()
    }

    async fn close(&self) -> Result<(), BusError> {
        self.inner.gate.shut();
        Ok(())
    }
}

/// The name of the topic `envelope` goes to, borrowed: no copy of it per publish.
fn topic_of<'a>(envelope: &'a Envelope, options: &'a PublishOptions) -> &'a str {
    options
        .topic
        .as_deref()
        .unwrap_or_else(|| topic_name(&envelope.event_type))
}

/// The topic of `event_type` on the in-memory bus: the event type itself.
fn topic_name(event_type: &str) -> &str {
    event_type
}
