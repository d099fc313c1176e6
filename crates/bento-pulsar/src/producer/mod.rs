//! One producer per topic, created on first use and shared by every publish to that topic.
//! The messages they send are built in `message`.

mod message;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bento_application::BusError;
use parking_lot::RwLock;
use pulsar::producer::{Message, SendFuture};
use pulsar::proto::ServerError;
use pulsar::{ProducerOptions, TokioExecutor, proto};
use tokio::sync::{Mutex, OnceCell};

use crate::config::{Compression, PulsarConfig};
use crate::error::{describe, server_error};
use crate::namespaces::Namespaces;

pub(crate) use message::message;

/// The pulsar client the bus runs on.
pub(crate) type Client = pulsar::Pulsar<TokioExecutor>;
type RawProducer = pulsar::Producer<TokioExecutor>;

/// A producer, created once; the lock is held only while a message is handed to it, never
/// while its receipt is awaited.
///
/// A failed creation is kept too, so that publishes queued behind it fail at once instead of
/// each trying again in turn; the topic's entry is then replaced by a fresh one.
#[derive(Default)]
struct Slot {
    producer: OnceCell<Result<Mutex<RawProducer>, String>>,
}

/// The producers of one topic: the batching one (if batching is on) and the plain one, which
/// delayed messages always use because a batch carries no per-message delivery time.
struct TopicProducers {
    topic: String,
    batching: Slot,
    plain: Slot,
    /// Publishes on their way into the batching producer. The last one in flushes the batch:
    /// every message that could have joined it is already in, and waiting out the batch delay
    /// would only add latency.
    arriving: AtomicUsize,
}

/// The producers of one bus, keyed by full topic name.
pub(crate) struct Producers {
    client: Client,
    batching: Option<ProducerOptions>,
    plain: ProducerOptions,
    create_timeout: Duration,
    receipt_timeout: Duration,
    topics: RwLock<HashMap<String, Arc<TopicProducers>>>,
    /// Declared schemas by full topic name; every producer of such a topic carries its schema.
    schemas: RwLock<HashMap<String, proto::Schema>>,
    /// Creates missing tenants and namespaces before first use, when configured to.
    namespaces: Namespaces,
    closed: AtomicBool,
}

/// Why a schema could not be declared.
pub(crate) enum DeclareError {
    /// The broker refused the schema as incompatible with the topic's registered ones.
    Incompatible(String),
    /// Anything else (unreachable broker, timeout, other refusal).
    Failed(String),
}

/// A message handed to a producer, its receipt still to come.
pub(crate) struct Pending {
    producers: Arc<TopicProducers>,
    receipt: SendFuture,
}

impl Producers {
    pub(crate) fn new(client: Client, config: &PulsarConfig) -> Self {
        let compression = compression(config.producer.compression);
        let plain = ProducerOptions {
            compression: Some(compression),
            // Wait for room on the connection rather than fail with "slow down".
            block_queue_if_full: true,
            ..ProducerOptions::default()
        };
        let batching = config.producer.batching.then(|| ProducerOptions {
            batch_size: Some(config.producer.batch_max_messages),
            batch_byte_size: Some(config.producer.batch_max_bytes),
            batch_timeout: Some(Duration::from_millis(config.producer.batch_max_delay_ms)),
            ..plain.clone()
        });
        Self {
            client,
            batching,
            plain,
            create_timeout: config.connect_timeout(),
            // The client fails a receipt after the operation timeout (resending across a
            // reconnect meanwhile); this bound only guards against one that never resolves.
            receipt_timeout: config.operation_timeout() + config.connect_timeout(),
            topics: RwLock::new(HashMap::new()),
            schemas: RwLock::new(HashMap::new()),
            namespaces: Namespaces::new(config),
            closed: AtomicBool::new(false),
        }
    }

    /// Hands `message` to the producer of `topic` (created if needed) without waiting for the
    /// broker; `delayed` messages bypass batching. The pulsar crate bounds this step by the
    /// operation timeout.
    pub(crate) async fn send(
        &self,
        topic: &str,
        message: Message,
        delayed: bool,
    ) -> Result<Pending, BusError> {
        let mut pending = Vec::with_capacity(1);
        self.send_all(topic, std::iter::once(message), delayed, &mut pending)
            .await?;
        pending.pop().ok_or_else(|| BusError::Publish {
            topic: topic.to_owned(),
            source: "the producer took no message".into(),
        })
    }

    /// Like [`Producers::send`] for several messages to one topic, handed over in order under
    /// one lock of the producer, so that no other publish comes between them.
    pub(crate) async fn send_all(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = Message>,
        delayed: bool,
        pending: &mut Vec<Pending>,
    ) -> Result<(), BusError> {
        let batching = self.batching.is_some() && !delayed;
        let producers = self.topic(topic);
        let producer = self.producer(&producers, batching).await?;
        if batching {
            producers.arriving.fetch_add(1, Ordering::AcqRel);
        }
        let mut producer = producer.lock().await;
        let mut handed = Ok(());
        for message in messages {
            match producer.send_non_blocking(message).await {
                Ok(receipt) => pending.push(Pending {
                    producers: producers.clone(),
                    receipt,
                }),
                Err(error) => {
                    handed = Err(publish_error(topic, &error));
                    break;
                }
            }
        }
        // Flushing under the lock keeps the batch in the order its messages were handed over.
        if batching
            && producers.arriving.fetch_sub(1, Ordering::AcqRel) == 1
            && handed.is_ok()
            && let Err(error) = producer.send_batch().await
        {
            handed = Err(publish_error(topic, &error));
        }
        drop(producer);
        if handed.is_err() {
            self.evict(&producers);
        }
        handed
    }

    /// Creates, now, the producer a (not delayed) publish to `topic` would use, so that a topic
    /// that cannot be written (missing with topic auto-creation off, no permission) fails here
    /// rather than at the first message sent to it.
    pub(crate) async fn prepare(&self, topic: &str) -> Result<(), BusError> {
        let producers = self.topic(topic);
        self.producer(&producers, self.batching.is_some())
            .await
            .map(drop)
    }

    /// The batching or plain producer of `producers`, created on first use; a failed creation
    /// evicts the topic's entry so that the next publish tries afresh.
    async fn producer<'p>(
        &self,
        producers: &'p Arc<TopicProducers>,
        batching: bool,
    ) -> Result<&'p Mutex<RawProducer>, BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let slot = if batching {
            &producers.batching
        } else {
            &producers.plain
        };
        let topic = &producers.topic;
        match slot
            .producer
            .get_or_init(|| self.create(topic, batching))
            .await
        {
            Ok(producer) => Ok(producer),
            Err(reason) => {
                self.evict(producers);
                Err(BusError::Publish {
                    topic: topic.clone(),
                    source: reason.clone().into(),
                })
            }
        }
    }

    /// Waits for the broker's receipt of a message handed over by [`Producers::send`].
    pub(crate) async fn confirm(&self, pending: Pending) -> Result<(), BusError> {
        let Pending { producers, receipt } = pending;
        receipt.await.map(drop).map_err(|error| {
            self.evict(&producers);
            publish_error(&producers.topic, &error)
        })
    }

    /// Waits for every receipt; the first error, if any.
    pub(crate) async fn confirm_all(&self, pending: Vec<Pending>) -> Result<(), BusError> {
        let receipts = futures::future::join_all(pending.into_iter().map(|p| self.confirm(p)));
        receipts.await.into_iter().collect()
    }

    /// Sends and waits for the receipt, within the operation and connect timeouts.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        message: Message,
        delayed: bool,
    ) -> Result<(), BusError> {
        let publish = async {
            let pending = self.send(topic, message, delayed).await?;
            self.confirm(pending).await
        };
        match tokio::time::timeout(self.receipt_timeout, publish).await {
            Ok(result) => result,
            Err(_) => Err(BusError::Timeout {
                operation: format!("publishing to `{topic}`"),
                after: self.receipt_timeout,
            }),
        }
    }

    fn topic(&self, topic: &str) -> Arc<TopicProducers> {
        if let Some(producers) = self.topics.read().get(topic) {
            return producers.clone();
        }
        self.topics
            .write()
            .entry(topic.to_owned())
            .or_insert_with(|| {
                Arc::new(TopicProducers {
                    topic: topic.to_owned(),
                    batching: Slot::default(),
                    plain: Slot::default(),
                    arriving: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Forgets the producers of a topic after a failure, so that the next publish creates
    /// fresh ones (unless another publish already replaced them).
    fn evict(&self, failed: &Arc<TopicProducers>) {
        let mut topics = self.topics.write();
        if topics
            .get(&failed.topic)
            .is_some_and(|current| Arc::ptr_eq(current, failed))
        {
            topics.remove(&failed.topic);
            tracing::debug!(topic = %failed.topic, "dropping failed producers; the next publish creates new ones");
        }
    }

    /// Registers `schema` for `topic`: creates a producer carrying it, so the broker checks and
    /// stores it now, and makes that producer (and every later one of the topic) the one
    /// publishes use. On failure the topic keeps its earlier schema, if any.
    pub(crate) async fn declare(
        &self,
        topic: &str,
        schema: proto::Schema,
    ) -> Result<(), DeclareError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(DeclareError::Failed("the bus is closed".into()));
        }
        let previous = self.schemas.write().insert(topic.to_owned(), schema);
        let producer = match self.build(topic, false).await {
            Ok(producer) => producer,
            Err(error) => {
                let mut schemas = self.schemas.write();
                match previous {
                    Some(previous) => schemas.insert(topic.to_owned(), previous),
                    None => schemas.remove(topic),
                };
                return Err(error);
            }
        };
        let fresh = Arc::new(TopicProducers {
            topic: topic.to_owned(),
            batching: Slot::default(),
            plain: Slot {
                producer: OnceCell::new_with(Some(Ok(Mutex::new(producer)))),
            },
            arriving: AtomicUsize::new(0),
        });
        // The replaced producers close once the publishes still holding them are done.
        self.topics.write().insert(topic.to_owned(), fresh);
        Ok(())
    }

    async fn create(&self, topic: &str, batching: bool) -> Result<Mutex<RawProducer>, String> {
        match self.build(topic, batching).await {
            Ok(producer) => Ok(Mutex::new(producer)),
            Err(DeclareError::Incompatible(reason) | DeclareError::Failed(reason)) => Err(reason),
        }
    }

    /// Makes sure the tenant and namespace of `topic` exist, when the bus is configured to
    /// create them (`create_namespaces`); why not, if that failed.
    pub(crate) async fn ensure_namespace(&self, topic: &str) -> Result<(), String> {
        self.namespaces.ensure(topic).await
    }

    async fn build(&self, topic: &str, batching: bool) -> Result<RawProducer, DeclareError> {
        self.ensure_namespace(topic)
            .await
            .map_err(DeclareError::Failed)?;
        let mut options = match (batching, &self.batching) {
            (true, Some(options)) => options.clone(),
            _ => self.plain.clone(),
        };
        options.schema = self.schemas.read().get(topic).cloned();
        // Unique per producer instance: with broker deduplication on, a producer that reused an
        // earlier name would start again at sequence id 0 and the broker would drop its
        // messages as duplicates.
        let name = format!("bento-{}", uuid::Uuid::now_v7().simple());
        let build = self
            .client
            .producer()
            .with_topic(topic)
            .with_name(name.as_str())
            .with_options(options)
            .build();
        match tokio::time::timeout(self.create_timeout, build).await {
            Ok(Ok(producer)) => {
                tracing::debug!(topic, producer = %name, batching, "created producer");
                Ok(producer)
            }
            Ok(Err(error)) if server_error(&error) == Some(ServerError::IncompatibleSchema) => {
                Err(DeclareError::Incompatible(describe(&error)))
            }
            Ok(Err(error)) => Err(DeclareError::Failed(format!(
                "could not create a producer: {}",
                describe(&error)
            ))),
            Err(_) => Err(DeclareError::Failed(format!(
                "could not create a producer within {:?} (connect_timeout_ms)",
                self.create_timeout
            ))),
        }
    }

    /// Flushes and closes every producer; later sends fail with [`BusError::Closed`].
    pub(crate) async fn close(&self) -> Result<(), BusError> {
        self.closed.store(true, Ordering::Release);
        let topics: Vec<Arc<TopicProducers>> =
            self.topics.write().drain().map(|(_, p)| p).collect();
        let mut first_error = None;
        for producers in topics {
            for (slot, batching) in [(&producers.batching, true), (&producers.plain, false)] {
                let Some(Ok(producer)) = slot.producer.get() else {
                    continue;
                };
                let mut producer = producer.lock().await;
                let closing = async {
                    if batching {
                        producer.send_batch().await?;
                    }
                    producer.close().await
                };
                let topic = &producers.topic;
                let result = match tokio::time::timeout(self.receipt_timeout, closing).await {
                    Ok(Ok(())) => Ok(()),
                    // An idle producer whose connection dropped (a broker restart) has nothing
                    // left to send: publishes in flight fail on their own receipts.
                    Ok(Err(error)) if is_disconnected(&error) => {
                        tracing::debug!(%topic, "producer closed while disconnected");
                        Ok(())
                    }
                    Ok(Err(error)) => Err(BusError::Publish {
                        topic: topic.clone(),
                        source: format!("closing the producer failed: {}", describe(&error)).into(),
                    }),
                    Err(_) => Err(BusError::Timeout {
                        operation: format!("closing the producer of `{topic}`"),
                        after: self.receipt_timeout,
                    }),
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "could not close a producer cleanly");
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Whether `error` says the producer's connection is gone.
fn is_disconnected(error: &pulsar::Error) -> bool {
    use pulsar::error::{ConnectionError, ProducerError};
    matches!(
        error,
        pulsar::Error::Connection(ConnectionError::Disconnected)
            | pulsar::Error::Producer(ProducerError::Connection(ConnectionError::Disconnected))
    )
}

fn compression(choice: Compression) -> pulsar::compression::Compression {
    use pulsar::compression as c;
    match choice {
        Compression::None => c::Compression::None,
        Compression::Lz4 => c::Compression::Lz4(c::CompressionLz4::default()),
        Compression::Zstd => c::Compression::Zstd(c::CompressionZstd::default()),
        Compression::Zlib => c::Compression::Zlib(c::CompressionZlib::default()),
        Compression::Snappy => c::Compression::Snappy(c::CompressionSnappy::default()),
    }
}

fn publish_error(topic: &str, error: &pulsar::Error) -> BusError {
    BusError::Publish {
        topic: topic.to_owned(),
        source: describe(error).into(),
    }
}
