use std::borrow::Cow;

use bento_domain::{DomainEvent, Envelope, RecordedEvent};
use bytes::Bytes;

use crate::{CodecError, SchemaDefinition};

/// An encoded event: its bytes and the media type that says how to read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Media type, e.g. `application/json`; goes on the envelope as `content_type`.
    pub content_type: Cow<'static, str>,
    /// The encoded event.
    pub payload: Bytes,
}

/// The serialization port: turns events into bytes and back.
///
/// Implementations live in `bento-codec` (JSON, Avro, Protobuf). The methods are generic so that
/// the common path is monomorphized and costs no more than the bare library call; the runtime
/// picks one concrete codec type for the whole service, which may itself choose per event type.
pub trait Codec: Send + Sync + 'static {
    /// Encodes a typed event.
    fn encode<E: DomainEvent>(&self, event: &E) -> Result<Encoded, CodecError>;

    /// Encodes an event recorded by an aggregate, whose concrete type is erased.
    fn encode_recorded(&self, event: &dyn RecordedEvent) -> Result<Encoded, CodecError>;

    /// Decodes an event, checking that `content_type` is one this codec reads.
    fn decode<E: DomainEvent>(&self, content_type: &str, payload: &[u8]) -> Result<E, CodecError>;

    /// The schema `E` is encoded with, for backends with a schema registry; `None` when the
    /// codec has no schema for it (the default, and event types configured without one); an
    /// error when it should have one and cannot describe it.
    fn schema<E: DomainEvent>(&self) -> Result<Option<SchemaDefinition>, CodecError> {
        Ok(None)
    }

    /// [`Codec::schema`] of an event recorded by an aggregate, whose concrete type is erased.
    fn recorded_schema(
        &self,
        event: &dyn RecordedEvent,
    ) -> Result<Option<SchemaDefinition>, CodecError> {
        let _ = event;
        Ok(None)
    }

    /// Decodes the event an envelope carries. Codecs with schema evolution override this to
    /// pick the writer's schema by the envelope's event version.
    fn decode_envelope<E: DomainEvent>(&self, envelope: &Envelope) -> Result<E, CodecError> {
        self.decode(&envelope.content_type, &envelope.payload)
    }
}
