//! Event schemas in Pulsar's schema registry: what a [`SchemaDefinition`] becomes on the wire,
//! and the error an incompatible one gives.
//!
//! The broker registers a topic's schema when a producer (or consumer) carrying it attaches to
//! the topic, and checks it then against the versions already there with the compatibility
//! strategy of the topic's namespace; that is how [`crate::PulsarBus`] declares schemas.

use std::collections::HashSet;

use bento_application::{BusError, SchemaDefinition, SchemaKind};
use parking_lot::Mutex;
use pulsar::proto;
use tokio::sync::OnceCell;

use crate::admin::{PulsarAdmin, SchemaInfo};
use crate::config::PulsarConfig;

/// The schema a producer or consumer of an event type's topic carries.
///
/// Pulsar's schema data is exactly what the definition holds: the Avro schema JSON for
/// `AVRO` and `JSON`, and for `PROTOBUF_NATIVE` the JSON document with the base64
/// `fileDescriptorSet`, `rootMessageTypeName` and `rootFileDescriptorName`.
pub(crate) fn to_pulsar(schema: &SchemaDefinition) -> proto::Schema {
    let kind = match schema.kind {
        SchemaKind::Json => proto::schema::Type::Json,
        SchemaKind::Avro => proto::schema::Type::Avro,
        SchemaKind::ProtobufNative => proto::schema::Type::ProtobufNative,
    };
    proto::Schema {
        name: schema.event_type.clone(),
        schema_data: schema.definition.clone().into_bytes(),
        r#type: kind as i32,
        properties: Vec::new(),
    }
}

/// The schema a topic's producers carry, and where the bus got it.
#[derive(Clone, Debug)]
pub(crate) struct TopicSchema {
    /// Pulsar's schema type: `JSON`, `AVRO`, `PROTOBUF_NATIVE`, ...
    pub(crate) kind: String,
    /// What the producer sends to the broker.
    pub(crate) schema: proto::Schema,
    /// Where it comes from, for messages: "declared for `users.user-created`", ...
    pub(crate) origin: String,
    /// The codec's definition, when the schema is an event type's.
    pub(crate) definition: Option<SchemaDefinition>,
}

impl TopicSchema {
    /// The schema an event type's codec declared.
    pub(crate) fn declared(definition: &SchemaDefinition) -> Self {
        Self {
            kind: definition.kind.to_string(),
            schema: to_pulsar(definition),
            origin: format!(
                "declared by this bus for `{}` (its codec's)",
                definition.event_type
            ),
            definition: Some(definition.clone()),
        }
    }

    /// The schema registered on `topic`, as the admin API gave it.
    pub(crate) fn registered(topic: &str, info: &SchemaInfo) -> Self {
        Self {
            kind: info.kind.clone(),
            schema: proto::Schema {
                name: topic.rsplit('/').next().unwrap_or(topic).to_owned(),
                schema_data: info.data.clone().into_bytes(),
                r#type: pulsar_type(&info.kind) as i32,
                properties: info
                    .properties
                    .iter()
                    .map(|(key, value)| proto::KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            },
            origin: format!("registered on `{topic}`"),
            definition: None,
        }
    }

    /// This schema, said to be the one of `source` (for its retry and dead-letter topics).
    pub(crate) fn of_source(mut self, source: &str) -> Self {
        self.origin =
            format!("the schema of `{source}`, whose messages this topic holds copies of");
        self
    }

    /// Whether a message of `content_type` is what this schema describes; when not, the
    /// error names the topic, the event type, the schema type and the codec.
    pub(crate) fn admits(
        &self,
        topic: &str,
        event_type: &str,
        content_type: &str,
    ) -> Result<(), String> {
        if content_fits(&self.kind, content_type) {
            return Ok(());
        }
        Err(mismatch(
            topic,
            &self.kind,
            &self.origin,
            event_type,
            &codec_of(content_type),
        ))
    }
}

/// Pulsar's schema type code for a type name the admin API gives.
fn pulsar_type(kind: &str) -> proto::schema::Type {
    use proto::schema::Type;
    match kind {
        "JSON" => Type::Json,
        "AVRO" => Type::Avro,
        "PROTOBUF_NATIVE" => Type::ProtobufNative,
        "PROTOBUF" => Type::Protobuf,
        "STRING" => Type::String,
        "KEY_VALUE" => Type::KeyValue,
        other => Type::from_str_name(other).unwrap_or(Type::None),
    }
}

/// Whether a payload of `content_type` (a Bento codec's) is what a topic whose schema type is
/// `kind` holds: JSON for `JSON`, Avro binary for `AVRO`, Protobuf for `PROTOBUF_NATIVE` (and
/// the older reflection-based `PROTOBUF`, whose payloads are Protobuf too).
pub(crate) fn content_fits(kind: &str, content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match kind {
        "JSON" => media == "application/json" || media.ends_with("+json"),
        "AVRO" => media == "application/avro" || media == "avro/binary",
        "PROTOBUF_NATIVE" | "PROTOBUF" => {
            media == "application/x-protobuf" || media == "application/protobuf"
        }
        _ => false,
    }
}

/// The codec a content type comes from, for messages: `json (application/json)`.
pub(crate) fn codec_of(content_type: &str) -> String {
    for (kind, codec) in [
        ("JSON", "json"),
        ("AVRO", "avro"),
        ("PROTOBUF_NATIVE", "protobuf"),
    ] {
        if content_fits(kind, content_type) {
            return format!("the {codec} codec ({content_type})");
        }
    }
    format!("content type `{content_type}`")
}

/// The codec a schema kind comes from, for messages.
pub(crate) fn codec_of_kind(kind: SchemaKind) -> String {
    match kind {
        SchemaKind::Json => "the json codec (application/json)",
        SchemaKind::Avro => "the avro codec (application/avro)",
        SchemaKind::ProtobufNative => "the protobuf codec (application/x-protobuf)",
    }
    .to_owned()
}

/// The error of a topic whose schema type is not what an event type is encoded as.
pub(crate) fn mismatch(
    topic: &str,
    kind: &str,
    origin: &str,
    event_type: &str,
    codec: &str,
) -> String {
    format!(
        "topic `{topic}` holds {kind} (its schema type, {origin}), but event type \
         `{event_type}` is encoded with {codec}: one topic holds one encoding, so this is \
         refused. Encode the event type as the topic's readers expect, or give it its own \
         topic (`topics.event_types`)"
    )
}

/// Checks `definition` (an event type's codec's schema) against `registered` (the topic's):
/// the schema type must be the same, and for record schemas the record's full name too (two
/// records of different names are two event types). Compatibility of the fields is the
/// broker's to check, with the namespace's strategy.
pub(crate) fn check_against(
    topic: &str,
    registered: &SchemaInfo,
    definition: &SchemaDefinition,
) -> Result<(), String> {
    let kind = definition.kind.to_string();
    if registered.kind != kind {
        return Err(mismatch(
            topic,
            &registered.kind,
            &format!("registered on `{topic}`"),
            &definition.event_type,
            &codec_of_kind(definition.kind),
        ));
    }
    let (theirs, ours) = (
        root_name(&registered.kind, &registered.data),
        root_name(&kind, &definition.definition),
    );
    if let (Some(theirs), Some((ours, aliases))) = (theirs, ours)
        && theirs.0 != ours
        && !aliases.contains(&theirs.0)
    {
        return Err(format!(
            "topic `{topic}` holds `{}` records (its registered {kind} schema), but event type \
             `{}` is the record `{ours}`: one topic holds one record type, so this is refused. \
             Give the event type its own topic (`topics.event_types`), or, if it is a rename, \
             list the old name in the record's aliases",
            theirs.0, definition.event_type
        ));
    }
    Ok(())
}

/// The root type's full name of a record or Protobuf schema, with its aliases.
fn root_name(kind: &str, data: &str) -> Option<(String, Vec<String>)> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    match kind {
        "JSON" | "AVRO" => {
            let name = value.get("name")?.as_str()?;
            let namespace = value.get("namespace").and_then(|n| n.as_str());
            let full = |name: &str| match namespace {
                Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
                _ => name.to_owned(),
            };
            let aliases = value
                .get("aliases")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .map(full)
                .collect();
            Some((full(name), aliases))
        }
        "PROTOBUF_NATIVE" => Some((
            value.get("rootMessageTypeName")?.as_str()?.to_owned(),
            Vec::new(),
        )),
        _ => None,
    }
}

/// What the broker has registered for a topic.
#[derive(Debug)]
pub(crate) enum Registered {
    /// The latest schema.
    Schema(SchemaInfo),
    /// No schema (the topic may not exist yet).
    Nothing,
    /// The bus cannot tell (no admin access, the admin API did not answer); logged once per
    /// topic.
    Unknown,
}

/// Reads topics' registered schemas through the admin API (`admin_url`, with the bus's token
/// and TLS settings). The binary protocol's schema lookup is not public in the pulsar crate.
pub(crate) struct Registry {
    config: PulsarConfig,
    admin: OnceCell<Result<PulsarAdmin, String>>,
    /// Topics whose schema could not be read, warned about once.
    warned: Mutex<HashSet<String>>,
}

impl Registry {
    pub(crate) fn new(config: &PulsarConfig) -> Self {
        Self {
            config: config.clone(),
            admin: OnceCell::new(),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The latest schema registered on `topic`.
    pub(crate) async fn lookup(&self, topic: &str) -> Registered {
        let admin = self
            .admin
            .get_or_init(|| async {
                if self.config.auth.oauth2.is_some() {
                    return Err("the admin client does not support OAuth2".to_owned());
                }
                PulsarAdmin::new(&self.config).map_err(|e| e.to_string())
            })
            .await;
        let admin = match admin {
            Ok(admin) => admin,
            Err(why) => return self.unknown(topic, why),
        };
        match tokio::time::timeout(self.config.connect_timeout(), admin.schema(topic)).await {
            Ok(Ok(info)) => Registered::Schema(info),
            Ok(Err(error)) if error.is_not_found() => Registered::Nothing,
            Ok(Err(error)) => self.unknown(topic, &error.to_string()),
            Err(_) => self.unknown(topic, &format!("{} did not answer in time", admin.url())),
        }
    }

    fn unknown(&self, topic: &str, why: &str) -> Registered {
        if self.warned.lock().insert(topic.to_owned()) {
            tracing::warn!(
                %topic,
                reason = %why,
                "cannot read the topic's registered schema, so it is not compared with the codec's; the broker still checks what it enforces"
            );
        }
        Registered::Unknown
    }
}

/// `tenant/namespace` of a full topic name (`persistent://tenant/namespace/topic`).
pub(crate) fn namespace_of(topic: &str) -> Option<String> {
    let rest = topic.split_once("://").map_or(topic, |(_, rest)| rest);
    let mut parts = rest.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(tenant), Some(namespace), Some(_)) if !tenant.is_empty() && !namespace.is_empty() => {
            Some(format!("{tenant}/{namespace}"))
        }
        _ => None,
    }
}

/// The compatibility strategy of `topic`'s namespace as the admin API reports it, for an
/// error message; says so when it cannot be read (the bus itself needs no admin access).
pub(crate) async fn strategy(config: &PulsarConfig, topic: &str) -> String {
    let Some(namespace) = namespace_of(topic) else {
        return "unknown (no namespace in the topic name)".into();
    };
    let admin = match PulsarAdmin::new(config) {
        Ok(admin) => admin,
        Err(error) => return format!("unknown (no admin client: {error})"),
    };
    let read = admin.schema_compatibility(&namespace);
    match tokio::time::timeout(config.connect_timeout(), read).await {
        Ok(Ok(strategy)) if strategy.as_str() == "UNDEFINED" => format!(
            "UNDEFINED on namespace {namespace}, so the broker's schemaCompatibilityStrategy \
             applies (FULL unless configured otherwise)"
        ),
        Ok(Ok(strategy)) => format!("{strategy} (namespace {namespace})"),
        Ok(Err(error)) => format!("unknown (could not read it from {}: {error})", admin.url()),
        Err(_) => format!("unknown ({} did not answer in time)", admin.url()),
    }
}

/// The error of a schema the broker refused: names the topic, the event type, the kind, the
/// namespace's strategy and the broker's reason.
pub(crate) fn refused(
    topic: &str,
    schema: &SchemaDefinition,
    strategy: &str,
    reason: &str,
) -> BusError {
    BusError::backend(
        "pulsar",
        format!(
            "registering the {} schema of `{}` on topic `{topic}`",
            schema.kind, schema.event_type
        ),
        format!("the broker refused it (schema compatibility strategy: {strategy}): {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_comes_from_full_names() {
        assert_eq!(
            namespace_of("persistent://acme/orders/placed").as_deref(),
            Some("acme/orders")
        );
        assert_eq!(
            namespace_of("acme/orders/a/b").as_deref(),
            Some("acme/orders")
        );
        assert_eq!(namespace_of("placed"), None);
        assert_eq!(namespace_of("persistent:///x/y"), None);
    }

    #[test]
    fn definitions_become_pulsar_schemas() {
        for (kind, expected) in [
            (SchemaKind::Json, proto::schema::Type::Json),
            (SchemaKind::Avro, proto::schema::Type::Avro),
            (
                SchemaKind::ProtobufNative,
                proto::schema::Type::ProtobufNative,
            ),
        ] {
            let definition = SchemaDefinition {
                event_type: "users.user-created".into(),
                kind,
                definition: r#"{"type":"record"}"#.into(),
            };
            let schema = to_pulsar(&definition);
            assert_eq!(schema.r#type, expected as i32);
            assert_eq!(schema.schema_data, br#"{"type":"record"}"#);
            assert_eq!(schema.name, "users.user-created");
        }
    }
}
