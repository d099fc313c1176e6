use std::fmt;

/// The kind of schema an event type's payload follows, as a broker's schema registry knows it.
///
/// Exhaustive on purpose: every backend with a registry maps each kind to its own, and a new
/// kind is a change each of them has to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// JSON whose structure is described by an Avro record schema (Pulsar's `JSON` type).
    Json,
    /// Avro binary datum with an Avro schema (Pulsar's `AVRO` type).
    Avro,
    /// Protobuf, described by a serialized `FileDescriptorSet` and the root message's full name
    /// (Pulsar's `PROTOBUF_NATIVE` type).
    ProtobufNative,
}

impl fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaKind::Json => "JSON",
            SchemaKind::Avro => "AVRO",
            SchemaKind::ProtobufNative => "PROTOBUF_NATIVE",
        })
    }
}

/// What a backend with a schema registry needs to register an event type's schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaDefinition {
    /// The event type it describes.
    pub event_type: String,
    /// The kind.
    pub kind: SchemaKind,
    /// The schema itself: Avro schema JSON for `Json` and `Avro`; for `ProtobufNative`, the JSON
    /// document Pulsar expects (`fileDescriptorSet` in base64, `rootMessageTypeName`,
    /// `rootFileDescriptorName`).
    pub definition: String,
}
