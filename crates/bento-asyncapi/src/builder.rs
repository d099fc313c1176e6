//! Building the document: channels, messages and operations from the contract, then the
//! document around them.

use std::collections::BTreeMap;

use bento_application::{MessageContract, SchemaDefinition, SchemaKind, SubscriptionKind, wire};
use serde_json::{Map, Value, json};

use crate::headers::{content_type, headers};
use crate::{
    ASYNCAPI_VERSION, AVRO_SCHEMA_FORMAT, AsyncApi, Broker, KAFKA_BINDING_VERSION,
    PULSAR_BINDING_VERSION, json_schema, proto,
};

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

pub(crate) struct Builder<'a> {
    api: &'a AsyncApi,
    channels: BTreeMap<String, ChannelEntry>,
    /// Channel id by address.
    channel_ids: BTreeMap<String, String>,
    messages: BTreeMap<String, MessageEntry>,
    operations: Map<String, Value>,
    schemas: BTreeMap<String, Value>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(api: &'a AsyncApi) -> Self {
        Self {
            api,
            channels: BTreeMap::new(),
            channel_ids: BTreeMap::new(),
            messages: BTreeMap::new(),
            operations: Map::new(),
            schemas: BTreeMap::new(),
        }
    }

    pub(crate) fn build(mut self) -> Value {
        self.add_sends();
        // Dead-letter topics first, so that a subscription reading one (a dead-letter
        // inspector) finds what its messages are.
        let dead_letter_messages = self.add_dead_letters();
        self.add_receives(&dead_letter_messages);
        self.document()
    }

    /// A `send` operation per event type the service declared or published.
    fn add_sends(&mut self) {
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
    }

    /// Each subscription's dead-letter channel and its `send` operation; the message keys of
    /// each dead-letter channel.
    fn add_dead_letters(&mut self) -> BTreeMap<String, Vec<String>> {
        let contract = &self.api.contract;
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
        dead_letter_messages
    }

    /// A `receive` operation per subscription (a subscription of a dead-letter topic receives
    /// its dead letters).
    fn add_receives(&mut self, dead_letter_messages: &BTreeMap<String, Vec<String>>) {
        let contract = &self.api.contract;
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
