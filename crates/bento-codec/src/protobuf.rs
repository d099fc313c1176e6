use std::marker::PhantomData;

use bento_application::{CodecError, Encoded, SchemaKind};
use bento_domain::DomainEvent;
use bytes::Bytes;

use crate::{Format, TypedCodec};

/// Protobuf for event types that are `prost::Message`s (generated from `.proto` files with
/// prost-build). Protobuf evolves by field numbers, so every version decodes with the same type.
pub struct ProtobufCodec<E> {
    /// The `PROTOBUF_NATIVE` schema document, when a descriptor was given.
    native_schema: Option<String>,
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
            native_schema: None,
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

    /// Adds the message's descriptor, so that brokers with a schema registry can store it:
    /// `file_descriptor_set` is the serialized `FileDescriptorSet` (as prost-build or protox
    /// write it), `root_message` the full name of `E`'s message (`package.Message`) and
    /// `root_file` the `.proto` file that defines it.
    pub fn with_descriptor(
        mut self,
        file_descriptor_set: &[u8],
        root_message: &str,
        root_file: &str,
    ) -> Self {
        use base64::Engine as _;
        let document = serde_json::json!({
            "fileDescriptorSet": base64::engine::general_purpose::STANDARD.encode(file_descriptor_set),
            "rootMessageTypeName": root_message,
            "rootFileDescriptorName": root_file,
        });
        self.native_schema = Some(document.to_string());
        self
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

    fn schema(&self, format: Format) -> Option<(SchemaKind, String)> {
        match format {
            Format::Protobuf => self
                .native_schema
                .clone()
                .map(|s| (SchemaKind::ProtobufNative, s)),
            Format::Json | Format::Avro => None,
        }
    }

    fn decode(&self, _version: u32, payload: &[u8]) -> Result<E, CodecError> {
        E::decode(payload).map_err(|e| CodecError::Decode {
            event_type: E::EVENT_TYPE.to_owned(),
            source: e.into(),
        })
    }
}
