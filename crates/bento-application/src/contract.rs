//! What a service declares through its [`crate::Bus`]: the event types it sends (declared or
//! published) and the subscriptions it reads, with their topics and schemas. A machine-readable
//! contract (an AsyncAPI document, see `bento-asyncapi`) is made from it.
//!
//! The bus notes each event type the first time it is declared or encoded and each subscription
//! when it is made; schemas of published types are asked of the codec only when the contract is
//! read ([`crate::Bus::contract`]); publishing pays a few loads per message for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Event-type names a contract knows, by the address and length of their text, checked with a
/// few loads instead of a lock and string comparisons: the check every publish makes.
///
/// Only `&'static str` names are added, and static text is never freed or changed, so a name
/// found at an added address and length is that name. Names past the first [`FAST_NAMES`] are
/// found in the map instead.
#[derive(Default)]
struct KnownNames {
    /// Slots filled; each is written once, before the count that covers it.
    count: AtomicUsize,
    names: [(AtomicUsize, AtomicUsize); FAST_NAMES],
}

/// Event types a contract knows without a lock.
const FAST_NAMES: usize = 16;

impl KnownNames {
    fn contains(&self, name: &str) -> bool {
        let count = self.count.load(Ordering::Acquire);
        let (address, length) = (name.as_ptr() as usize, name.len());
        self.names[..count].iter().any(|(at, len)| {
            at.load(Ordering::Relaxed) == address && len.load(Ordering::Relaxed) == length
        })
    }

    /// Adds `name`; called under the write lock of the map, so one writer at a time.
    fn add(&self, name: &'static str) {
        let count = self.count.load(Ordering::Relaxed);
        if count == FAST_NAMES || self.contains(name) {
            return;
        }
        let (at, len) = &self.names[count];
        at.store(name.as_ptr() as usize, Ordering::Relaxed);
        len.store(name.len(), Ordering::Relaxed);
        self.count.store(count + 1, Ordering::Release);
    }
}

/// The contract as a bus and its clones note it.
#[derive(Default)]
pub(crate) struct ContractLog {
    sends: RwLock<BTreeMap<&'static str, Sent>>,
    /// The first names noted in `sends`, checked without a lock.
    known: KnownNames,
    receives: RwLock<Vec<ReceiveContract>>,
}

impl ContractLog {
    /// Whether `event_type` is noted already (asked on every publish).
    pub(crate) fn knows(&self, event_type: &str) -> bool {
        self.known.contains(event_type) || self.sends.read().contains_key(event_type)
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
        self.note(
            event_type,
            Sent {
                topic,
                version,
                aggregate_type,
                content_type,
                schema: Schema::Later(schema),
            },
        );
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
        self.note(
            event_type,
            Sent {
                topic,
                version,
                aggregate_type,
                content_type,
                schema: match schema {
                    Ok(schema) => Schema::Known(schema),
                    Err(error) => Schema::Failed(error.to_string()),
                },
            },
        );
    }

    /// Notes `sent` for `event_type` unless the type is known; the fast check learns the name
    /// under the map's write lock, so it has one writer at a time.
    fn note(&self, event_type: &'static str, sent: Sent) {
        let mut sends = self.sends.write();
        sends.entry(event_type).or_insert(sent);
        self.known.add(event_type);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn note(log: &ContractLog, event_type: &'static str) {
        log.send_known(event_type, event_type.to_owned(), 1, "agg", None, Ok(None));
    }

    #[test]
    fn a_noted_type_is_known_by_its_text_whatever_holds_it() {
        let log = ContractLog::default();
        assert!(!log.knows("orders.placed"));
        note(&log, "orders.placed");
        assert!(log.knows("orders.placed"));
        let copy = String::from("orders.placed");
        assert!(log.knows(&copy), "a copy of the name, at another address");
        assert!(!log.knows("orders.placee"), "same length, other text");
        assert!(!log.knows("orders.place"), "a prefix at the same address");
    }

    #[test]
    fn types_beyond_the_lock_free_slots_are_still_known() {
        let log = ContractLog::default();
        let names: Vec<&'static str> = (0..FAST_NAMES + 4)
            .map(|i| &*Box::leak(format!("type.{i}").into_boxed_str()))
            .collect();
        for name in &names {
            note(&log, name);
        }
        for name in &names {
            assert!(log.knows(name), "{name}");
        }
        assert!(!log.knows("type.unknown"));
    }
}
