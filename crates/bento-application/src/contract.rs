//! What a service declares through its [`crate::Bus`]: the event types it sends (declared or
//! published) and the subscriptions it reads, with their topics and schemas. A machine-readable
//! contract (an AsyncAPI document, see `bento-asyncapi`) is made from it.
//!
//! The bus notes each event type the first time it is declared or encoded and each subscription
//! when it is made; schemas of published types are asked of the codec only when the contract is
//! read ([`crate::Bus::contract`]), so publishing pays one map look-up per message for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{CodecError, SchemaDefinition, SubscriptionKind};

/// An event type as a contract describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageContract {
    /// The event type (`bento-event-type`).
    pub event_type: String,
    /// Its schema version (`bento-event-version`), when the service knows the type.
    pub version: Option<u32>,
    /// The kind of aggregate it belongs to (`bento-aggregate-type`), when known.
    pub aggregate_type: Option<String>,
    /// Its payload's media type when one was encoded (`content-type`); otherwise the format
    /// follows from [`MessageContract::schema`], JSON without one.
    pub content_type: Option<String>,
    /// The payload's schema, from the codec; `None` when it has none for the type.
    pub schema: Option<SchemaDefinition>,
    /// Why the codec could not describe the payload, if it failed to.
    pub schema_error: Option<String>,
}

/// An event type a service sends, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendContract {
    /// The topic, as the backend names it ([`crate::MessageBus::topic_for`]).
    pub topic: String,
    /// What is sent.
    pub message: MessageContract,
}

/// A subscription a service reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveContract {
    /// The subscription's name (Pulsar subscription, Kafka consumer group).
    pub subscription: String,
    /// The topic it reads, as the backend names it.
    pub topic: String,
    /// How its consumers share messages.
    pub kind: SubscriptionKind,
    /// The event types its handler reads; empty for an untyped handler (any envelope).
    pub messages: Vec<MessageContract>,
    /// Where its dead letters go (as configured, before the backend's own naming).
    pub dead_letter_topic: String,
}

/// What a service declared through its bus: what it sends and what it reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contract {
    /// The backend's name (`memory`, `pulsar`, `kafka`).
    pub backend: String,
    /// The event types it sends, by event type.
    pub sends: Vec<SendContract>,
    /// Its subscriptions, in the order they were made.
    pub receives: Vec<ReceiveContract>,
}

/// Asks the codec for a published type's schema, when the contract is read.
pub(crate) type SchemaThunk =
    Arc<dyn Fn() -> Result<Option<SchemaDefinition>, CodecError> + Send + Sync>;

enum Schema {
    Known(Option<SchemaDefinition>),
    Failed(String),
    Later(SchemaThunk),
}

struct Sent {
    topic: String,
    version: u32,
    aggregate_type: &'static str,
    content_type: Option<String>,
    schema: Schema,
}

/// The contract as a bus and its clones note it.
#[derive(Default)]
pub(crate) struct ContractLog {
    sends: RwLock<BTreeMap<&'static str, Sent>>,
    receives: RwLock<Vec<ReceiveContract>>,
}

impl ContractLog {
    /// Whether `event_type` is noted already (the fast path of every publish).
    pub(crate) fn knows(&self, event_type: &str) -> bool {
        self.sends.read().contains_key(event_type)
    }

    /// Notes that `event_type` is sent to `topic`; its schema is asked of `schema` when the
    /// contract is read. Known types are left as they are.
    pub(crate) fn send(
        &self,
        event_type: &'static str,
        topic: String,
        version: u32,
        aggregate_type: &'static str,
        content_type: Option<String>,
        schema: SchemaThunk,
    ) {
        self.sends.write().entry(event_type).or_insert(Sent {
            topic,
            version,
            aggregate_type,
            content_type,
            schema: Schema::Later(schema),
        });
    }

    /// Like [`ContractLog::send`], with the schema (or the codec's error) known already.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_known(
        &self,
        event_type: &'static str,
        topic: String,
        version: u32,
        aggregate_type: &'static str,
        content_type: Option<String>,
        schema: Result<Option<SchemaDefinition>, CodecError>,
    ) {
        self.sends.write().entry(event_type).or_insert(Sent {
            topic,
            version,
            aggregate_type,
            content_type,
            schema: match schema {
                Ok(schema) => Schema::Known(schema),
                Err(error) => Schema::Failed(error.to_string()),
            },
        });
    }

    /// Notes a subscription; one already noted under the same name (a competing consumer) is
    /// not noted again.
    pub(crate) fn receive(&self, receive: ReceiveContract) {
        let mut receives = self.receives.write();
        if !receives
            .iter()
            .any(|known| known.subscription == receive.subscription)
        {
            receives.push(receive);
        }
    }

    /// The contract so far; schemas not asked for yet are asked now.
    pub(crate) fn snapshot(&self, backend: &str) -> Contract {
        let sends = self
            .sends
            .read()
            .iter()
            .map(|(event_type, sent)| {
                let (schema, schema_error) = match &sent.schema {
                    Schema::Known(schema) => (schema.clone(), None),
                    Schema::Failed(error) => (None, Some(error.clone())),
                    Schema::Later(thunk) => match thunk() {
                        Ok(schema) => (schema, None),
                        Err(error) => (None, Some(error.to_string())),
                    },
                };
                SendContract {
                    topic: sent.topic.clone(),
                    message: MessageContract {
                        event_type: (*event_type).to_owned(),
                        version: Some(sent.version),
                        aggregate_type: Some(sent.aggregate_type.to_owned()),
                        content_type: sent.content_type.clone(),
                        schema,
                        schema_error,
                    },
                }
            })
            .collect();
        Contract {
            backend: backend.to_owned(),
            sends,
            receives: self.receives.read().clone(),
        }
    }
}

impl MessageContract {
    /// An event type known by name only (a route of an untyped router).
    pub fn named(event_type: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            ..Self::default()
        }
    }
}
