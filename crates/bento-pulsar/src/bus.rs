//! [`PulsarBus`]: the [`MessageBus`] on Apache Pulsar.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_application::backend::{self, DispatchSettings, OpenGate};
use bento_application::{
    BusError, ConsumerLag, EnvelopeHandler, HealthCheck, MessageBus, PublishOptions,
    SchemaDefinition, SchemaRegistry, Source, Subscription, SubscriptionKind, SubscriptionSpec,
};
use bento_domain::Envelope;
use futures::future::BoxFuture;
use parking_lot::RwLock;
use pulsar::SubType;

use crate::batch_acks::BatchAcknowledgement;
use crate::config::BatchAckSetting;
use crate::config::PulsarConfig;
use crate::consumer::{ConsumerSpec, DeliverySender, SettleTarget, Worker};
use crate::error::describe;
use crate::producer::{self, Client, DeclareError, Producers, Sending};
use crate::schema::{self, Registered, TopicSchema};
use crate::topics::{self, Topics};

/// Deliveries buffered between the consumers of one subscription and its dispatcher.
const DELIVERY_BUFFER: usize = 256;

/// How long a health probe waits for the broker: below the readiness endpoint's own bound.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The topic a health probe looks up (in the configured tenant and namespace); looking a topic
/// up does not create it.
const HEALTH_PROBE_TOPIC: &str = "bento-health-probe";

/// The Pulsar [`MessageBus`]. Cheap to clone; clones share the connection and producers.
///
/// ```no_run
/// # async fn demo() -> Result<(), bento_application::BusError> {
/// use bento_pulsar::{PulsarBus, PulsarConfig};
///
/// let bus = PulsarBus::connect(PulsarConfig::default()).await?;
/// // Arc<dyn MessageBus>, or wrap it: bento_application::Bus::new(Arc::new(bus), codec)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PulsarBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: PulsarConfig,
    client: Client,
    topics: Topics,
    producers: Arc<Producers>,
    gate: OpenGate,
    /// How batches are acknowledged, decided at the first subscription.
    batch_acks: tokio::sync::OnceCell<BatchAcknowledgement>,
    /// The schemas declared by event type, for the topics other than the type's own that its
    /// events are published to (an explicit topic, another tenant's).
    by_event_type: RwLock<HashMap<String, TopicSchema>>,
}

impl std::fmt::Debug for PulsarBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarBus")
            .field("service_url", &self.inner.config.service_url)
            .field("tenant", &self.inner.config.tenant)
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

impl PulsarBus {
    /// Validates `config` and connects to the broker.
    ///
    /// Fails with [`BusError::Connection`] naming the service URL if the broker cannot be
    /// reached within [`PulsarConfig::connect_timeout_ms`], and with [`BusError::Config`] naming
    /// the configuration key if a setting is invalid.
    pub async fn connect(config: PulsarConfig) -> Result<PulsarBus, BusError> {
        let client = crate::client::connect_client(&config).await?;
        tracing::info!(service_url = %config.service_url, "connected to Pulsar");
        Ok(PulsarBus {
            inner: Arc::new(Inner {
                topics: Topics::new(&config),
                producers: Arc::new(Producers::new(client.clone(), &config)),
                client,
                config,
                gate: OpenGate::new(),
                batch_acks: tokio::sync::OnceCell::new(),
                by_event_type: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// How this bus acknowledges the messages of a batch: as configured, or, with `auto`, by
    /// index if the broker says (admin API, asked once) it takes acknowledgements by batch
    /// index, the whole batch at once otherwise.
    pub async fn batch_acknowledgement(&self) -> BatchAcknowledgement {
        let config = &self.inner.config;
        *self
            .inner
            .batch_acks
            .get_or_init(|| async {
                match config.consumer.batch_acknowledgement {
                    BatchAckSetting::ByIndex => BatchAcknowledgement::ByIndex,
                    BatchAckSetting::WholeBatch => BatchAcknowledgement::WholeBatch,
                    BatchAckSetting::Auto => ask_the_broker(config).await,
                }
            })
            .await
    }

    /// The configuration the bus runs with.
    pub fn config(&self) -> &PulsarConfig {
        &self.inner.config
    }

    /// The full name of `topic` as this bus publishes and subscribes to it: a plain name is
    /// placed in the configured tenant and namespace, a full `persistent://` name is kept.
    pub fn topic_name(&self, topic: &str) -> String {
        self.inner.topics.full(topic, None)
    }

    /// The retry topic of subscription `subscription` reading `topic`:
    /// `<full topic>-<subscription>-RETRY`.
    pub fn retry_topic(&self, topic: &str, subscription: &str) -> String {
        topics::retry_topic(&self.topic_name(topic), subscription)
    }

    fn check_open(&self) -> Result<(), BusError> {
        self.inner.gate.check()
    }

    /// The schema declared for `event_type`, for its events on `topic` (not the type's own
    /// topic, which has it already): none on a topic several event types share, which one
    /// schema cannot describe.
    fn preferred(&self, event_type: &str, topic: &str) -> Option<TopicSchema> {
        if self.inner.topics.is_shared(topic) {
            return None;
        }
        self.inner.by_event_type.read().get(event_type).cloned()
    }

    /// The schema a subscription's consumer carries, so the broker checks it against the
    /// topic's: the codec's schema for the handler's event type, when the topic has a schema
    /// of that type. A topic with a schema of another type is refused, naming both; a topic
    /// without a schema gets none from a consumer (its producers register it), since the
    /// broker refuses a consumer's schema on a topic that already holds messages without one.
    async fn consumer_schema(
        &self,
        spec: &SubscriptionSpec,
        topic: &str,
    ) -> Result<Option<pulsar::proto::Schema>, BusError> {
        let Some(definition) = &spec.schema else {
            return Ok(None);
        };
        match self.inner.producers.registered(topic).await {
            Registered::Schema(info) => {
                schema::check_against(topic, &info, definition).map_err(|reason| {
                    BusError::Subscribe {
                        topic: topic.to_owned(),
                        subscription: spec.name.clone(),
                        source: reason.into(),
                    }
                })?;
                Ok(Some(schema::to_pulsar(definition)))
            }
            Registered::Nothing => Ok(None),
            Registered::Unknown => Ok(Some(schema::to_pulsar(definition))),
        }
    }

    fn destination(
        &self,
        envelope: &Envelope,
        options: &PublishOptions,
    ) -> Result<String, BusError> {
        if envelope.event_type.is_empty() && options.topic.is_none() {
            return Err(BusError::Publish {
                topic: String::new(),
                source: (format!(
                    "message {} has no event type and no topic was given, so it has nowhere to go",
                    envelope.id
                ))
                .into(),
            });
        }
        Ok(self.inner.topics.for_publish(
            &envelope.event_type,
            envelope.tenant.as_deref(),
            options.topic.as_deref(),
        ))
    }

    /// The topics of a subscription, checked: the topic it reads, whose tenant and namespace
    /// exist once this returns, and the dead-letter topic, which can be written.
    async fn subscription_topics(
        &self,
        spec: &SubscriptionSpec,
    ) -> Result<SubscriptionTopics, BusError> {
        let inner = &self.inner;
        let topic = match &spec.source {
            Source::Topic(topic) => inner.topics.full(topic, None),
            other => other.topic(|event_type| inner.topics.for_event_type(event_type)),
        };
        if let Err(why) = topics::check_segment(&spec.name) {
            return Err(BusError::Subscribe {
                topic,
                subscription: spec.name.clone(),
                source: format!("invalid subscription name: {why}").into(),
            });
        }
        let only_event_type = match &spec.source {
            Source::EventType(event_type) if inner.topics.is_shared(&topic) => {
                Some(event_type.clone())
            }
            _ => None,
        };
        if let Err(reason) = inner.producers.ensure_namespace(&topic).await {
            return Err(BusError::Subscribe {
                topic,
                subscription: spec.name.clone(),
                source: reason.into(),
            });
        }
        let dead_letter_topic = inner
            .topics
            .full(&spec.dead_letter.topic_for(&topic, &spec.name), None);
        // Retries and dead letters are copies of the topic's messages: their topics carry the
        // topic's schema, so that readers of them find the messages described too.
        inner.producers.copies_of(&dead_letter_topic, &topic);
        inner
            .producers
            .copies_of(&topics::retry_topic(&topic, &spec.name), &topic);
        // A dead-letter topic that cannot be written fails the subscription now, not its first
        // poison message (the retry topic is checked by creating its consumer below).
        if let Err(error) = inner.producers.prepare(&dead_letter_topic).await {
            return Err(BusError::Subscribe {
                topic,
                subscription: spec.name.clone(),
                source: format!("the dead-letter topic cannot be written: {error}").into(),
            });
        }
        Ok(SubscriptionTopics {
            topic,
            only_event_type,
            dead_letter_topic,
        })
    }

    /// Starts the subscription's two consumers, both feeding `deliveries`: the main one on
    /// `topic` and the one on its retry topic. If the second cannot start, the first is closed.
    async fn start_workers(
        &self,
        spec: &SubscriptionSpec,
        topic: &str,
        only_event_type: Option<String>,
        target: &Arc<SettleTarget>,
        deliveries: DeliverySender,
    ) -> Result<(Worker, Worker), BusError> {
        let inner = &self.inner;
        let batch_acks = self.batch_acknowledgement().await;
        let consumer = |topic: &str, kind: SubType, only_event_type: Option<String>| ConsumerSpec {
            topic: topic.to_owned(),
            subscription: spec.name.clone(),
            kind,
            batch_acks,
            receiver_queue_size: inner.config.consumer.receiver_queue_size,
            only_event_type,
            timeout: inner.config.connect_timeout(),
            schema: None,
        };
        // The main consumer carries the codec's schema, so the broker checks it against the
        // topic's now; the retry topic's consumer reads whatever its copies carry.
        let main_consumer = ConsumerSpec {
            schema: self.consumer_schema(spec, topic).await?,
            ..consumer(topic, sub_type(spec.kind)?, only_event_type)
        };
        let main = Worker::start(
            inner.client.clone(),
            main_consumer,
            target.clone(),
            deliveries.clone(),
        )
        .await?;
        // Delayed delivery, which the retries rely on, works on shared subscriptions only.
        let retries = match Worker::start(
            inner.client.clone(),
            consumer(&target.retry_topic, SubType::Shared, None),
            target.clone(),
            deliveries,
        )
        .await
        {
            Ok(worker) => worker,
            Err(error) => {
                let _ = main.close().await;
                return Err(error);
            }
        };
        Ok((main, retries))
    }
}

/// The topics a subscription reads from and writes to, as `subscribe` resolved them.
struct SubscriptionTopics {
    /// The topic the subscription reads.
    topic: String,
    /// On a topic shared by several event types: the one the subscription handles.
    only_event_type: Option<String>,
    /// Where its dead letters go.
    dead_letter_topic: String,
}

/// Whether the broker takes acknowledgements by batch index
/// (`acknowledgmentAtBatchIndexLevelEnabled`), from its runtime configuration. Anything but a
/// clear yes means the whole batch at once, which is safe on any broker.
async fn ask_the_broker(config: &PulsarConfig) -> BatchAcknowledgement {
    if config.auth.oauth2.is_some() {
        tracing::info!("the admin client does not support OAuth2: batches are acknowledged whole");
        return BatchAcknowledgement::WholeBatch;
    }
    let answer = match crate::admin::PulsarAdmin::new(config) {
        Ok(admin) => admin
            .broker_configuration()
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match answer
        .as_ref()
        .map(|settings| settings.get("acknowledgmentAtBatchIndexLevelEnabled"))
    {
        Ok(Some(enabled)) if enabled == "true" => BatchAcknowledgement::ByIndex,
        Ok(_) => {
            tracing::info!(
                "the broker does not take acknowledgements by batch index: batches are acknowledged whole"
            );
            BatchAcknowledgement::WholeBatch
        }
        Err(error) => {
            tracing::warn!(%error, "could not ask the broker whether it takes acknowledgements by batch index: batches are acknowledged whole");
            BatchAcknowledgement::WholeBatch
        }
    }
}

/// Pulsar's subscription type for `kind`; a kind newer than this backend is refused, not
/// served as another.
fn sub_type(kind: SubscriptionKind) -> Result<SubType, BusError> {
    Ok(match kind {
        SubscriptionKind::Exclusive => SubType::Exclusive,
        SubscriptionKind::Shared => SubType::Shared,
        SubscriptionKind::Failover => SubType::Failover,
        SubscriptionKind::KeyShared => SubType::KeyShared,
        other => {
            return Err(BusError::Unsupported {
                backend: "pulsar",
                what: format!("the `{other}` subscription kind"),
                reason: "this version of the Pulsar backend does not know it".to_owned(),
            });
        }
    })
}

#[async_trait]
impl SchemaRegistry for PulsarBus {
    /// Registers `schema` on the event type's topic by (re-)creating the topic's producer with
    /// it: the broker checks it against the topic's registered versions with the namespace's
    /// compatibility strategy and stores it as a new version if it differs. Later publishes to
    /// the topic go through that producer.
    ///
    /// First the topic's registered schema (read with the admin API) is compared with it: a
    /// topic whose schema is of another type (an `AVRO` topic for a JSON event), or describes
    /// another record, is refused with [`BusError::Backend`] naming the topic, the event type,
    /// the registered type and the codec, whether or not the broker would have let it pass.
    /// An incompatible schema of the same type fails with [`BusError::Backend`] naming the
    /// topic, the strategy and the broker's reason.
    ///
    /// On a topic several event types share (`topics.shared`, or types mapped to one topic)
    /// nothing is registered: one Pulsar schema describes one record type.
    async fn declare_schema(&self, definition: &SchemaDefinition) -> Result<(), BusError> {
        self.check_open()?;
        let topic = self.inner.topics.for_event_type(&definition.event_type);
        let declared = TopicSchema::declared(definition);
        let remember = |declared: TopicSchema| {
            self.inner
                .by_event_type
                .write()
                .insert(definition.event_type.clone(), declared);
        };
        if self.inner.topics.is_shared(&topic) {
            tracing::info!(%topic, event_type = %definition.event_type, "several event types share the topic: no schema is registered on it");
            remember(declared);
            return Ok(());
        }
        if let Registered::Schema(info) = self.inner.producers.registered(&topic).await
            && let Err(reason) = schema::check_against(&topic, &info, definition)
        {
            return Err(BusError::backend(
                "pulsar",
                format!(
                    "registering the {} schema of `{}` on topic `{topic}`",
                    definition.kind, definition.event_type
                ),
                reason,
            ));
        }
        match self.inner.producers.declare(&topic, declared.clone()).await {
            Ok(()) => {
                remember(declared);
                tracing::info!(%topic, event_type = %definition.event_type, kind = %definition.kind, "schema declared");
                Ok(())
            }
            Err(DeclareError::Incompatible(reason)) => {
                let strategy = schema::strategy(&self.inner.config, &topic).await;
                Err(schema::refused(&topic, definition, &strategy, &reason))
            }
            Err(DeclareError::Failed(reason)) => Err(BusError::Publish {
                topic,
                source: (format!(
                    "declaring the {} schema of `{}`: {reason}",
                    definition.kind, definition.event_type
                ))
                .into(),
            }),
        }
    }
}

#[async_trait]
impl HealthCheck for PulsarBus {
    /// A topic lookup on the broker connection, within [`HEALTH_TIMEOUT`]: the pulsar crate
    /// answers it only when a broker does, so a dead or unreachable broker reads as unhealthy
    /// within that time, and a broker that came back as healthy on the next probe.
    async fn health(&self) -> Result<(), BusError> {
        self.check_open()?;
        let probe = self.inner.topics.full(HEALTH_PROBE_TOPIC, None);
        let unhealthy = |reason: String| BusError::Connection {
            backend: "pulsar",
            address: self.inner.config.service_url.clone(),
            source: reason.into(),
        };
        // Never cancelled mid-connect (a probe while the broker is down): see `detached`.
        let client = self.inner.client.clone();
        let lookup = async move { client.lookup_topic(probe).await };
        match crate::detached::within(HEALTH_TIMEOUT, lookup).await {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(unhealthy(format!(
                "the broker did not answer a topic lookup: {}",
                describe(&error)
            ))),
            None => Err(unhealthy(format!(
                "no answer to a topic lookup within {HEALTH_TIMEOUT:?}"
            ))),
        }
    }
}

#[async_trait]
impl ConsumerLag for PulsarBus {
    /// The subscription's backlog from the admin API's topic stats (`msgBacklog`); `None`
    /// (cannot tell) with OAuth2, which the admin client does not support.
    async fn consumer_lag(&self, topic: &str, subscription: &str) -> Result<Option<u64>, BusError> {
        if self.config().auth.oauth2.is_some() {
            return Ok(None);
        }
        let admin = crate::admin::PulsarAdmin::new(self.config())?;
        let stats = admin.topic_stats(topic).await.map_err(|error| {
            BusError::backend("pulsar", format!("reading the stats of `{topic}`"), error)
        })?;
        Ok(stats
            .subscriptions
            .get(subscription)
            .map(|sub| sub.msg_backlog.max(0) as u64))
    }
}

#[async_trait]
impl MessageBus for PulsarBus {
    fn backend(&self) -> &'static str {
        "pulsar"
    }

    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<(), BusError> {
        self.check_open()?;
        let topic = self.destination(&envelope, &options)?;
        let deliver_at = options.deliver.map(|at| at.instant());
        let message = producer::message(envelope, deliver_at, None);
        let preferred = |event_type: &str| self.preferred(event_type, &topic);
        self.inner
            .producers
            .publish(
                &topic,
                message,
                deliver_at.is_some(),
                Sending::Publish(Some(&preferred)),
            )
            .await
    }

    /// Hands every envelope to its producer without waiting, then waits for all receipts.
    /// Consecutive envelopes for one topic are handed over together, in order. On an error
    /// some of the envelopes may have been stored.
    async fn publish_batch(
        &self,
        envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        self.check_open()?;
        let deliver_at = options.deliver.map(|at| at.instant());
        let delayed = deliver_at.is_some();
        let producers = &self.inner.producers;
        let mut pending = Vec::with_capacity(envelopes.len());
        let mut envelopes = envelopes.into_iter().peekable();
        while let Some(first) = envelopes.peek() {
            let topic = self.destination(first, &options)?;
            // The run of envelopes that go where the first one goes, made into messages one by
            // one as the producer takes them.
            let (event_type, tenant) = (first.event_type.clone(), first.tenant.clone());
            let run = std::iter::from_fn(|| {
                envelopes.next_if(|e| e.event_type == event_type && e.tenant == tenant)
            });
            let messages = run.map(|envelope| producer::message(envelope, deliver_at, None));
            let preferred = |event_type: &str| self.preferred(event_type, &topic);
            producers
                .send_all(
                    &topic,
                    messages,
                    delayed,
                    Sending::Publish(Some(&preferred)),
                    &mut pending,
                )
                .await?;
        }
        producers.confirm_all(pending).await
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Result<Subscription, BusError> {
        self.check_open()?;
        let SubscriptionTopics {
            topic,
            only_event_type,
            dead_letter_topic,
        } = self.subscription_topics(&spec).await?;
        let target = Arc::new(SettleTarget {
            producers: self.inner.producers.clone(),
            retry_topic: topics::retry_topic(&topic, &spec.name),
        });
        let (deliveries, stream) = futures::channel::mpsc::channel(DELIVERY_BUFFER);
        let (main, retries) = self
            .start_workers(&spec, &topic, only_event_type, &target, deliveries)
            .await?;
        tracing::info!(%topic, subscription = %spec.name, kind = %spec.kind, retry_topic = %target.retry_topic, %dead_letter_topic, "subscribed");
        let settings = DispatchSettings::new(&topic, spec, dead_letter_topic);
        let closer: Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BusError>> + Send> =
            Box::new(move || {
                Box::pin(async move {
                    let closed_main = main.close().await;
                    let closed_retries = retries.close().await;
                    closed_main.and(closed_retries)
                })
            });
        Ok(backend::spawn(stream, handler, settings, Some(closer)))
    }

    fn as_health_check(&self) -> Option<&dyn HealthCheck> {
        Some(self)
    }

    fn as_consumer_lag(&self) -> Option<&dyn ConsumerLag> {
        Some(self)
    }

    fn as_schema_registry(&self) -> Option<&dyn SchemaRegistry> {
        Some(self)
    }

    fn topic_for(&self, event_type: &str) -> String {
        self.inner.topics.for_event_type(event_type)
    }

    async fn close(&self) -> Result<(), BusError> {
        if !self.inner.gate.shut() {
            return Ok(());
        }
        self.inner.producers.close().await
    }
}
