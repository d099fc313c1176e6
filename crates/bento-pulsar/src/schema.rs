//! Event schemas in Pulsar's schema registry: what a [`SchemaDefinition`] becomes on the wire,
//! and the error an incompatible one gives.
//!
//! The broker registers a topic's schema when a producer (or consumer) carrying it attaches to
//! the topic, and checks it then against the versions already there with the compatibility
//! strategy of the topic's namespace; that is how [`crate::PulsarBus`] declares schemas.

use bento_application::{BusError, SchemaDefinition, SchemaKind};
use pulsar::proto;

use crate::admin::PulsarAdmin;
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
