use std::borrow::Cow;
use std::cell::RefCell;

use bento_application::{Codec, CodecError, Encoded, SchemaDefinition, SchemaKind};
use bento_domain::{DomainEvent, RecordedEvent};
use bytes::Bytes;
use serde::Serialize;

use crate::json_schema;

/// JSON through serde_json: readable, every language reads it.
///
/// For a broker with a schema registry it describes each event type with the Avro record
/// schema of its JSON form (Pulsar's `JSON` schema type), derived from the type's serde
/// implementation; see [`Json::schema_of`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Json {
    /// The content type this codec writes.
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// Whether `content_type` is JSON (parameters such as `charset` allowed).
    pub fn reads(content_type: &str) -> bool {
        if content_type == Self::CONTENT_TYPE {
            return true;
        }
        let media = content_type.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case(Self::CONTENT_TYPE) || media.ends_with("+json")
    }

    /// The Avro record schema (JSON text) that `E`'s JSON form follows, derived from `E`'s
    /// `Deserialize` implementation, so that serde's attributes (`rename`, `skip`, ...) count.
    ///
    /// Fails, naming the field, for what no such schema describes: a field of a type known
    /// only from its value (`serde_json::Value`, untagged or internally tagged enums,
    /// `#[serde(flatten)]`), a field name that is not an Avro name (`user-id`), an event that
    /// is not a struct. Such an event type can go without a schema (`schema = "none"` in
    /// `[codec.event_types]`), or be given one: register an
    /// [`AvroCodec`](crate::AvroCodec) for it and keep JSON selected.
    pub fn schema_of<E: DomainEvent>() -> Result<SchemaDefinition, CodecError> {
        json_schema::of::<E>()
            .map(|definition| Self::definition(E::EVENT_TYPE, definition))
            .map_err(|reason| Self::schema_error(E::EVENT_TYPE, reason))
    }

    /// [`Json::schema_of`] for an event recorded by an aggregate.
    pub fn recorded_schema_of(event: &dyn RecordedEvent) -> Result<SchemaDefinition, CodecError> {
        json_schema::derive(|tracer| {
            let mut erased = <dyn erased_serde::Deserializer>::erase(tracer);
            event
                .deserialize_type(&mut erased)
                .map_err(|e| e.to_string())
        })
        .map(|definition| Self::definition(event.event_type(), definition))
        .map_err(|reason| Self::schema_error(event.event_type(), reason))
    }

    fn definition(event_type: &str, definition: String) -> SchemaDefinition {
        SchemaDefinition {
            event_type: event_type.to_owned(),
            kind: SchemaKind::Json,
            definition,
        }
    }

    fn schema_error(event_type: &str, reason: String) -> CodecError {
        CodecError::Schema {
            event_type: event_type.to_owned(),
            reason: format!(
                "{reason}. Give the type a schema by registering an AvroCodec for it (JSON stays \
                 selected), or publish it without one: `\"{event_type}\" = {{ schema = \"none\" }}` \
                 in [codec.event_types]"
            ),
        }
    }

    fn encoded(payload: Bytes) -> Encoded {
        Encoded {
            content_type: Cow::Borrowed(Self::CONTENT_TYPE),
            payload,
        }
    }
}

/// The largest write buffer a thread keeps between two encodes.
const SCRATCH_KEPT: usize = 64 * 1024;

/// `value` as JSON, in a payload of exactly its size: one allocation per event.
///
/// It is written into a buffer the thread keeps, then copied: `serde_json::to_vec` starts at
/// 128 bytes and grows, and a `Bytes` made from a vector with room to spare allocates a second
/// block to share it by.
fn to_payload<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let written = serde_json::to_writer(&mut *buffer, value)
                .map(|()| Bytes::copy_from_slice(&buffer));
            if buffer.capacity() > SCRATCH_KEPT {
                *buffer = Vec::new();
            }
            written
        }
        // An event whose serialization encodes another event on this thread.
        Err(_) => serde_json::to_vec(value).map(Bytes::from),
    })
}

impl Codec for Json {
    fn encode<E: DomainEvent>(&self, event: &E) -> Result<Encoded, CodecError> {
        to_payload(event)
            .map(Self::encoded)
            .map_err(|error| CodecError::Encode {
                event_type: E::EVENT_TYPE.to_owned(),
                source: error.into(),
            })
    }

    fn encode_recorded(&self, event: &dyn RecordedEvent) -> Result<Encoded, CodecError> {
        to_payload(event.as_serialize())
            .map(Self::encoded)
            .map_err(|error| CodecError::Encode {
                event_type: event.event_type().to_owned(),
                source: error.into(),
            })
    }

    fn decode<E: DomainEvent>(&self, content_type: &str, payload: &[u8]) -> Result<E, CodecError> {
        if !Self::reads(content_type) {
            return Err(CodecError::UnsupportedContentType {
                content_type: content_type.to_owned(),
                event_type: E::EVENT_TYPE.to_owned(),
            });
        }
        serde_json::from_slice(payload).map_err(|error| CodecError::Decode {
            event_type: E::EVENT_TYPE.to_owned(),
            source: error.into(),
        })
    }

    fn schema<E: DomainEvent>(&self) -> Result<Option<SchemaDefinition>, CodecError> {
        Self::schema_of::<E>().map(Some)
    }

    fn recorded_schema(
        &self,
        event: &dyn RecordedEvent,
    ) -> Result<Option<SchemaDefinition>, CodecError> {
        Self::recorded_schema_of(event).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Created {
        id: String,
        n: u32,
    }

    impl DomainEvent for Created {
        const EVENT_TYPE: &'static str = "test.created";
        const AGGREGATE_TYPE: &'static str = "test";
        fn aggregate_id(&self) -> String {
            self.id.clone()
        }
    }

    #[test]
    fn each_payload_is_its_own_after_a_large_one_and_a_failed_one() -> Result<(), CodecError> {
        let large = Created {
            id: "x".repeat(2 * SCRATCH_KEPT),
            n: 1,
        };
        let small = Created {
            id: "b".into(),
            n: 2,
        };
        let first = Json.encode(&large)?;
        let second = Json.encode(&small)?;
        assert_eq!(
            first.payload.len(),
            2 * SCRATCH_KEPT + r#"{"id":"","n":1}"#.len()
        );
        assert_eq!(&second.payload[..], br#"{"id":"b","n":2}"#);
        assert_eq!(
            Json.decode::<Created>("application/json", &first.payload)?,
            large
        );

        // A map with a non-string key fails halfway: nothing of it leaks into the next payload.
        let failing: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(to_payload(&failing).is_err());
        assert_eq!(&Json.encode(&small)?.payload[..], br#"{"id":"b","n":2}"#);
        Ok(())
    }

    #[test]
    fn round_trips_typed_and_recorded_events() -> Result<(), CodecError> {
        let event = Created {
            id: "a".into(),
            n: 7,
        };
        let typed = Json.encode(&event)?;
        let recorded = Json.encode_recorded(&event)?;
        assert_eq!(typed, recorded);
        assert_eq!(typed.content_type, "application/json");
        assert_eq!(
            Json.decode::<Created>("application/json", &typed.payload)?,
            event
        );
        Ok(())
    }

    #[test]
    fn refuses_other_content_types_and_garbage() {
        let err = Json.decode::<Created>("application/avro", b"{}").err();
        assert!(matches!(
            err,
            Some(CodecError::UnsupportedContentType { .. })
        ));
        let err = Json.decode::<Created>("application/json", b"\xff{").err();
        assert!(
            matches!(err, Some(CodecError::Decode { ref event_type, .. }) if event_type == "test.created")
        );
        assert!(Json::reads("application/json; charset=utf-8"));
        assert!(Json::reads("application/cloudevents+json"));
    }
}
