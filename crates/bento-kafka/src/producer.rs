//! The idempotent producer every publish, retry and dead letter goes through.

use std::borrow::Cow;
use std::time::Duration;

use bento_application::{BusError, wire};
use bento_domain::Envelope;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::admin::KafkaAdmin;
use crate::config::KafkaConfig;
use crate::context::BentoContext;

/// A record ready to produce: key, payload, headers.
pub(crate) struct Outgoing {
    pub(crate) key: Option<String>,
    pub(crate) payload: bytes::Bytes,
    /// Bento's header names are borrowed constants: no copy of each per record.
    pub(crate) headers: Vec<(Cow<'static, str>, String)>,
}

impl Outgoing {
    /// The envelope as a record: ordering key as the record key, metadata as headers.
    pub(crate) fn from_envelope(envelope: &Envelope) -> Self {
        Self {
            key: envelope.ordering_key.clone(),
            payload: envelope.payload.clone(),
            headers: wire::to_headers(envelope),
        }
    }

    /// Adds (or replaces) a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((Cow::Borrowed(name), value.into()));
        self
    }

    fn kafka_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(
            OwnedHeaders::new_with_capacity(self.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        )
    }
}

/// Where a produced record landed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stored {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// The shared producer and the topic bookkeeping around it.
#[derive(Clone)]
pub(crate) struct KafkaProducer {
    producer: FutureProducer<BentoContext>,
    admin: KafkaAdmin,
    create_topics: bool,
    partitions: u32,
    delivery_timeout: Duration,
}

impl KafkaProducer {
    pub(crate) fn new(config: &KafkaConfig, admin: KafkaAdmin) -> Result<Self, BusError> {
        let producer = config
            .producer_config()
            .create_with_context(BentoContext::plain())
            .map_err(|e| BusError::Connection {
                backend: "kafka",
                address: config.bootstrap_servers.clone(),
                source: format!("cannot create the producer: {e}").into(),
            })?;
        Ok(Self {
            producer,
            admin,
            create_topics: config.create_topics,
            partitions: config.partitions,
            delivery_timeout: config.delivery_timeout(),
        })
    }

    pub(crate) fn client(&self) -> &FutureProducer<BentoContext> {
        &self.producer
    }

    pub(crate) fn admin(&self) -> &KafkaAdmin {
        &self.admin
    }

    /// Creates the topics that do not exist yet (when topic creation is on).
    pub(crate) async fn ensure_topics(&self, topics: &[impl AsRef<str>]) -> Result<(), BusError> {
        if !self.create_topics {
            return Ok(());
        }
        let missing: Vec<String> = topics
            .iter()
            .map(AsRef::as_ref)
            .filter(|t| !self.admin.is_known(t))
            .map(str::to_owned)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.admin.create_topics(&missing, self.partitions).await
    }

    /// Produces one record and waits for the broker's acknowledgement.
    pub(crate) async fn send(&self, topic: &str, record: &Outgoing) -> Result<Stored, BusError> {
        self.ensure_topics(&[topic]).await?;
        let delivery = self.enqueue(topic, record).await?;
        let stored = delivery.await?;
        self.admin.mark_known(topic);
        Ok(stored)
    }

    /// Hands one record to the producer's queue (waiting while it is full); the returned
    /// future resolves on the broker's acknowledgement. Records enqueued in order are stored
    /// in order per partition (idempotent producer).
    pub(crate) async fn enqueue(
        &self,
        topic: &str,
        record: &Outgoing,
    ) -> Result<impl Future<Output = Result<Stored, BusError>> + use<>, BusError> {
        let headers = record.kafka_headers();
        let deadline = tokio::time::Instant::now() + self.delivery_timeout;
        let mut future_record = FutureRecord::<str, [u8]>::to(topic)
            .payload(&record.payload[..])
            .headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_str());
        }
        let delivery = loop {
            match self.producer.send_result(future_record) {
                Ok(delivery) => break delivery,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) if tokio::time::Instant::now() < deadline => {
                    future_record = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err((error, _)) => {
                    return Err(BusError::Publish {
                        topic: topic.to_owned(),
                        source: error.into(),
                    });
                }
            }
        };
        let topic = topic.to_owned();
        Ok(async move {
            match delivery.await {
                Ok(Ok(stored)) => Ok(Stored {
                    partition: stored.partition,
                    offset: stored.offset,
                }),
                Ok(Err((error, _))) => Err(BusError::Publish {
                    topic,
                    source: error.into(),
                }),
                Err(_) => Err(BusError::Publish {
                    topic,
                    source: "the producer was closed before the broker acknowledged".into(),
                }),
            }
        })
    }

    /// Waits until every queued record is acknowledged, up to the delivery timeout.
    pub(crate) async fn flush(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        let timeout = self.delivery_timeout;
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(|error| BusError::backend("kafka", "flushing the producer", error))?
            .map_err(|error| BusError::backend("kafka", "flushing the producer", error))
    }
}
