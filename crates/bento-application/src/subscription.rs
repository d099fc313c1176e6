use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::layer::retry::Policy;
use crate::layer::{BoxHandler, IntoBoxed, Layer, Layers};
use crate::{BusError, DeadLetterPolicy, DeliveryObserver, RetryPolicy, SchemaDefinition};

/// Where a subscription reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

    /// The topic read: the named one, or what `topic_for` (a backend's
    /// [`crate::MessageBus::topic_for`]) maps the event type to.
    pub fn topic(&self, topic_for: impl FnOnce(&str) -> String) -> String {
        match self {
            Source::EventType(event_type) => topic_for(event_type),
            Source::Topic(topic) => topic.clone(),
        }
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
    /// Whether this process runs several consumers of this subscription on purpose; otherwise
    /// a second subscription with the same name through one bus is refused.
    pub competing: bool,
    /// Called when a message could not be settled on the broker (its retry or dead letter not
    /// stored, its acknowledgement not sent): the message comes again, and this counts it.
    pub on_settle_failure: Option<SettleFailureHook>,
    /// Told of every delivery and of the outcome it settles with, from outside the whole
    /// stack (see [`SubscriptionSpec::observe`]).
    pub observer: Option<Arc<dyn DeliveryObserver>>,
}

/// What [`SubscriptionSpec::on_settle_failure`] calls, with the error.
pub type SettleFailureHook = Arc<dyn Fn(&BusError) + Send + Sync>;

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
            .field("competing", &self.competing)
            .field("observed", &self.observer.is_some())
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
            competing: false,
            on_settle_failure: None,
            observer: None,
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

    /// Runs this consumer next to others of the same subscription in this process (competing
    /// consumers, a failover standby). Without it, a second subscription with the same name
    /// through one bus is refused: two handlers that share a name by mistake would split the
    /// messages between them.
    pub fn competing(mut self) -> Self {
        self.competing = true;
        self
    }

    /// Tells `observer` of every delivery of this subscription and of the outcome it settles
    /// with, from outside the whole stack: the final outcome, once per delivery, as an
    /// outermost layer would see it, without the future a layer adds per delivery. An observer
    /// added to a subscription already observed sits inside the first, outside the layers.
    pub fn observe(mut self, observer: impl DeliveryObserver) -> Self {
        let observer: Arc<dyn DeliveryObserver> = Arc::new(observer);
        match &self.observer {
            None => self.observer = Some(observer),
            Some(_) => self
                .layers
                .push_outermost(crate::layer::ObserverLayer::shared(observer)),
        }
        self
    }

    /// Calls `hook` whenever a message of this subscription cannot be settled on the broker
    /// (after the backend's own attempts); a hook set before is called too. The metrics layer
    /// counts these in `bento_settle_failures_total`.
    pub fn on_settle_failure(mut self, hook: impl Fn(&BusError) + Send + Sync + 'static) -> Self {
        self.on_settle_failure = Some(match self.on_settle_failure.take() {
            None => Arc::new(hook),
            Some(earlier) => Arc::new(move |error: &BusError| {
                earlier(error);
                hook(error);
            }),
        });
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

/// How long [`Subscription::shutdown`] waits for in-flight handlers before giving up on them
/// (their messages are then redelivered, never lost).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The shared controls of a running subscription: what stops it, and what says it stopped.
#[derive(Debug)]
pub(crate) struct Control {
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl Control {
    /// Asks the dispatcher to stop (idempotent).
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether the dispatcher has stopped.
    pub(crate) fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// Resolves once the dispatcher has stopped.
    pub(crate) async fn stopped(&self) {
        let mut done = self.done.clone();
        // An error means the dispatcher task is gone: stopped as well.
        let _ = done.wait_for(|done| *done).await;
    }
}

/// A running subscription. [`Subscription::shutdown`] stops it gracefully; dropping it stops it
/// too (in-flight handlers finish in the background, unstarted messages go back to the broker).
pub struct Subscription {
    name: String,
    control: Arc<Control>,
    task: Option<JoinHandle<()>>,
    closer: Option<Closer>,
    /// Holds the subscription's name in its bus's registry while it runs.
    registration: Option<Box<dyn Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Wraps a running dispatcher task; `stop` tells it to stop, `done` says it did, `closer`
    /// runs after it did.
    pub(crate) fn new(
        name: impl Into<String>,
        stop: watch::Sender<bool>,
        done: watch::Receiver<bool>,
        task: JoinHandle<()>,
        closer: Option<Closer>,
    ) -> Self {
        Self {
            name: name.into(),
            control: Arc::new(Control { stop, done }),
            task: Some(task),
            closer,
            registration: None,
        }
    }

    /// The subscription name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub(crate) fn hold(&mut self, registration: Box<dyn Send + Sync>) {
        self.registration = Some(registration);
    }

    /// Stops receiving, waits for in-flight handlers to finish (their messages are settled),
    /// hands back messages that were received but not started, and closes the consumer; gives
    /// up on handlers still running after [`DEFAULT_SHUTDOWN_GRACE`].
    pub async fn shutdown(self) -> Result<(), BusError> {
        self.shutdown_within(DEFAULT_SHUTDOWN_GRACE).await
    }

    /// Like [`Subscription::shutdown`], but gives up waiting for handlers after `grace`;
    /// unfinished messages are then redelivered later, never lost.
    pub async fn shutdown_within(mut self, grace: Duration) -> Result<(), BusError> {
        self.control.stop();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            tracing::warn!(subscription = %self.name, ?grace, "handlers still running after the shutdown grace period; their messages will be redelivered");
            task.abort();
        }
        if let Some(close) = self.closer.take() {
            close().await?;
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.task.is_none() {
            return;
        }
        // Dropped without a shutdown: stop it all the same, and close the consumer once the
        // dispatcher is done, in the background.
        self.control.stop();
        if let (Some(close), Ok(runtime)) =
            (self.closer.take(), tokio::runtime::Handle::try_current())
        {
            let control = self.control.clone();
            runtime.spawn(async move {
                control.stopped().await;
                if let Err(error) = close().await {
                    tracing::debug!(%error, "closing a dropped subscription's consumer failed");
                }
            });
        }
    }
}
