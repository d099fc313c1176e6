//! # bento-codec
//!
//! Implementations of the [`Codec`] port:
//! - [`Json`] (serde_json): the default; every language reads it;
//! - [`AvroCodec`] (apache-avro): a schema derived from the Rust type or given as `.avsc`, checked
//!   against each other at registration, parsed once, with schema evolution by event version;
//! - [`ProtobufCodec`] (prost): for `prost::Message` event types generated from `.proto` files.
//!
//! [`Codecs`] chooses one per event type: JSON unless a type was registered with another codec
//! and the configuration selects it. Every codec stamps the envelope's content type and decodes
//! by it, so a producer and a consumer that disagree get a dead letter with the reason, not
//! garbage. No decoder panics on arbitrary bytes: each returns an error.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod avro;
mod codecs;
mod json;
mod json_schema;
mod protobuf;

pub use avro::AvroCodec;
pub use bento_application::{Codec, CodecError, Encoded};
pub use codecs::{Codecs, Format, TypedCodec};
pub use json::Json;
pub use protobuf::ProtobufCodec;

/// Re-exported so that event types can `#[derive(AvroSchema)]` without another dependency.
pub use apache_avro;
/// Re-exported for `prost::Message` event types.
pub use prost;
