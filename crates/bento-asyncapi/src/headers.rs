//! The envelope headers of a message (Pulsar properties, Kafka record headers), as the
//! message's header schema, and its payload's media type.

use bento_application::{MessageContract, SchemaKind, wire};
use serde_json::{Map, Value, json};

/// The payload media type of `contract`'s messages.
pub(crate) fn content_type(contract: &MessageContract) -> String {
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
pub(crate) fn headers(
    contract: &MessageContract,
    dead_letter: bool,
    content_type: String,
) -> Value {
    let mut properties = Map::new();
    event_headers(&mut properties, contract);
    delivery_headers(&mut properties, contract, &content_type);
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
        dead_letter_headers(&mut properties);
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

/// A string header.
fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// A string header of one value.
fn fixed(description: &str, value: &str) -> Value {
    json!({ "type": "string", "description": description, "const": value })
}

/// What the event is: its id, type, version, time and aggregate, and its ordering key.
fn event_headers(properties: &mut Map<String, Value>, contract: &MessageContract) {
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
}

/// How it travels: the conversation, tenant, payload type, attempt and request/reply.
fn delivery_headers(
    properties: &mut Map<String, Value>,
    contract: &MessageContract,
    content_type: &str,
) {
    let mut put = |name: &str, schema: Value| {
        properties.insert(name.to_owned(), schema);
    };
    let known = !contract.event_type.is_empty();
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
            fixed("The payload's media type.", content_type)
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
}

/// Why a dead letter is one: the `bento-dlq-*` headers.
fn dead_letter_headers(properties: &mut Map<String, Value>) {
    let mut put = |name: &str, schema: Value| {
        properties.insert(name.to_owned(), schema);
    };
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
}
