use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use std::sync::Arc;

use crate::layer::retry::Policy;
use crate::layer::{BoxHandler, IntoBoxed, Layer, Layers};
use crate::{BusError, DeadLetterPolicy, RetryPolicy, SchemaDefinition};

/// Where a subscription reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The topic the backend maps this event type to.
    EventType(String),
    /// A topic by name (a dead-letter topic, a topic shared by several event types).
    Topic(String),
}

impl Source {
    /// Whether the source is still to be taken from the handler's event type (a spec made
    /// with [`SubscriptionSpec::named`] and not yet given to [`crate::Bus::subscribe_with`]).
    pub fn is_unnamed(&self) -> bool {
        matches!(self, Source::EventType(event_type) if event_type.is_empty())
    }
}

/// How the consumers of one subscription share its messages (Pulsar's subscription types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubscriptionKind {
    /// One consumer only; a second one is refused.
    Exclusive,
    /// Consumers compete: each message goes to one of them.
    #[default]
    Shared,
    /// One active consumer; the others take over if it leaves.
    Failover,
    /// Consumers compete, but all messages with one key go to the same consumer.
    KeyShared,
}

impl fmt::Display for SubscriptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubscriptionKind::Exclusive => "exclusive",
            SubscriptionKind::Shared => "shared",
            SubscriptionKind::Failover => "failover",
            SubscriptionKind::KeyShared => "key-shared",
        })
    }
}

/// Everything a backend needs to start a subscription.
#[derive(Clone)]
pub struct SubscriptionSpec {
    /// What to read.
    pub source: Source,
    /// Durable subscription name; consumers with the same name share its messages.
    pub name: String,
    /// How consumers share messages.
    pub kind: SubscriptionKind,
    /// Most handlers running at once for this consumer (per-key order is kept regardless).
    pub concurrency: usize,
    /// How failed messages are retried (by default [`RetryPolicy::default`]).
    pub retry: Arc<dyn Policy>,
    /// Where messages go when they cannot be handled.
    pub dead_letter: DeadLetterPolicy,
    /// The schema the consumer expects, for backends with a schema registry to check (set by
    /// [`crate::Bus::subscribe_with`] from the codec).
    pub schema: Option<SchemaDefinition>,
    /// The subscription's own layers, outermost first (see [`crate::layer`] for where they sit).
    pub layers: Layers,
    /// The longest one message may take, if bounded.
    pub timeout: Option<Duration>,
}

impl fmt::Debug for SubscriptionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionSpec")
            .field("source", &self.source)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.retry.max_attempts())
            .field("dead_letter", &self.dead_letter)
            .field("schema", &self.schema)
            .field("layers", &self.layers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SubscriptionSpec {
    /// A shared subscription named `name` to the topic of the event type its typed handler
    /// handles ([`crate::Bus::subscribe_with`] fills it in), concurrency 1.
    pub fn named(name: impl Into<String>) -> Self {
        Self::new(Source::EventType(String::new()), name)
    }

    /// A shared subscription named `name` to the topic of `event_type`, concurrency 1.
    pub fn event_type(event_type: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(Source::EventType(event_type.into()), name)
    }

    /// A shared subscription named `name` to `topic`, concurrency 1.
    pub fn topic(topic: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(Source::Topic(topic.into()), name)
    }

    fn new(source: Source, name: impl Into<String>) -> Self {
        Self {
            source,
            name: name.into(),
            kind: SubscriptionKind::default(),
            concurrency: 1,
            retry: Arc::new(RetryPolicy::default()),
            dead_letter: DeadLetterPolicy::default(),
            schema: None,
            layers: Layers::new(),
            timeout: None,
        }
    }

    /// Sets the subscription kind.
    pub fn kind(mut self, kind: SubscriptionKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the concurrency bound (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the retry policy: a [`RetryPolicy`], or any [`Policy`].
    pub fn retry(mut self, retry: impl Policy) -> Self {
        self.retry = Arc::new(retry);
        self
    }

    /// Adds a layer around the handler, inside the layers added before (see [`crate::layer`]
    /// for the whole stack and its order).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxHandler> + Send + Sync + 'static,
        L::Service: IntoBoxed<BoxHandler>,
    {
        self.layers.push(layer);
        self
    }

    /// Gives each message at most `deadline`; a handler still running then fails with a
    /// retryable error.
    pub fn timeout(mut self, deadline: Duration) -> Self {
        self.timeout = Some(deadline);
        self
    }

    /// Sets the dead-letter policy.
    pub fn dead_letter(mut self, dead_letter: DeadLetterPolicy) -> Self {
        self.dead_letter = dead_letter;
        self
    }
}

/// Closes a backend's consumer once the dispatcher has stopped.
pub type Closer = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BusError>> + Send>;

/// A running subscription. Dropping it leaves it running; call [`Subscription::shutdown`] to
/// stop it gracefully.
pub struct Subscription {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    closer: Option<Closer>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Wraps a running dispatcher task; `stop` tells it to stop, `closer` runs after it did.
    pub(crate) fn new(
        name: impl Into<String>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        closer: Option<Closer>,
    ) -> Self {
        Self {
            name: name.into(),
            stop,
            task,
            closer,
        }
    }

    /// The subscription name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops receiving, waits for in-flight handlers to finish (their messages are settled),
    /// hands back messages that were received but not started, and closes the consumer.
    pub async fn shutdown(self) -> Result<(), BusError> {
        self.shutdown_within(Duration::MAX).await
    }

    /// Like [`Subscription::shutdown`], but gives up waiting for handlers after `grace`;
    /// unfinished messages are then redelivered later, never lost.
    pub async fn shutdown_within(mut self, grace: Duration) -> Result<(), BusError> {
        let _ = self.stop.send(true);
        let finished = if grace == Duration::MAX {
            (&mut self.task).await.ok();
            true
        } else {
            tokio::time::timeout(grace, &mut self.task).await.is_ok()
        };
        if !finished {
            self.task.abort();
        }
        if let Some(close) = self.closer.take() {
            close().await?;
        }
        Ok(())
    }
}
