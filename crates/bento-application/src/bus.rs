use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_domain::Envelope;
use chrono::{DateTime, Utc};

use crate::{BusError, EnvelopeHandler, SchemaDefinition, Subscription, SubscriptionSpec};

/// When a delayed message becomes visible to consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliverAt {
    /// After this long, counted from the publish.
    After(Duration),
    /// At this instant.
    At(DateTime<Utc>),
}

impl DeliverAt {
    /// How long from now until delivery (zero if the instant has passed).
    pub fn delay_from_now(&self) -> Duration {
        match *self {
            DeliverAt::After(d) => d,
            DeliverAt::At(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
        }
    }

    /// The instant of delivery.
    pub fn instant(&self) -> DateTime<Utc> {
        match *self {
            DeliverAt::After(d) => {
                Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
            }
            DeliverAt::At(at) => at,
        }
    }
}

/// How to publish: when to deliver and, if not the default, where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Deliver later instead of at once.
    pub deliver: Option<DeliverAt>,
    /// Publish to this topic instead of the one the backend maps the event type to.
    pub topic: Option<String>,
}

impl PublishOptions {
    /// Deliver after `delay`.
    pub fn deliver_after(delay: Duration) -> Self {
        Self {
            deliver: Some(DeliverAt::After(delay)),
            ..Self::default()
        }
    }

    /// Deliver at `at`.
    pub fn deliver_at(at: DateTime<Utc>) -> Self {
        Self {
            deliver: Some(DeliverAt::At(at)),
            ..Self::default()
        }
    }

    /// Publish to an explicit topic.
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// The messaging port: what every backend (memory, Pulsar, Kafka) implements.
///
/// Its core is publishing, subscribing and closing; what only some backends can do (a health
/// check, consumer lag, a schema registry) are capability traits a backend hands out through
/// the `as_*` methods, and `dyn MessageBus` answers for the others.
///
/// Object safe, so services hold an `Arc<dyn MessageBus>` and switch backend by configuration.
/// Most code uses the typed [`crate::Bus`] facade on top of it.
#[async_trait]
pub trait MessageBus: Send + Sync + 'static {
    /// Short backend name (`memory`, `pulsar`, `kafka`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Publishes one envelope; returns once the backend has stored it.
    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<(), BusError>;

    /// Publishes several envelopes, in order; returns once all are stored.
    async fn publish_batch(
        &self,
        envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        for envelope in envelopes {
            self.publish(envelope, options.clone()).await?;
        }
        Ok(())
    }

    /// Starts consuming per `spec`, handing each message to `handler` through the dispatcher.
    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Result<Subscription, BusError>;

    /// The topic an event type is published to, as this backend names it.
    fn topic_for(&self, event_type: &str) -> String;

    /// Flushes producers and releases connections. Subscriptions should be shut down first.
    async fn close(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// The backend's health check, if it can tell whether it is healthy (see
    /// [`HealthCheck`]); `None` by default.
    fn as_health_check(&self) -> Option<&dyn HealthCheck> {
        None
    }

    /// The backend's consumer-lag reader, if it can tell (see [`ConsumerLag`]); `None` by
    /// default.
    fn as_consumer_lag(&self) -> Option<&dyn ConsumerLag> {
        None
    }

    /// The backend's schema registry, if it has one (see [`SchemaRegistry`]); `None` by
    /// default.
    fn as_schema_registry(&self) -> Option<&dyn SchemaRegistry> {
        None
    }
}

/// A backend that can tell whether it can serve publishes and subscriptions right now (its
/// broker connection is up). A readiness probe calls it, so it should be cheap and not block
/// for long.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// `Ok` when healthy; the error says what is wrong.
    async fn health(&self) -> Result<(), BusError>;
}

/// A backend that can tell how far behind a subscription is.
#[async_trait]
pub trait ConsumerLag: Send + Sync {
    /// How many messages of `topic` (as the backend names it) the subscription `subscription`
    /// has yet to consume; `None` where it cannot tell for this subscription.
    async fn consumer_lag(&self, topic: &str, subscription: &str) -> Result<Option<u64>, BusError>;
}

/// A backend with a schema registry.
#[async_trait]
pub trait SchemaRegistry: Send + Sync {
    /// Registers the schema of an event type's topic, so that an incompatible schema fails
    /// here, at start-up, rather than at the first message.
    async fn declare_schema(&self, schema: &SchemaDefinition) -> Result<(), BusError>;
}

/// The capabilities, asked of any bus: what a backend without one answers.
impl dyn MessageBus {
    /// The backend's health ([`HealthCheck`]); healthy where it cannot tell.
    pub async fn health(&self) -> Result<(), BusError> {
        match self.as_health_check() {
            Some(check) => check.health().await,
            None => Ok(()),
        }
    }

    /// A subscription's lag ([`ConsumerLag`]); `None` where the backend cannot tell.
    pub async fn consumer_lag(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<Option<u64>, BusError> {
        match self.as_consumer_lag() {
            Some(lag) => lag.consumer_lag(topic, subscription).await,
            None => Ok(None),
        }
    }

    /// Registers `schema` ([`SchemaRegistry`]); accepted and ignored without a registry.
    pub async fn declare_schema(&self, schema: &SchemaDefinition) -> Result<(), BusError> {
        match self.as_schema_registry() {
            Some(registry) => registry.declare_schema(schema).await,
            None => Ok(()),
        }
    }
}
