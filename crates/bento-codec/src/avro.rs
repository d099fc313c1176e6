use std::collections::HashMap;
use std::io::Cursor;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{AvroSchema, Schema};
use bento_application::{BoxError, CodecError, Encoded, SchemaKind};
use bento_domain::DomainEvent;
use bytes::Bytes;

use crate::{Format, TypedCodec};

/// Largest single allocation an Avro payload may ask for (strings, bytes, arrays), so that a
/// corrupt length prefix gives an error instead of exhausting memory.
const MAX_AVRO_ALLOCATION: usize = 16 * 1024 * 1024;

/// Avro binary datum for event type `E`, with its schema parsed once.
///
/// The schema is derived from the Rust type (`#[derive(AvroSchema)]`) or given as `.avsc` text;
/// with both, they are checked against each other when the codec is built. Writer schemas of
/// other versions of the event type can be added for schema evolution: a message is decoded
/// with the writer schema of its `bento-event-version` and resolved to this type's schema.
///
/// Schemas are kept for the life of the process (they are registered once, at start-up), which
/// lets the parsed and resolved forms be reused for every message.
pub struct AvroCodec<E> {
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
    older: HashMap<u32, GenericDatumReader<'static>>,
    _event: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for AvroCodec<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec")
            .field("schema", &self.schema.canonical_form())
            .field("other_versions", &self.older.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<E: DomainEvent> AvroCodec<E> {
    /// The content type Avro payloads carry.
    pub const CONTENT_TYPE: &'static str = "application/avro";

    /// A codec with the schema derived from the Rust type.
    pub fn derived() -> Result<Self, CodecError>
    where
        E: AvroSchema,
    {
        Self::with_schema(E::get_schema())
    }

    /// A codec with a schema given as `.avsc` JSON text.
    pub fn from_avsc(avsc: &str) -> Result<Self, CodecError> {
        let schema = Schema::parse_str(avsc)
            .map_err(|e| schema_error::<E>(format!("invalid .avsc: {e}")))?;
        Self::with_schema(schema)
    }

    /// A codec with a schema given as `.avsc`, checked against the one derived from the Rust
    /// type: each must be able to read what the other writes.
    pub fn checked(avsc: &str) -> Result<Self, CodecError>
    where
        E: AvroSchema,
    {
        let codec = Self::from_avsc(avsc)?;
        let derived = E::get_schema();
        SchemaCompatibility::mutual_read(&derived, codec.schema).map_err(|e| {
            schema_error::<E>(format!(
                "the .avsc and the Rust type's schema disagree: {e}"
            ))
        })?;
        Ok(codec)
    }

    fn with_schema(schema: Schema) -> Result<Self, CodecError> {
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| schema_error::<E>(e.to_string()))?;
        let reader = GenericDatumReader::builder(schema)
            .build()
            .map_err(|e| schema_error::<E>(e.to_string()))?;
        Ok(Self {
            schema,
            writer,
            reader,
            older: HashMap::new(),
            _event: PhantomData,
        })
    }

    /// Adds the writer schema of another `version` of the event type, checked to be readable
    /// as this type's schema.
    pub fn with_version(mut self, version: u32, avsc: &str) -> Result<Self, CodecError> {
        let writer = Schema::parse_str(avsc)
            .map_err(|e| schema_error::<E>(format!("invalid .avsc of version {version}: {e}")))?;
        SchemaCompatibility::can_read(&writer, self.schema).map_err(|e| {
            schema_error::<E>(format!(
                "version {version}'s schema cannot be read as version {}: {e}",
                E::VERSION
            ))
        })?;
        let writer: &'static Schema = Box::leak(Box::new(writer));
        let reader = GenericDatumReader::builder(writer)
            .reader_schema(self.schema)
            .build()
            .map_err(|e| schema_error::<E>(e.to_string()))?;
        self.older.insert(version, reader);
        Ok(self)
    }

    /// This version's schema.
    pub fn schema(&self) -> &Schema {
        self.schema
    }
}

impl<E: DomainEvent> TypedCodec<E> for AvroCodec<E> {
    fn format(&self) -> Format {
        Format::Avro
    }

    fn content_type(&self) -> &'static str {
        Self::CONTENT_TYPE
    }

    fn encode(&self, event: &E) -> Result<Encoded, CodecError> {
        let payload = self
            .writer
            .write_ser_to_vec(event)
            .map_err(|e| CodecError::Encode {
                event_type: E::EVENT_TYPE.to_owned(),
                source: e.into(),
            })?;
        Ok(Encoded {
            content_type: Self::CONTENT_TYPE.into(),
            payload: Bytes::from(payload),
        })
    }

    fn schema(&self, format: Format) -> Option<(SchemaKind, String)> {
        let kind = match format {
            Format::Avro => SchemaKind::Avro,
            // Pulsar describes JSON payloads with the same Avro record schema.
            Format::Json => SchemaKind::Json,
            Format::Protobuf => return None,
        };
        serde_json::to_string(self.schema)
            .ok()
            .map(|definition| (kind, definition))
    }

    fn decode(&self, version: u32, payload: &[u8]) -> Result<E, CodecError> {
        let decode_error = |source: BoxError| CodecError::Decode {
            event_type: E::EVENT_TYPE.to_owned(),
            source,
        };
        // The Avro library should return errors on bad input; this makes sure a bug there
        // still surfaces as a decode error (and a dead letter), not a crashed consumer.
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut input = Cursor::new(payload);
            let event = if version == E::VERSION {
                self.reader
                    .read_deser::<E>(&mut input)
                    .map_err(BoxError::from)?
            } else {
                let reader = self.older.get(&version).ok_or_else(|| {
                    BoxError::from(format!(
                        "no Avro writer schema is registered for version {version}"
                    ))
                })?;
                let value = reader.read_value(&mut input).map_err(BoxError::from)?;
                apache_avro::from_value::<E>(&value).map_err(BoxError::from)?
            };
            if (input.position() as usize) < payload.len() {
                return Err(format!(
                    "{} trailing byte(s) after the datum",
                    payload.len() - input.position() as usize
                )
                .into());
            }
            Ok(event)
        }));
        match decoded {
            Ok(result) => result.map_err(decode_error),
            Err(_) => Err(decode_error(
                "the Avro decoder panicked on this payload".into(),
            )),
        }
    }
}

fn schema_error<E: DomainEvent>(reason: String) -> CodecError {
    CodecError::Encode {
        event_type: E::EVENT_TYPE.to_owned(),
        source: format!("Avro schema: {reason}").into(),
    }
}
