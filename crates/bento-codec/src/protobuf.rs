use std::marker::PhantomData;

use bento_application::{CodecError, Encoded};
use bento_domain::DomainEvent;
use bytes::Bytes;

use crate::{Format, TypedCodec};

/// Protobuf for event types that are `prost::Message`s (generated from `.proto` files with
/// prost-build). Protobuf evolves by field numbers, so every version decodes with the same type.
pub struct ProtobufCodec<E> {
    _event: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for ProtobufCodec<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProtobufCodec")
    }
}

impl<E> Default for ProtobufCodec<E> {
    fn default() -> Self {
        Self {
            _event: PhantomData,
        }
    }
}

impl<E> ProtobufCodec<E> {
    /// The content type Protobuf payloads carry.
    pub const CONTENT_TYPE: &'static str = "application/x-protobuf";

    /// A Protobuf codec for `E`.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<E: DomainEvent + prost::Message + Default> TypedCodec<E> for ProtobufCodec<E> {
    fn format(&self) -> Format {
        Format::Protobuf
    }

    fn content_type(&self) -> &'static str {
        Self::CONTENT_TYPE
    }

    fn encode(&self, event: &E) -> Result<Encoded, CodecError> {
        Ok(Encoded {
            content_type: Self::CONTENT_TYPE.into(),
            payload: Bytes::from(event.encode_to_vec()),
        })
    }

    fn decode(&self, _version: u32, payload: &[u8]) -> Result<E, CodecError> {
        E::decode(payload).map_err(|e| CodecError::Decode {
            event_type: E::EVENT_TYPE.to_owned(),
            reason: e.to_string(),
        })
    }
}
