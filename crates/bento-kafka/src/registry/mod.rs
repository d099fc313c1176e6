//! The Confluent-compatible schema registry of the Kafka backend (when
//! `[messaging.kafka.schema_registry]` is set): each event type's schema is registered under
//! its subject (and so checked against the subject's versions) when it is declared, or first
//! published to a topic; records then carry the Confluent wire format, and consumers take it
//! off again.

mod client;
pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use bento_application::{BusError, SchemaDefinition, SchemaKind};
use bento_domain::Envelope;
use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::OnceCell;

use client::RegisterError;
pub use client::{RegisteredSchema, RegistryClient, SubjectVersion};
use wire::Frame;

use crate::config::SchemaRegistryConfig;

/// An event type's schema as the registry takes it.
#[derive(Debug)]
pub(crate) struct EventSchema {
    definition: SchemaDefinition,
    /// `AVRO`, `JSON` or `PROTOBUF`.
    schema_type: &'static str,
    /// The Avro schema, the JSON Schema document or the `.proto` file.
    text: String,
    /// The record's (or Protobuf message's) full name, for the record name strategies.
    record: String,
}

impl EventSchema {
    /// The registry's form of `definition`: the Avro schema as it is; for JSON events the JSON
    /// Schema document of the Avro record schema Pulsar takes; for Protobuf the `.proto` file.
    pub(crate) fn new(definition: &SchemaDefinition) -> Result<Self, String> {
        let (schema_type, text, record) = match definition.kind {
            SchemaKind::Avro => (
                "AVRO",
                definition.definition.clone(),
                avro_full_name(&definition.definition)?,
            ),
            SchemaKind::Json => (
                "JSON",
                bento_asyncapi::json_schema_document(&definition.definition)?.to_string(),
                avro_full_name(&definition.definition)?,
            ),
            SchemaKind::ProtobufNative => (
                "PROTOBUF",
                bento_asyncapi::proto_file(&definition.definition)?,
                protobuf_root(&definition.definition)?,
            ),
            #[allow(unreachable_patterns)]
            other => return Err(format!("a {other} schema has no Confluent schema type")),
        };
        Ok(Self {
            definition: definition.clone(),
            schema_type,
            text,
            record,
        })
    }

    fn protobuf(&self) -> bool {
        self.schema_type == "PROTOBUF"
    }
}

/// The full name (`namespace.name`) of the Avro record schema `avsc`.
fn avro_full_name(avsc: &str) -> Result<String, String> {
    let schema: Value =
        serde_json::from_str(avsc).map_err(|e| format!("the Avro schema is not JSON: {e}"))?;
    let name = schema
        .get("name")
        .and_then(Value::as_str)
        .ok_or("the Avro schema has no record name")?;
    match schema.get("namespace").and_then(Value::as_str) {
        Some(namespace) if !namespace.is_empty() && !name.contains('.') => {
            Ok(format!("{namespace}.{name}"))
        }
        _ => Ok(name.to_owned()),
    }
}

/// The root message's full name in a `ProtobufNative` definition.
fn protobuf_root(definition: &str) -> Result<String, String> {
    let document: Value = serde_json::from_str(definition)
        .map_err(|e| format!("the Protobuf schema document is not JSON: {e}"))?;
    document
        .get("rootMessageTypeName")
        .and_then(Value::as_str)
        .map(|name| name.trim_start_matches('.').to_owned())
        .ok_or_else(|| "the Protobuf schema document has no rootMessageTypeName".to_owned())
}

/// A topic and an event type published there.
type TopicAndType = (String, String);

/// The registry, the schemas declared to it and the ids they were registered with.
pub(crate) struct Registry {
    client: RegistryClient,
    config: SchemaRegistryConfig,
    /// The schemas declared, by event type.
    by_event_type: RwLock<HashMap<String, Arc<EventSchema>>>,
    /// The framing of each event type's records on each topic, once registered there.
    frames: RwLock<HashMap<TopicAndType, Arc<OnceCell<Frame>>>>,
    /// Held while a schema is registered.
    registering: tokio::sync::Mutex<()>,
}

impl Registry {
    pub(crate) fn new(config: &SchemaRegistryConfig) -> Result<Self, BusError> {
        let client = RegistryClient::new(config).map_err(|reason| BusError::Connection {
            backend: "kafka",
            address: config.url.clone(),
            source: reason.into(),
        })?;
        Ok(Self {
            client,
            config: config.clone(),
            by_event_type: RwLock::new(HashMap::new()),
            frames: RwLock::new(HashMap::new()),
            registering: tokio::sync::Mutex::new(()),
        })
    }

    /// The registry's client.
    pub(crate) fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Registers `definition` under its subject for `topic` (checking it against the
    /// subject's versions) and keeps it for the event type's later publishes.
    pub(crate) async fn declare(
        &self,
        topic: &str,
        definition: &SchemaDefinition,
    ) -> Result<(), BusError> {
        let schema = EventSchema::new(definition)
            .map_err(|reason| BusError::backend("kafka", registering(topic, definition), reason))?;
        let schema = Arc::new(schema);
        self.frame_for(topic, &schema).await?;
        self.by_event_type
            .write()
            .insert(definition.event_type.clone(), schema);
        Ok(())
    }

    /// `envelope`'s payload framed for `topic`, when its event type has a declared schema and
    /// the payload is what that schema describes (the first publish of the type to `topic`
    /// registers the schema there); `None` otherwise, and the payload goes as it is.
    pub(crate) async fn frame(
        &self,
        envelope: &Envelope,
        topic: &str,
    ) -> Result<Option<Bytes>, BusError> {
        let Some(schema) = self
            .by_event_type
            .read()
            .get(envelope.event_type.as_ref())
            .cloned()
        else {
            return Ok(None);
        };
        if !content_fits(&schema, &envelope.content_type) {
            return Ok(None);
        }
        let frame = self.frame_for(topic, &schema).await?;
        Ok(Some(Bytes::from(frame.wrap(&envelope.payload))))
    }

    /// The framing of `schema`'s records on `topic`: registered once per topic and event type,
    /// concurrent first publishes waiting for the one registration; a failed one is tried
    /// again by the next.
    async fn frame_for(&self, topic: &str, schema: &Arc<EventSchema>) -> Result<Frame, BusError> {
        let key = (topic.to_owned(), schema.definition.event_type.clone());
        let cell = self.frames.read().get(&key).cloned();
        let cell = match cell {
            Some(cell) => cell,
            None => self.frames.write().entry(key).or_default().clone(),
        };
        cell.get_or_try_init(|| self.register(topic, schema))
            .await
            .cloned()
    }

    async fn register(&self, topic: &str, schema: &EventSchema) -> Result<Frame, BusError> {
        // One registration at a time per bus: they are few (one per event type and topic), and
        // some registries fail concurrent ones (Apicurio 2.4's in-memory storage answers
        // `Concurrent update in table "SEQUENCES"` and then stalls).
        let _one_at_a_time = self.registering.lock().await;
        let strategy = self.config.subject_name_strategy;
        let subject = strategy.subject(topic, &schema.record);
        let definition = &schema.definition;
        if let Some(level) = self.config.compatibility {
            self.client
                .set_compatibility(&subject, level.as_str())
                .await
                .map_err(|reason| {
                    BusError::backend("kafka", registering(topic, definition), reason)
                })?;
        }
        match self
            .client
            .register(&subject, schema.schema_type, &schema.text)
            .await
        {
            Ok(schema_id) => {
                tracing::info!(%topic, %subject, schema_id, event_type = %definition.event_type, kind = %definition.kind, "schema registered");
                Ok(Frame {
                    schema_id,
                    // The root message is the first of the registered file.
                    message_indexes: schema.protobuf().then(|| vec![0]),
                })
            }
            Err(RegisterError::Incompatible(reason)) => {
                let level = match self.config.compatibility {
                    Some(level) => level.as_str().to_owned(),
                    None => self
                        .client
                        .compatibility(&subject)
                        .await
                        .unwrap_or_else(|| "the registry's default".to_owned()),
                };
                Err(BusError::backend(
                    "kafka",
                    registering(topic, definition),
                    format!(
                        "the schema registry refused it (subject `{subject}` by {}, \
                         compatibility {level}): {reason}",
                        strategy.confluent_name()
                    ),
                ))
            }
            Err(RegisterError::Failed(reason)) => Err(BusError::backend(
                "kafka",
                registering(topic, definition),
                reason,
            )),
        }
    }

    /// Where the registry's id of a consumed record's writer schema is unknown, or names
    /// another schema type than the record's content type: none of that is checked; the
    /// framing is taken off and the codec reads the payload.
    pub(crate) fn unframe(payload: Bytes, content_type: &str) -> Bytes {
        match wire::unwrap(&payload, is_protobuf(content_type)) {
            Some((_, body)) => payload.slice_ref(body),
            None => payload,
        }
    }
}

/// "registering the AVRO schema of `users.user-created` on topic `users`"
fn registering(topic: &str, definition: &SchemaDefinition) -> String {
    format!(
        "registering the {} schema of `{}` on topic `{topic}`",
        definition.kind, definition.event_type
    )
}

/// The media type of `content_type`, lower-case, without parameters.
fn media(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_protobuf(content_type: &str) -> bool {
    matches!(
        media(content_type).as_str(),
        "application/x-protobuf" | "application/protobuf"
    )
}

/// Whether a payload of `content_type` is what `schema` describes.
fn content_fits(schema: &EventSchema, content_type: &str) -> bool {
    let media = media(content_type);
    match schema.schema_type {
        "AVRO" => media == "application/avro" || media == "avro/binary",
        "JSON" => media == "application/json" || media.ends_with("+json"),
        _ => is_protobuf(&media),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(name: &str) -> SchemaDefinition {
        SchemaDefinition {
            event_type: "users.user-created".into(),
            kind: SchemaKind::Avro,
            definition: format!(
                r#"{{"type":"record","name":"{name}","namespace":"acme.users","fields":[{{"name":"id","type":"string"}}]}}"#
            ),
        }
    }

    #[test]
    fn record_names_are_full_names() {
        assert_eq!(
            EventSchema::new(&avro("UserCreated"))
                .map(|s| s.record)
                .ok(),
            Some("acme.users.UserCreated".to_owned())
        );
        assert_eq!(
            EventSchema::new(&avro("other.UserCreated"))
                .map(|s| s.record)
                .ok(),
            Some("other.UserCreated".to_owned())
        );
    }

    #[test]
    fn json_events_register_a_json_schema_titled_with_the_record() {
        let definition = SchemaDefinition {
            kind: SchemaKind::Json,
            ..avro("UserCreated")
        };
        let schema = EventSchema::new(&definition).expect("a JSON Schema");
        assert_eq!(schema.schema_type, "JSON");
        let document: Value = serde_json::from_str(&schema.text).expect("JSON");
        assert_eq!(document["type"], "object");
        assert_eq!(document["properties"]["id"]["type"], "string");
        assert_eq!(document["title"], "acme.users.UserCreated");
        assert!(!schema.text.contains("#/components/"));
    }

    #[test]
    fn only_payloads_the_schema_describes_are_framed() {
        let schema = EventSchema::new(&avro("UserCreated")).expect("an Avro schema");
        assert!(content_fits(&schema, "application/avro"));
        assert!(!content_fits(&schema, "application/json"));
    }

    #[test]
    fn consumers_take_the_framing_off() {
        let framed = Frame {
            schema_id: 3,
            message_indexes: Some(vec![0]),
        }
        .wrap(&[0x0a, 0x01, b'x']);
        assert_eq!(
            Registry::unframe(Bytes::from(framed), "application/x-protobuf").as_ref(),
            &[0x0a, 0x01, b'x']
        );
        let plain = Bytes::from_static(b"{\"id\":\"1\"}");
        assert_eq!(Registry::unframe(plain.clone(), "application/json"), plain);
    }
}
