//! # bento-asyncapi
//!
//! An [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) document of
//! what a Bento service declares through its bus ([`bento_application::Bus::contract`]):
//!
//! - **channels**: the topics, as the configured backend names them (Pulsar's full
//!   `persistent://tenant/namespace/topic` names, Kafka's topic names), the dead-letter topics
//!   of the service's subscriptions included;
//! - **operations**: `send` for each event type it declared or published (and each
//!   subscription's dead letters), `receive` for each subscription;
//! - **messages**: one per event type, with its payload schema (the Avro schema of Avro events,
//!   JSON Schema for JSON events, the `.proto` of Protobuf events), Bento's envelope headers
//!   ([`bento_application::wire`]) as message headers, and the correlation id;
//! - **servers and bindings** for Pulsar and Kafka.
//!
//! ```
//! # use bento_asyncapi::{AsyncApi, Broker};
//! # let contract = bento_application::Contract::default();
//! let document = AsyncApi::new(contract, Broker::Memory)
//!     .title("users")
//!     .version("1.2.0")
//!     .to_value();
//! # assert_eq!(document.unwrap()["asyncapi"], "3.0.0");
//! ```
//!
//! `bento_runtime::Bento::asyncapi` fills in the broker from the configuration; `bento
//! asyncapi` prints a service's document. See `docs/asyncapi.md`.

mod json_schema;
mod proto;
mod standalone;

pub use standalone::{json_schema_document, proto_file};

use std::collections::BTreeMap;
use std::sync::Arc;

use bento_application::{
    Contract, MessageContract, SchemaDefinition, SchemaKind, SubscriptionKind, wire,
};
use serde_json::{Map, Value, json};

/// The AsyncAPI version of the documents made here.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The Pulsar bindings version used (`bindingVersion`).
pub const PULSAR_BINDING_VERSION: &str = "0.1.0";

/// The Kafka bindings version used (`bindingVersion`).
pub const KAFKA_BINDING_VERSION: &str = "0.5.0";

/// AsyncAPI's schema format for Avro payloads.
pub const AVRO_SCHEMA_FORMAT: &str = "application/vnd.apache.avro;version=1.9.0";

/// Why a document could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncApiError {
    /// The document could not be written as JSON.
    #[error("cannot write the AsyncAPI document: {0}")]
    Json(#[from] serde_json::Error),
}

/// The broker a service runs on: the document's servers and bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broker {
    /// The in-memory bus: no server, no bindings.
    Memory,
    /// Apache Pulsar.
    Pulsar {
        /// `pulsar://host:port` or `pulsar+ssl://host:port`.
        service_url: String,
        /// The tenant topics are placed in.
        tenant: String,
        /// The namespace topics are placed in.
        namespace: String,
    },
    /// Apache Kafka.
    Kafka {
        /// `host:port[,host:port...]`.
        bootstrap_servers: String,
        /// Whether the connection uses TLS (`kafka-secure`).
        secure: bool,
    },
}

/// Maps a topic (as the bus noted it) to its full address on the broker.
pub type AddressFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Builds the AsyncAPI document of a [`Contract`].
#[derive(Clone)]
pub struct AsyncApi {
    contract: Contract,
    broker: Broker,
    title: String,
    version: String,
    description: Option<String>,
    address: AddressFn,
}

impl std::fmt::Debug for AsyncApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncApi")
            .field("title", &self.title)
            .field("version", &self.version)
            .field("broker", &self.broker)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

impl AsyncApi {
    /// The document of `contract` on `broker`, titled "Bento service", version `0.0.0`.
    pub fn new(contract: Contract, broker: Broker) -> Self {
        let address: AddressFn = match &broker {
            Broker::Pulsar {
                tenant, namespace, ..
            } => {
                let (tenant, namespace) = (tenant.clone(), namespace.clone());
                Arc::new(move |topic: &str| pulsar_full_name(topic, &tenant, &namespace))
            }
            _ => Arc::new(str::to_owned),
        };
        Self {
            contract,
            broker,
            title: "Bento service".into(),
            version: "0.0.0".into(),
            description: None,
            address,
        }
    }

    /// The document's title (`info.title`): the service's name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The version of the service's API (`info.version`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// A description (`info.description`, CommonMark).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// How topics map to their addresses on the broker (by default: Pulsar names placed in the
    /// tenant and namespace, others as they are).
    pub fn address_with(
        mut self,
        address: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        self.address = Arc::new(address);
        self
    }

    /// The contract it describes.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The document, pretty-printed JSON (which is YAML too).
    pub fn to_json_pretty(&self) -> Result<String, AsyncApiError> {
        Ok(serde_json::to_string_pretty(&self.to_value()?)?)
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Result<Value, AsyncApiError> {
        Ok(Builder::new(self).build())
    }
}

/// Pulsar's full name of `topic`, as the Pulsar backend places it.
fn pulsar_full_name(topic: &str, tenant: &str, namespace: &str) -> String {
    if topic.contains("://") {
        topic.to_owned()
    } else if topic.contains('/') {
        format!("persistent://{topic}")
    } else {
        format!("persistent://{tenant}/{namespace}/{topic}")
    }
}

/// A message of the document: one per event type (and one per event type's dead letters).
struct MessageEntry {
    contract: MessageContract,
    dead_letter: bool,
}

/// A channel of the document.
#[derive(Default)]
struct ChannelEntry {
    address: String,
    description: Vec<String>,
    /// Message keys on the channel.
    messages: Vec<String>,
}

struct Builder<'a> {
    api: &'a AsyncApi,
    channels: BTreeMap<String, ChannelEntry>,
    /// Channel id by address.
    channel_ids: BTreeMap<String, String>,
    messages: BTreeMap<String, MessageEntry>,
    operations: Map<String, Value>,
    schemas: BTreeMap<String, Value>,
}

impl<'a> Builder<'a> {
    fn new(api: &'a AsyncApi) -> Self {
        Self {
            api,
            channels: BTreeMap::new(),
            channel_ids: BTreeMap::new(),
            messages: BTreeMap::new(),
            operations: Map::new(),
            schemas: BTreeMap::new(),
        }
    }

    fn build(mut self) -> Value {
        let contract = &self.api.contract;
        for send in &contract.sends {
            let channel = self.channel(&send.topic, None);
            let message = self.message(&send.message, false);
            self.on_channel(&channel, &message);
            let id = operation_id("send", &send.message.event_type);
            self.operations.insert(
                id,
                json!({
                    "action": "send",
                    "title": format!("Send {}", send.message.event_type),
                    "summary": format!(
                        "The service publishes `{}` events.", send.message.event_type
                    ),
                    "channel": channel_ref(&channel),
                    "messages": [message_ref(&channel, &message)],
                }),
            );
        }
        // Dead-letter topics first, so that a subscription reading one (a dead-letter
        // inspector) finds what its messages are.
        let mut dead_letter_messages: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for receive in &contract.receives {
            if receive.messages.is_empty() {
                continue;
            }
            let description = format!(
                "Dead letters of the subscription `{}`: messages it could not handle, with the \
                 failure in `bento-dlq-*` headers.",
                receive.subscription
            );
            let channel = self.channel(&receive.dead_letter_topic, Some(description));
            let mut refs = Vec::new();
            for message in &receive.messages {
                let key = self.message(message, true);
                self.on_channel(&channel, &key);
                refs.push(message_ref(&channel, &key));
                dead_letter_messages
                    .entry(channel.clone())
                    .or_default()
                    .push(key);
            }
            self.operations.insert(
                operation_id("dead-letter", &receive.subscription),
                json!({
                    "action": "send",
                    "title": format!("Dead letters of {}", receive.subscription),
                    "summary": format!(
                        "What the subscription `{}` gives up on is published here.",
                        receive.subscription
                    ),
                    "channel": channel_ref(&channel),
                    "messages": refs,
                }),
            );
        }
        for receive in &contract.receives {
            let channel = self.channel(&receive.topic, None);
            let keys: Vec<String> = if receive.messages.is_empty() {
                match dead_letter_messages.get(&channel) {
                    Some(keys) => keys.clone(),
                    None => {
                        let any = MessageContract::named("");
                        vec![self.message(&any, false)]
                    }
                }
            } else {
                receive
                    .messages
                    .iter()
                    .map(|message| self.message(message, false))
                    .collect()
            };
            for key in &keys {
                self.on_channel(&channel, key);
            }
            let mut operation = json!({
                "action": "receive",
                "title": format!("Receive on {}", receive.subscription),
                "summary": format!(
                    "The subscription `{}` ({}) reads these messages.",
                    receive.subscription,
                    kind_name(receive.kind)
                ),
                "channel": channel_ref(&channel),
                "messages": keys.iter().map(|key| message_ref(&channel, key)).collect::<Vec<_>>(),
            });
            if let Broker::Kafka { .. } = self.api.broker
                && let Value::Object(operation) = &mut operation
            {
                operation.insert(
                    "bindings".into(),
                    json!({ "kafka": {
                        "groupId": { "type": "string", "enum": [receive.subscription] },
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }}),
                );
            }
            self.operations
                .insert(operation_id("receive", &receive.subscription), operation);
        }
        self.document()
    }

    /// The id of the channel at `topic`'s address, made if new.
    fn channel(&mut self, topic: &str, description: Option<String>) -> String {
        let address = (self.api.address)(topic);
        let id = match self.channel_ids.get(&address) {
            Some(id) => id.clone(),
            None => {
                let short = address.rsplit('/').next().unwrap_or(&address);
                let id = unique(&json_schema::key(short), |id| {
                    self.channels.contains_key(id)
                });
                self.channel_ids.insert(address.clone(), id.clone());
                self.channels.insert(
                    id.clone(),
                    ChannelEntry {
                        address,
                        ..ChannelEntry::default()
                    },
                );
                id
            }
        };
        if let (Some(description), Some(channel)) = (description, self.channels.get_mut(&id))
            && !channel.description.contains(&description)
        {
            channel.description.push(description);
        }
        id
    }

    fn on_channel(&mut self, channel: &str, message: &str) {
        if let Some(channel) = self.channels.get_mut(channel)
            && !channel.messages.iter().any(|m| m == message)
        {
            channel.messages.push(message.to_owned());
        }
    }

    /// The key of the message for `contract` (of its dead letters if `dead_letter`), made or
    /// completed with what this description knows more.
    fn message(&mut self, contract: &MessageContract, dead_letter: bool) -> String {
        let base = if contract.event_type.is_empty() {
            "bento-envelope".to_owned()
        } else {
            json_schema::key(&contract.event_type)
        };
        let key = if dead_letter {
            format!("{base}.dead-letter")
        } else {
            base
        };
        match self.messages.get_mut(&key) {
            Some(known) => {
                let known = &mut known.contract;
                if known.schema.is_none() && contract.schema.is_some() {
                    known.schema = contract.schema.clone();
                    known.schema_error = None;
                }
                known.version = known.version.or(contract.version);
                if known.aggregate_type.is_none() {
                    known.aggregate_type = contract.aggregate_type.clone();
                }
                if known.content_type.is_none() {
                    known.content_type = contract.content_type.clone();
                }
            }
            None => {
                self.messages.insert(
                    key.clone(),
                    MessageEntry {
                        contract: contract.clone(),
                        dead_letter,
                    },
                );
            }
        }
        key
    }

    fn document(mut self) -> Value {
        let api = self.api;
        let mut info = json!({ "title": api.title, "version": api.version });
        if let (Some(description), Value::Object(info)) = (&api.description, &mut info) {
            info.insert("description".into(), json!(description));
        }
        let mut document = Map::new();
        document.insert("asyncapi".into(), json!(ASYNCAPI_VERSION));
        document.insert("info".into(), info);
        document.insert("defaultContentType".into(), json!("application/json"));
        if let Some(servers) = self.servers() {
            document.insert("servers".into(), servers);
        }
        let mut messages = Map::new();
        let entries = std::mem::take(&mut self.messages);
        for (key, entry) in &entries {
            messages.insert(key.clone(), self.message_object(key, entry));
        }
        let channels: Map<String, Value> = self
            .channels
            .iter()
            .map(|(id, channel)| (id.clone(), self.channel_object(channel)))
            .collect();
        document.insert("channels".into(), Value::Object(channels));
        document.insert(
            "operations".into(),
            Value::Object(std::mem::take(&mut self.operations)),
        );
        let mut components = Map::new();
        components.insert("messages".into(), Value::Object(messages));
        if !self.schemas.is_empty() {
            components.insert(
                "schemas".into(),
                Value::Object(std::mem::take(&mut self.schemas).into_iter().collect()),
            );
        }
        components.insert(
            "correlationIds".into(),
            json!({ "bento": {
                "description": "The conversation a message belongs to: the first message's id, \
                                carried by every message caused by it.",
                "location": format!("$message.header#/{}", wire::CORRELATION_ID),
            }}),
        );
        document.insert("components".into(), Value::Object(components));
        Value::Object(document)
    }

    fn servers(&self) -> Option<Value> {
        match &self.api.broker {
            Broker::Memory => None,
            Broker::Pulsar {
                service_url,
                tenant,
                ..
            } => {
                let (protocol, host) = service_url
                    .split_once("://")
                    .unwrap_or(("pulsar", service_url.as_str()));
                Some(json!({ "pulsar": {
                    "host": host.trim_end_matches('/'),
                    "protocol": protocol,
                    "description": "The Apache Pulsar cluster of the service's configuration.",
                    "bindings": { "pulsar": {
                        "tenant": tenant,
                        "bindingVersion": PULSAR_BINDING_VERSION,
                    }},
                }}))
            }
            Broker::Kafka {
                bootstrap_servers,
                secure,
            } => {
                let protocol = if *secure { "kafka-secure" } else { "kafka" };
                let hosts: Vec<&str> = bootstrap_servers
                    .split(',')
                    .map(str::trim)
                    .filter(|host| !host.is_empty())
                    .collect();
                let servers: Map<String, Value> = hosts
                    .iter()
                    .enumerate()
                    .map(|(index, host)| {
                        let name = if index == 0 {
                            "kafka".to_owned()
                        } else {
                            format!("kafka-{}", index + 1)
                        };
                        (
                            name,
                            json!({
                                "host": host,
                                "protocol": protocol,
                                "description": "A bootstrap server of the Apache Kafka cluster \
                                                of the service's configuration.",
                                "bindings": { "kafka": {
                                    "bindingVersion": KAFKA_BINDING_VERSION,
                                }},
                            }),
                        )
                    })
                    .collect();
                Some(Value::Object(servers))
            }
        }
    }

    fn channel_object(&self, channel: &ChannelEntry) -> Value {
        let mut object = Map::new();
        object.insert("address".into(), json!(channel.address));
        if !channel.description.is_empty() {
            object.insert(
                "description".into(),
                json!(channel.description.join("\n\n")),
            );
        }
        let messages: Map<String, Value> = channel
            .messages
            .iter()
            .map(|key| {
                (
                    key.clone(),
                    json!({ "$ref": format!("#/components/messages/{key}") }),
                )
            })
            .collect();
        object.insert("messages".into(), Value::Object(messages));
        match &self.api.broker {
            Broker::Pulsar { namespace, .. } => {
                let (persistence, path) = channel
                    .address
                    .split_once("://")
                    .unwrap_or(("persistent", channel.address.as_str()));
                let namespace = path
                    .split('/')
                    .nth(1)
                    .map(str::to_owned)
                    .unwrap_or_else(|| namespace.clone());
                object.insert(
                    "bindings".into(),
                    json!({ "pulsar": {
                        "namespace": namespace,
                        "persistence": persistence,
                        "bindingVersion": PULSAR_BINDING_VERSION,
                    }}),
                );
            }
            Broker::Kafka { .. } => {
                object.insert(
                    "bindings".into(),
                    json!({ "kafka": {
                        "topic": channel.address,
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }}),
                );
            }
            Broker::Memory => {}
        }
        Value::Object(object)
    }

    fn message_object(&mut self, key: &str, entry: &MessageEntry) -> Value {
        let contract = &entry.contract;
        let content_type = content_type(contract);
        let mut object = Map::new();
        let mut notes = Vec::new();
        if contract.event_type.is_empty() {
            object.insert("name".into(), json!("bento-envelope"));
            object.insert("title".into(), json!("Any Bento envelope"));
            object.insert(
                "summary".into(),
                json!("A message of any event type, read without decoding its payload."),
            );
        } else {
            object.insert("name".into(), json!(contract.event_type));
            let mut title = contract.event_type.clone();
            if let Some(version) = contract.version {
                title.push_str(&format!(" v{version}"));
            }
            if entry.dead_letter {
                title.push_str(" (dead letter)");
            }
            object.insert("title".into(), json!(title));
            let mut summary = format!("A `{}` event", contract.event_type);
            if let Some(aggregate) = &contract.aggregate_type {
                summary.push_str(&format!(" of a `{aggregate}` aggregate"));
            }
            if entry.dead_letter {
                summary.push_str(", dead-lettered");
            }
            summary.push('.');
            object.insert("summary".into(), json!(summary));
            object.insert("contentType".into(), json!(content_type));
            match self.payload(key, contract) {
                Ok(Some(payload)) => {
                    object.insert("payload".into(), payload);
                }
                Ok(None) => notes.push(
                    "The codec describes no schema for this event type's payload.".to_owned(),
                ),
                Err(error) => notes.push(format!("The payload's schema is unknown: {error}")),
            }
            if let Some(error) = &contract.schema_error {
                notes.push(format!("The codec could not describe the payload: {error}"));
            }
        }
        if !notes.is_empty() {
            object.insert("description".into(), json!(notes.join("\n\n")));
        }
        object.insert(
            "headers".into(),
            headers(contract, entry.dead_letter, content_type),
        );
        object.insert(
            "correlationId".into(),
            json!({ "$ref": "#/components/correlationIds/bento" }),
        );
        if let Broker::Kafka { .. } = self.api.broker {
            object.insert(
                "bindings".into(),
                json!({ "kafka": {
                    "key": {
                        "type": "string",
                        "description": "The ordering key (`bento-ordering-key`): messages with one \
                                        key keep their order.",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }}),
            );
        }
        Value::Object(object)
    }

    fn payload(&mut self, key: &str, contract: &MessageContract) -> Result<Option<Value>, String> {
        let Some(SchemaDefinition {
            kind, definition, ..
        }) = &contract.schema
        else {
            return Ok(None);
        };
        match kind {
            SchemaKind::Avro => {
                let schema: Value = serde_json::from_str(definition)
                    .map_err(|e| format!("the Avro schema is not JSON: {e}"))?;
                Ok(Some(json!({
                    "schemaFormat": AVRO_SCHEMA_FORMAT,
                    "schema": schema,
                })))
            }
            SchemaKind::Json => {
                let avro: Value = serde_json::from_str(definition)
                    .map_err(|e| format!("the schema is not JSON: {e}"))?;
                let (root, definitions) = json_schema::convert(&avro, "")?;
                // Another message may have defined a type of the same name differently: then
                // this message's types are named after it.
                let clash = definitions
                    .iter()
                    .any(|(name, schema)| self.schemas.get(name).is_some_and(|s| s != schema));
                let (root, definitions) = if clash {
                    json_schema::convert(&avro, &format!("{key}."))?
                } else {
                    (root, definitions)
                };
                self.schemas.extend(definitions);
                Ok(Some(root))
            }
            SchemaKind::ProtobufNative => {
                let proto = proto::render(definition)?;
                Ok(Some(json!({
                    "schemaFormat": format!(
                        "application/vnd.google.protobuf;version={}", proto.version
                    ),
                    "schema": proto.text,
                })))
            }
        }
    }
}

/// The payload media type of `contract`'s messages.
fn content_type(contract: &MessageContract) -> String {
    if let Some(content_type) = &contract.content_type {
        return content_type.clone();
    }
    match contract.schema.as_ref().map(|schema| schema.kind) {
        Some(SchemaKind::Avro) => "application/avro".into(),
        Some(SchemaKind::ProtobufNative) => "application/x-protobuf".into(),
        Some(SchemaKind::Json) | None => "application/json".into(),
    }
}

/// The envelope headers (Pulsar properties, Kafka record headers) of `contract`'s messages.
fn headers(contract: &MessageContract, dead_letter: bool, content_type: String) -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    let fixed = |description: &str, value: &str| json!({ "type": "string", "description": description, "const": value });
    let mut properties = Map::new();
    let mut put = |name: &str, schema: Value| {
        properties.insert(name.to_owned(), schema);
    };
    put(
        wire::MESSAGE_ID,
        json!({ "type": "string", "format": "uuid", "description": "The message id." }),
    );
    let known = !contract.event_type.is_empty();
    put(
        wire::EVENT_TYPE,
        if known {
            fixed("The event type.", &contract.event_type)
        } else {
            text("The event type.")
        },
    );
    put(
        wire::EVENT_VERSION,
        match contract.version {
            Some(version) => fixed(
                "The event's schema version, a decimal integer.",
                &version.to_string(),
            ),
            None => json!({
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "The event's schema version, a decimal integer.",
            }),
        },
    );
    put(
        wire::OCCURRED_AT,
        json!({
            "type": "string",
            "format": "date-time",
            "description": "When the event happened, RFC 3339 in UTC.",
        }),
    );
    put(
        wire::AGGREGATE_TYPE,
        match &contract.aggregate_type {
            Some(aggregate) => fixed("The kind of aggregate.", aggregate),
            None => text("The kind of aggregate."),
        },
    );
    put(wire::AGGREGATE_ID, text("The aggregate's id."));
    put(
        wire::ORDERING_KEY,
        text("The ordering key (also the broker's message key): one key, one order."),
    );
    put(
        wire::CORRELATION_ID,
        text("The conversation: the first message's id, carried by every message it caused."),
    );
    put(
        wire::CAUSATION_ID,
        text("The id of the message whose handling caused this one."),
    );
    put(wire::TENANT, text("The tenant."));
    put(
        wire::CONTENT_TYPE,
        if known {
            fixed("The payload's media type.", &content_type)
        } else {
            text(
                "The payload's media type: application/json, application/avro or application/x-protobuf.",
            )
        },
    );
    put(
        wire::ATTEMPT,
        json!({
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The delivery attempt of a message republished for a retry (absent: 1).",
        }),
    );
    put(
        wire::REPLY_TO,
        text("Request/reply: the topic the reply to this request goes to."),
    );
    put(
        wire::REQUEST_ID,
        text("Request/reply: the id of the request this reply answers."),
    );
    let mut required = vec![
        wire::MESSAGE_ID,
        wire::EVENT_TYPE,
        wire::EVENT_VERSION,
        wire::OCCURRED_AT,
        wire::AGGREGATE_TYPE,
        wire::AGGREGATE_ID,
        wire::CORRELATION_ID,
        wire::CONTENT_TYPE,
    ];
    if dead_letter {
        put(
            wire::DLQ_FAILURE,
            text(
                "Why the message was dead-lettered: retries-exhausted, permanent, undecodable \
                 or unknown-event-type.",
            ),
        );
        put(wire::DLQ_REASON, text("The last error message."));
        put(
            wire::DLQ_ATTEMPTS,
            json!({ "type": "string", "pattern": "^[0-9]+$", "description": "Attempts made." }),
        );
        put(
            wire::DLQ_ORIGINAL_TOPIC,
            text("The topic the message was read from."),
        );
        put(
            wire::DLQ_SUBSCRIPTION,
            text("The subscription that gave up."),
        );
        put(
            wire::DLQ_BROKER_MESSAGE_ID,
            text("The broker's id of the original message."),
        );
        put(
            wire::DLQ_FAILED_AT,
            json!({
                "type": "string",
                "format": "date-time",
                "description": "When it was dead-lettered, RFC 3339.",
            }),
        );
        required.extend([
            wire::DLQ_FAILURE,
            wire::DLQ_REASON,
            wire::DLQ_ATTEMPTS,
            wire::DLQ_ORIGINAL_TOPIC,
            wire::DLQ_SUBSCRIPTION,
            wire::DLQ_FAILED_AT,
        ]);
    }
    json!({
        "type": "object",
        "description": "Bento's envelope: its metadata travels in headers (Pulsar properties, \
                        Kafka record headers), never in the payload. Other headers are the \
                        service's own (e.g. `traceparent`).",
        "properties": properties,
        "required": required,
    })
}

fn kind_name(kind: SubscriptionKind) -> String {
    kind.to_string()
}

fn operation_id(action: &str, name: &str) -> String {
    json_schema::key(&format!("{action}.{name}"))
}

fn channel_ref(channel: &str) -> Value {
    json!({ "$ref": format!("#/channels/{}", pointer_escape(channel)) })
}

fn message_ref(channel: &str, message: &str) -> Value {
    json!({ "$ref": format!(
        "#/channels/{}/messages/{}",
        pointer_escape(channel),
        pointer_escape(message)
    )})
}

/// Escapes a key for a JSON pointer (keys here have no `~` or `/`, but to be safe).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `base`, or `base-2`, `base-3`... the first that `taken` says is free.
fn unique(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| base.to_owned())
}
