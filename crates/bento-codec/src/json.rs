use std::borrow::Cow;

use bento_application::{Codec, CodecError, Encoded};
use bento_domain::{DomainEvent, RecordedEvent};
use bytes::Bytes;

/// JSON through serde_json: readable, schemaless, every language reads it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Json {
    /// The content type this codec writes.
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// Whether `content_type` is JSON (parameters such as `charset` allowed).
    pub fn reads(content_type: &str) -> bool {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case(Self::CONTENT_TYPE) || media.ends_with("+json")
    }

    fn encoded(payload: Vec<u8>) -> Encoded {
        Encoded {
            content_type: Cow::Borrowed(Self::CONTENT_TYPE),
            payload: Bytes::from(payload),
        }
    }
}

impl Codec for Json {
    fn encode<E: DomainEvent>(&self, event: &E) -> Result<Encoded, CodecError> {
        serde_json::to_vec(event)
            .map(Self::encoded)
            .map_err(|error| CodecError::Encode {
                event_type: E::EVENT_TYPE.to_owned(),
                reason: error.to_string(),
            })
    }

    fn encode_recorded(&self, event: &dyn RecordedEvent) -> Result<Encoded, CodecError> {
        serde_json::to_vec(event.as_serialize())
            .map(Self::encoded)
            .map_err(|error| CodecError::Encode {
                event_type: event.event_type().to_owned(),
                reason: error.to_string(),
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
            reason: error.to_string(),
        })
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
