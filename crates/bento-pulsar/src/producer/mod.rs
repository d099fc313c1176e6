//! One producer per topic, created on first use and shared by every publish to that topic.
//! The messages they send are built in `message`.

mod close;
mod create;
mod message;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bento_application::BusError;
use bento_application::backend::OpenGate;
use parking_lot::RwLock;
use pulsar::producer::{Message, SendFuture};
use pulsar::{ProducerOptions, TokioExecutor};
use tokio::sync::{Mutex, OnceCell};

use crate::error::describe;
use crate::namespaces::Namespaces;
use crate::schema::{Registered, Registry, TopicSchema};

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
    /// The schema both carry (`None`: none), decided before the first of them is created.
    schema: OnceCell<Option<TopicSchema>>,
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
    declared: RwLock<HashMap<String, TopicSchema>>,
    /// Retry and dead-letter topics, with the topic whose messages they hold copies of: their
    /// producers carry that topic's schema.
    copies: RwLock<HashMap<String, String>>,
    /// Copy topics whose producer the broker refused with their source's schema (the copy
    /// topic has another already): they keep their own.
    own_schema: RwLock<HashSet<String>>,
    /// Reads the schemas topics have registered.
    registry: Registry,
    /// Creates missing tenants and namespaces before first use, when configured to.
    namespaces: Namespaces,
    gate: OpenGate,
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
    /// Hands `message` to the producer of `topic` (created if needed) without waiting for the
    /// broker; `delayed` messages bypass batching. The pulsar crate bounds this step by the
    /// operation timeout.
    pub(crate) async fn send(
        &self,
        topic: &str,
        message: Message,
        delayed: bool,
        kind: Sending<'_>,
    ) -> Result<Pending, BusError> {
        let mut pending = Vec::with_capacity(1);
        self.send_all(topic, std::iter::once(message), delayed, kind, &mut pending)
            .await?;
        pending.pop().ok_or_else(|| BusError::Publish {
            topic: topic.to_owned(),
            source: "the producer took no message".into(),
        })
    }

    /// Like [`Producers::send`] for several messages to one topic, handed over in order under
    /// one lock of the producer, so that no other publish comes between them.
    ///
    /// New messages ([`Sending::Publish`]) must be of the topic's schema type: one that is not
    /// (a JSON event for a topic of Avro records) is refused, with the messages after it.
    pub(crate) async fn send_all(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = Message>,
        delayed: bool,
        kind: Sending<'_>,
        pending: &mut Vec<Pending>,
    ) -> Result<(), BusError> {
        let batching = self.batching.is_some() && !delayed;
        let producers = self.topic(topic);
        let (check, preferred) = match kind {
            Sending::Publish(preferred) => (true, preferred),
            Sending::Copy => (false, None),
        };
        let mut messages = messages.into_iter().peekable();
        let schema = match producers.schema.get() {
            Some(schema) => schema,
            None => {
                let first_event_type = messages
                    .peek()
                    .and_then(|m| m.properties.get(bento_application::wire::EVENT_TYPE))
                    .cloned()
                    .unwrap_or_default();
                self.schema_of(&producers, preferred, &first_event_type)
                    .await?
            }
        };
        let producer = self.producer(&producers, schema, batching).await?;
        if batching {
            producers.arriving.fetch_add(1, Ordering::AcqRel);
        }
        let mut producer = producer.lock().await;
        let mut handed = Ok(());
        let mut refused = false;
        for message in messages {
            if check
                && let Some(schema) = schema
                && let Err(reason) = admits(topic, schema, &message)
            {
                handed = Err(BusError::Publish {
                    topic: topic.to_owned(),
                    source: reason.into(),
                });
                refused = true;
                break;
            }
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
        if handed.is_err() && !refused {
            self.evict(&producers);
        }
        handed
    }

    /// The schema the producers of `producers` carry, decided on first use: see
    /// [`Producers::resolve`].
    async fn schema_of<'p>(
        &self,
        producers: &'p TopicProducers,
        preferred: Option<Preferred<'_>>,
        event_type: &str,
    ) -> Result<&'p Option<TopicSchema>, BusError> {
        if let Some(schema) = producers.schema.get() {
            return Ok(schema);
        }
        let preferred = preferred.and_then(|preferred| preferred(event_type));
        producers
            .schema
            .get_or_try_init(|| self.resolve(&producers.topic, preferred))
            .await
    }

    /// The schema for the producers of `topic`, in this order:
    ///
    /// 1. the schema this bus declared for the topic;
    /// 2. for a retry or dead-letter topic, the schema of the topic it holds copies of
    ///    (declared by this bus, or registered), unless the broker refused that one here;
    /// 3. `preferred` (the schema this bus declared for the event type of the first message,
    ///    given for a topic that is not the type's own, nor shared), checked against the
    ///    topic's registered schema type;
    /// 4. the schema registered on the topic, so that publishes of the same encoding pass a
    ///    broker that enforces schemas and readers of the topic find the messages described;
    /// 5. none.
    async fn resolve(
        &self,
        topic: &str,
        preferred: Option<TopicSchema>,
    ) -> Result<Option<TopicSchema>, BusError> {
        if let Some(schema) = self.declared.read().get(topic) {
            return Ok(Some(schema.clone()));
        }
        // The namespace first: asked about a topic of a namespace that does not exist yet,
        // the broker keeps stale bundle data for it once it is created.
        if let Err(reason) = self.ensure_namespace(topic).await {
            return Err(BusError::Publish {
                topic: topic.to_owned(),
                source: reason.into(),
            });
        }
        let source = self.copies.read().get(topic).cloned();
        if let Some(source) = source
            && !self.own_schema.read().contains(topic)
        {
            let declared = self.declared.read().get(&source).cloned();
            if let Some(schema) = declared {
                return Ok(Some(schema.of_source(&source)));
            }
            if let Registered::Schema(info) = self.registry.lookup(&source).await {
                return Ok(Some(
                    TopicSchema::registered(&source, &info).of_source(&source),
                ));
            }
        }
        let registered = self.registry.lookup(topic).await;
        if let Some(preferred) = preferred {
            if let (Registered::Schema(info), Some(definition)) =
                (&registered, &preferred.definition)
                && let Err(reason) = crate::schema::check_against(topic, info, definition)
            {
                return Err(BusError::Publish {
                    topic: topic.to_owned(),
                    source: reason.into(),
                });
            }
            return Ok(Some(preferred));
        }
        Ok(match registered {
            Registered::Schema(info) => Some(TopicSchema::registered(topic, &info)),
            Registered::Nothing | Registered::Unknown => None,
        })
    }

    /// Marks `topic` as holding copies of `source`'s messages (a retry or dead-letter topic):
    /// its producers carry `source`'s schema.
    pub(crate) fn copies_of(&self, topic: &str, source: &str) {
        self.copies
            .write()
            .insert(topic.to_owned(), source.to_owned());
    }

    /// What the broker has registered for `topic`.
    pub(crate) async fn registered(&self, topic: &str) -> Registered {
        self.registry.lookup(topic).await
    }

    /// Creates, now, the producer a (not delayed) publish to `topic` would use, so that a topic
    /// that cannot be written (missing with topic auto-creation off, no permission) fails here
    /// rather than at the first message sent to it.
    ///
    /// A copy topic prepared without a schema (its source has none yet) is let go again, so
    /// that its first real message finds the schema its source has by then.
    ///
    /// A copy topic whose own schema the broker finds incompatible with its source's is tried
    /// once more, with its own (see [`Producers::create`]).
    pub(crate) async fn prepare(&self, topic: &str) -> Result<(), BusError> {
        let own_schema = |producers: &Self| producers.own_schema.read().contains(topic);
        let mut had_own_schema = own_schema(self);
        loop {
            let producers = self.topic(topic);
            let schema = self.schema_of(&producers, None, "").await?;
            match self
                .producer(&producers, schema, self.batching.is_some())
                .await
            {
                Ok(_) => {
                    if schema.is_none() && self.copies.read().contains_key(topic) {
                        self.evict(&producers);
                    }
                    return Ok(());
                }
                Err(_) if !had_own_schema && own_schema(self) => had_own_schema = true,
                Err(error) => return Err(error),
            }
        }
    }

    /// The batching or plain producer of `producers`, created on first use; a failed creation
    /// evicts the topic's entry so that the next publish tries afresh.
    async fn producer<'p>(
        &self,
        producers: &'p Arc<TopicProducers>,
        schema: &Option<TopicSchema>,
        batching: bool,
    ) -> Result<&'p Mutex<RawProducer>, BusError> {
        self.gate.check()?;
        let slot = if batching {
            &producers.batching
        } else {
            &producers.plain
        };
        let topic = &producers.topic;
        match slot
            .producer
            .get_or_init(|| self.create(topic, schema.as_ref(), batching))
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
        kind: Sending<'_>,
    ) -> Result<(), BusError> {
        let publish = async {
            let pending = self.send(topic, message, delayed, kind).await?;
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
                    schema: OnceCell::new(),
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
        schema: TopicSchema,
    ) -> Result<(), DeclareError> {
        if self.gate.is_shut() {
            return Err(DeclareError::Failed("the bus is closed".into()));
        }
        let producer = self.build(topic, Some(&schema), false).await?;
        self.declared
            .write()
            .insert(topic.to_owned(), schema.clone());
        let fresh = Arc::new(TopicProducers {
            topic: topic.to_owned(),
            schema: OnceCell::new_with(Some(Some(schema))),
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

    async fn create(
        &self,
        topic: &str,
        schema: Option<&TopicSchema>,
        batching: bool,
    ) -> Result<Mutex<RawProducer>, String> {
        match self.build(topic, schema, batching).await {
            Ok(producer) => Ok(Mutex::new(producer)),
            Err(DeclareError::Incompatible(reason)) => {
                if schema.is_some()
                    && self.copies.read().contains_key(topic)
                    && self.own_schema.write().insert(topic.to_owned())
                {
                    // The copy topic has a schema of its own: the next try takes that one.
                    tracing::warn!(
                        %topic,
                        reason = %reason,
                        "the broker refused the schema of the topic this retry or dead-letter topic holds copies of; its copies are stored with its own schema from now on (give the subscription a dead-letter topic of its own)"
                    );
                }
                Err(match schema {
                    Some(schema) => format!(
                        "the broker refused the producer's {} schema ({}): {reason}",
                        schema.kind, schema.origin
                    ),
                    None => format!(
                        "the broker refused a producer without a schema ({reason}): the topic \
                         has a schema and the broker enforces schema validation, and this bus \
                         could not read the topic's schema to publish with it"
                    ),
                })
            }
            Err(DeclareError::Failed(reason)) => Err(reason),
        }
    }

    /// Makes sure the tenant and namespace of `topic` exist, when the bus is configured to
    /// create them (`create_namespaces`); why not, if that failed.
    pub(crate) async fn ensure_namespace(&self, topic: &str) -> Result<(), String> {
        self.namespaces.ensure(topic).await
    }
}

/// The schema a bus declared for an event type, asked with the type's name.
pub(crate) type Preferred<'a> = &'a (dyn Fn(&str) -> Option<TopicSchema> + Sync);

/// How messages handed to a topic's producer are treated.
#[derive(Clone, Copy)]
pub(crate) enum Sending<'a> {
    /// New messages, which must be of the topic's schema type. The function gives the schema
    /// this bus declared for an event type (that of the first message), when that should apply
    /// to the topic (see [`Producers::resolve`]); it is asked once per topic.
    Publish(Option<Preferred<'a>>),
    /// Copies of messages already on a topic (retries, dead letters): not checked again.
    Copy,
}

/// Whether `message` is of `schema`'s type; the error names the topic, the event type, the
/// schema type and the codec.
fn admits(topic: &str, schema: &TopicSchema, message: &Message) -> Result<(), String> {
    let property = |name: &str| {
        message
            .properties
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    };
    schema.admits(
        topic,
        property(bento_application::wire::EVENT_TYPE),
        property(bento_application::wire::CONTENT_TYPE),
    )
}

fn publish_error(topic: &str, error: &pulsar::Error) -> BusError {
    BusError::Publish {
        topic: topic.to_owned(),
        source: describe(error).into(),
    }
}
