use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bento_application::backend::{self, DispatchSettings, OpenGate};
use bento_application::{
    BusError, ConsumerLag, EnvelopeHandler, HealthCheck, MessageBus, PublishOptions,
    SchemaDefinition, SchemaRegistry, Subscription, SubscriptionSpec,
};
use bento_domain::Envelope;
use futures::FutureExt;
use rdkafka::producer::Producer;

use crate::admin::KafkaAdmin;
use crate::config::KafkaConfig;
use crate::consumer::{Deliveries, Settler, format_due};
use crate::headers;
use crate::producer::{KafkaProducer, Outgoing};
use crate::registry::{Registry, RegistryClient};
use crate::topics;

mod subscribing;

use subscribing::{leave, wait_for_partitions};

/// How long a health probe waits for cluster metadata: below the readiness endpoint's bound.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(1_500);

/// After an empty first assignment (cooperative rebalancing hands partitions over in a second
/// round), how long `subscribe` waits for partitions before returning anyway.
const SECOND_ROUND_WAIT: Duration = Duration::from_secs(3);

/// The Kafka message bus: one idempotent producer, one consumer-group member per subscription.
/// Cheap to clone; clones share the producer.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: KafkaProducer,
    gate: OpenGate,
    /// The schema registry, when one is configured.
    registry: Option<Registry>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Validates `config`, creates the producer and fetches the cluster metadata once, so an
    /// unreachable broker fails here with [`BusError::Connection`] within
    /// `connect_timeout_ms`.
    pub async fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        config.validate()?;
        let registry = config
            .schema_registry
            .as_ref()
            .map(Registry::new)
            .transpose()?;
        let admin = KafkaAdmin::new(&config)?;
        let producer = KafkaProducer::new(&config, admin)?;
        let brokers = reach_cluster(
            &producer,
            &config.bootstrap_servers,
            config.connect_timeout(),
        )
        .await?;
        tracing::info!(bootstrap_servers = %config.bootstrap_servers, brokers, "connected to Kafka");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                gate: OpenGate::new(),
                registry,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Topic and consumer-group administration over the same brokers.
    pub fn admin(&self) -> &KafkaAdmin {
        self.inner.producer.admin()
    }

    /// The client of the schema registry (`[messaging.kafka.schema_registry]`), when one is
    /// configured.
    pub fn schema_registry(&self) -> Option<&RegistryClient> {
        self.inner.registry.as_ref().map(Registry::client)
    }

    /// With a schema registry: `record`'s payload in the Confluent wire format, when the
    /// envelope's event type has a declared schema (registered on the topic at its first
    /// publish there).
    async fn frame(
        &self,
        envelope: &Envelope,
        options: &PublishOptions,
        record: &mut Outgoing,
    ) -> Result<(), BusError> {
        let Some(registry) = &self.inner.registry else {
            return Ok(());
        };
        // Delayed records wait in `<topic>.delayed` but belong to the topic, and its subject.
        let topic = match &options.topic {
            Some(topic) => topic.clone(),
            None => self.topic_for(&envelope.event_type),
        };
        if let Some(framed) = registry.frame(envelope, &topic).await? {
            record.payload = framed;
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), BusError> {
        self.inner.gate.check()
    }

    /// The topic and record of one publish (delayed ones go to `<topic>.delayed`).
    fn outgoing(
        &self,
        envelope: &Envelope,
        options: &PublishOptions,
    ) -> Result<(String, Outgoing), BusError> {
        let topic = match &options.topic {
            Some(topic) => topic.clone(),
            None => self.topic_for(&envelope.event_type),
        };
        topics::check_name(&topic).map_err(|reason| BusError::Publish {
            topic: topic.clone(),
            source: reason.into(),
        })?;
        let record = Outgoing::from_envelope(envelope);
        match options.deliver {
            Some(at) if !at.delay_from_now().is_zero() => {
                let due = format_due(at.instant());
                let delayed = topics::delayed_topic(&topic);
                topics::check_name(&delayed).map_err(|reason| BusError::Publish {
                    topic: delayed.clone(),
                    source: reason.into(),
                })?;
                Ok((delayed, record.header(headers::DELIVER_AT, due)))
            }
            _ => Ok((topic, record)),
        }
    }

    fn subscribe_error(
        topic: &str,
        spec: &SubscriptionSpec,
        reason: impl Into<String>,
    ) -> BusError {
        BusError::Subscribe {
            topic: topic.to_owned(),
            subscription: spec.name.clone(),
            source: reason.into().into(),
        }
    }
}

#[async_trait]
impl HealthCheck for KafkaBus {
    /// A metadata request to the cluster within [`HEALTH_TIMEOUT`]: with every broker down or
    /// unreachable it fails, and it succeeds again on the next probe once a broker is back.
    async fn health(&self) -> Result<(), BusError> {
        self.check_open()?;
        let inner = &self.inner;
        reach_cluster(
            &inner.producer,
            &inner.config.bootstrap_servers,
            HEALTH_TIMEOUT,
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl ConsumerLag for KafkaBus {
    /// The consumer group's lag on `topic`: high watermark minus committed offset, summed over
    /// the partitions.
    async fn consumer_lag(&self, topic: &str, subscription: &str) -> Result<Option<u64>, BusError> {
        let partitions = self.admin().group_lag(subscription, topic).await?;
        Ok(Some(partitions.iter().map(|p| p.lag.max(0) as u64).sum()))
    }
}

#[async_trait]
impl SchemaRegistry for KafkaBus {
    /// Registers `definition` under its subject (by the configured subject name strategy) for
    /// the event type's topic: the registry checks it against the subject's versions with the
    /// subject's compatibility level, and an incompatible schema fails with
    /// [`BusError::Backend`] naming the topic, the event type, the subject, the strategy, the
    /// level and the registry's reason. The event type's records are then framed with the
    /// schema's id; a publish to another topic registers the schema there first.
    async fn declare_schema(&self, definition: &SchemaDefinition) -> Result<(), BusError> {
        self.check_open()?;
        let Some(registry) = &self.inner.registry else {
            return Ok(());
        };
        let topic = self.topic_for(&definition.event_type);
        registry.declare(&topic, definition).await
    }
}

#[async_trait]
impl MessageBus for KafkaBus {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<(), BusError> {
        self.check_open()?;
        let (topic, mut record) = self.outgoing(&envelope, &options)?;
        self.frame(&envelope, &options, &mut record).await?;
        let stored = self.inner.producer.send(&topic, &record).await?;
        tracing::trace!(%topic, partition = stored.partition, offset = stored.offset, message_id = %envelope.id, "published");
        Ok(())
    }

    async fn publish_batch(
        &self,
        envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        self.check_open()?;
        let mut records = envelopes
            .iter()
            .map(|e| self.outgoing(e, &options))
            .collect::<Result<Vec<_>, _>>()?;
        for (envelope, (_, record)) in envelopes.iter().zip(records.iter_mut()) {
            self.frame(envelope, &options, record).await?;
        }
        // A batch goes to one topic or a few: a linear search beats sorting a copy of every
        // record's topic name.
        let mut topics: Vec<&str> = Vec::new();
        for (topic, _) in &records {
            if !topics.contains(&topic.as_str()) {
                topics.push(topic);
            }
        }
        self.inner.producer.ensure_topics(&topics).await?;
        // Enqueue in order (stored in order per partition), then wait for every ack.
        let mut pending = Vec::with_capacity(records.len());
        for (topic, record) in &records {
            pending.push(self.inner.producer.enqueue(topic, record).await?);
        }
        for result in futures::future::join_all(pending).await {
            result?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Result<Subscription, BusError> {
        self.check_open()?;
        let config = &self.inner.config;
        let topic = spec.source.topic(|event_type| self.topic_for(event_type));
        Self::check_spec(&topic, &spec)?;
        let group = spec.name.clone();
        let tiers = topics::retry_tiers(spec.retry.as_ref());
        let (read, dead_letter_topic) = self.subscription_topics(&topic, &spec, tiers).await?;

        let settler = Arc::new(Settler {
            producer: self.inner.producer.clone(),
            topic: topic.clone(),
            group: group.clone(),
            tiers,
        });
        let (tx, mut deliveries) = Deliveries::channel();
        let (members, mut assignments) = self
            .start_members(&spec, &read, &settler, tx, &mut deliveries)
            .await?;

        // Return only once the groups gave these consumers their partitions (and their start
        // offsets are committed), so what is published next reaches them. The pollers run
        // meanwhile: a member is assigned partitions only while it polls.
        let timeout = config.subscribe_timeout();
        let waited = deliveries
            .drive(wait_for_partitions(&mut assignments, timeout))
            .await;
        let partitions = match waited {
            Ok(partitions) => partitions,
            Err(member_group) => {
                drop(deliveries);
                leave(members).await;
                return Err(BusError::Timeout {
                    operation: format!(
                        "joining consumer group `{member_group}` on topic `{topic}`"
                    ),
                    after: timeout,
                });
            }
        };
        tracing::info!(%group, %topic, kind = %spec.kind, partitions, "subscribed");

        let settings = DispatchSettings::new(&topic, spec, dead_letter_topic);

        Ok(backend::spawn(
            deliveries,
            handler,
            settings,
            // Runs once the dispatcher stopped and dropped the pollers with its deliveries.
            Some(Box::new(move || {
                async move {
                    leave(members).await;
                    Ok(())
                }
                .boxed()
            })),
        ))
    }

    fn as_health_check(&self) -> Option<&dyn HealthCheck> {
        Some(self)
    }

    fn as_consumer_lag(&self) -> Option<&dyn ConsumerLag> {
        Some(self)
    }

    fn as_schema_registry(&self) -> Option<&dyn SchemaRegistry> {
        self.inner
            .registry
            .as_ref()
            .map(|_| self as &dyn SchemaRegistry)
    }

    fn topic_for(&self, event_type: &str) -> String {
        match self.inner.config.topics.get(event_type) {
            Some(topic) => topic.clone(),
            None => topics::sanitize(event_type),
        }
    }

    async fn close(&self) -> Result<(), BusError> {
        if !self.inner.gate.shut() {
            return Ok(());
        }
        let flushed = self.inner.producer.flush().await;
        let in_flight = self.inner.producer.client().in_flight_count();
        if in_flight > 0 {
            tracing::warn!(
                in_flight,
                "Kafka producer closed with unacknowledged records"
            );
        }
        flushed
    }
}

/// One metadata request to the cluster within `timeout`: how many brokers it lists, or a
/// connection error naming `address`.
async fn reach_cluster(
    producer: &KafkaProducer,
    address: &str,
    timeout: Duration,
) -> Result<usize, BusError> {
    let client = producer.client().clone();
    let answered = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
    })
    .await;
    let unreachable = |reason: String| BusError::Connection {
        backend: "kafka",
        address: address.to_owned(),
        source: reason.into(),
    };
    match answered {
        Ok(Ok(brokers)) if brokers > 0 => Ok(brokers),
        Ok(Ok(_)) => Err(unreachable("the cluster metadata lists no brokers".into())),
        Ok(Err(error)) => Err(unreachable(format!(
            "no cluster metadata within {timeout:?}: {error}"
        ))),
        Err(error) => Err(unreachable(format!("the metadata request failed: {error}"))),
    }
}
