use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bento_application::{Codec, CodecError, Encoded, SchemaDefinition, SchemaKind};
use bento_domain::{DomainEvent, Envelope, RecordedEvent};
use parking_lot::RwLock;

use crate::Json;

/// A wire format an event type can be encoded in (`json`, `avro`, `protobuf` in configuration).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// JSON (serde_json); works for every event type.
    #[default]
    Json,
    /// Avro binary datum with a registered schema.
    Avro,
    /// Protobuf with a `prost::Message` type.
    Protobuf,
}

impl Format {
    /// The name used in configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Avro => "avro",
            Format::Protobuf => "protobuf",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "avro" => Ok(Format::Avro),
            "protobuf" => Ok(Format::Protobuf),
            other => Err(format!(
                "unknown codec `{other}`, expected json, avro or protobuf"
            )),
        }
    }
}

/// A codec for one event type `E`: what [`Codecs::register`] takes.
pub trait TypedCodec<E>: Send + Sync + 'static {
    /// The format it writes.
    fn format(&self) -> Format;
    /// The content type it writes and reads.
    fn content_type(&self) -> &'static str;
    /// Encodes an event.
    fn encode(&self, event: &E) -> Result<Encoded, CodecError>;
    /// Decodes an event written with `content_type` (already checked to be this codec's) and
    /// schema `version` of the event type.
    fn decode(&self, version: u32, payload: &[u8]) -> Result<E, CodecError>;

    /// The schema of `E` in `format` for a broker's schema registry, if this codec can describe
    /// it (an Avro codec describes both its Avro form and the JSON form of the same record).
    fn schema(&self, format: Format) -> Option<(SchemaKind, String)> {
        let _ = format;
        None
    }
}

/// What [`Codecs`] keeps per registered event type, type-erased.
trait Entry: Send + Sync {
    fn format(&self) -> Format;
    fn schema(&self, format: Format) -> Option<(SchemaKind, String)>;
    fn encode_any(&self, event: &dyn Any) -> Option<Result<Encoded, CodecError>>;
    fn as_any(&self) -> &dyn Any;
}

struct Registered<E> {
    codec: Arc<dyn TypedCodec<E>>,
    /// Whether this codec's format is the one selected for `E`, decided once at registration
    /// so that encoding costs a single lookup.
    selected: bool,
}

impl<E: DomainEvent> Entry for Registered<E> {
    fn format(&self) -> Format {
        self.codec.format()
    }
    fn schema(&self, format: Format) -> Option<(SchemaKind, String)> {
        self.codec.schema(format)
    }
    fn encode_any(&self, event: &dyn Any) -> Option<Result<Encoded, CodecError>> {
        event
            .downcast_ref::<E>()
            .map(|event| self.codec.encode(event))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The service's codec: JSON for every event type, unless a type was registered with another
/// codec and that format is selected for it (per type, or as the default).
///
/// ```
/// # use bento_codec::*;
/// let codecs = Codecs::new(Format::Avro); // Avro where registered, JSON elsewhere
/// ```
pub struct Codecs {
    default: Format,
    overrides: HashMap<String, Format>,
    /// Event types published without a schema in a broker's registry.
    without_schema: HashSet<String>,
    /// JSON schemas derived from serde types, by Rust type: derived once, at the first publish.
    derived: RwLock<HashMap<TypeId, Result<SchemaDefinition, String>>>,
    by_type: RwLock<HashMap<TypeId, Arc<dyn Entry>>>,
    by_name: RwLock<HashMap<&'static str, Arc<dyn Entry>>>,
    /// Lets the all-JSON service skip the lookups entirely.
    any_registered: AtomicBool,
}

impl fmt::Debug for Codecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registered: Vec<(&'static str, Format)> = self
            .by_name
            .read()
            .iter()
            .map(|(name, entry)| (*name, entry.format()))
            .collect();
        f.debug_struct("Codecs")
            .field("default", &self.default)
            .field("overrides", &self.overrides)
            .field("without_schema", &self.without_schema)
            .field("registered", &registered)
            .finish()
    }
}

impl Default for Codecs {
    fn default() -> Self {
        Self::new(Format::Json)
    }
}

impl Codecs {
    /// Codecs whose preferred format is `default`: registered types use their codec when it is
    /// of that format; everything else is JSON.
    pub fn new(default: Format) -> Self {
        Self {
            default,
            overrides: HashMap::new(),
            without_schema: HashSet::new(),
            derived: RwLock::new(HashMap::new()),
            by_type: RwLock::new(HashMap::new()),
            by_name: RwLock::new(HashMap::new()),
            any_registered: AtomicBool::new(false),
        }
    }

    /// Selects `format` for `event_type`, whatever the default.
    pub fn with_format(mut self, event_type: impl Into<String>, format: Format) -> Self {
        self.overrides.insert(event_type.into(), format);
        self
    }

    /// Publishes `event_type` without a schema in the broker's registry (`schema = "none"` in
    /// configuration): [`Codec::schema`] is `None` for it, whatever its format. By default
    /// every event type has one: JSON types the schema derived from their serde
    /// implementation ([`Json::schema_of`]), Avro and Protobuf types their codec's.
    pub fn without_schema(mut self, event_type: impl Into<String>) -> Self {
        self.without_schema.insert(event_type.into());
        self
    }

    /// Whether `event_type` goes without a schema ([`Codecs::without_schema`]).
    pub fn is_without_schema(&self, event_type: &str) -> bool {
        self.without_schema.contains(event_type)
    }

    /// The format selected for `event_type`.
    pub fn selected(&self, event_type: &str) -> Format {
        self.overrides
            .get(event_type)
            .copied()
            .unwrap_or(self.default)
    }

    /// Registers `codec` for event type `E`. It is used when its format is the one selected for
    /// `E`, and always to decode messages of its content type.
    pub fn register<E: DomainEvent>(&self, codec: impl TypedCodec<E>) -> &Self {
        let selected = codec.format() == self.selected(E::EVENT_TYPE);
        let entry: Arc<dyn Entry> = Arc::new(Registered::<E> {
            codec: Arc::new(codec),
            selected,
        });
        self.by_type
            .write()
            .insert(TypeId::of::<E>(), entry.clone());
        self.by_name.write().insert(E::EVENT_TYPE, entry);
        self.any_registered.store(true, Ordering::Release);
        self
    }

    /// The format `E` is actually encoded in, and a mismatch as an error: a type selected for
    /// Avro or Protobuf must have been registered with such a codec.
    pub fn check<E: DomainEvent>(&self) -> Result<Format, CodecError> {
        let selected = self.selected(E::EVENT_TYPE);
        let registered = self.typed::<E>().map(|c| c.format());
        match (selected, registered) {
            (Format::Json, _) => Ok(Format::Json),
            (wanted, Some(have)) if wanted == have => Ok(wanted),
            (wanted, _) => Err(CodecError::Encode {
                event_type: E::EVENT_TYPE.to_owned(),
                source: format!(
                    "the {wanted} codec is selected but none is registered for this event type"
                )
                .into(),
            }),
        }
    }

    fn typed<E: DomainEvent>(&self) -> Option<Arc<dyn TypedCodec<E>>> {
        if !self.any_registered.load(Ordering::Acquire) {
            return None;
        }
        let by_type = self.by_type.read();
        by_type
            .get(&TypeId::of::<E>())
            .and_then(|entry| entry.as_any().downcast_ref::<Registered<E>>())
            .map(|registered| registered.codec.clone())
    }
}

impl Codec for Codecs {
    fn encode<E: DomainEvent>(&self, event: &E) -> Result<Encoded, CodecError> {
        if self.any_registered.load(Ordering::Acquire) {
            let by_type = self.by_type.read();
            let registered = by_type
                .get(&TypeId::of::<E>())
                .and_then(|entry| entry.as_any().downcast_ref::<Registered<E>>());
            if let Some(registered) = registered.filter(|r| r.selected) {
                return registered.codec.encode(event);
            }
        }
        if self.default != Format::Json || !self.overrides.is_empty() {
            self.check::<E>()?;
        }
        Json.encode(event)
    }

    fn encode_recorded(&self, event: &dyn RecordedEvent) -> Result<Encoded, CodecError> {
        let selected = self.selected(event.event_type());
        if selected != Format::Json {
            let entry = self.by_name.read().get(event.event_type()).cloned();
            return match entry {
                Some(entry) if entry.format() == selected => {
                    entry.encode_any(event.as_any()).unwrap_or_else(|| {
                        Err(CodecError::Encode {
                            event_type: event.event_type().to_owned(),
                            source: "two Rust types share this event type name".into(),
                        })
                    })
                }
                _ => Err(CodecError::Encode {
                    event_type: event.event_type().to_owned(),
                    source: format!(
                        "the {selected} codec is selected but none is registered for this event type"
                    )
                    .into(),
                }),
            };
        }
        Json.encode_recorded(event)
    }

    fn decode<E: DomainEvent>(&self, content_type: &str, payload: &[u8]) -> Result<E, CodecError> {
        self.decode_versioned(content_type, E::VERSION, payload)
    }

    fn schema<E: DomainEvent>(&self) -> Result<Option<SchemaDefinition>, CodecError> {
        match self.described(E::EVENT_TYPE) {
            Described::Nothing => Ok(None),
            Described::By(schema) => Ok(Some(schema)),
            Described::Derive => self
                .derived(E::EVENT_TYPE, TypeId::of::<E>(), Json::schema_of::<E>)
                .map(Some),
        }
    }

    fn recorded_schema(
        &self,
        event: &dyn RecordedEvent,
    ) -> Result<Option<SchemaDefinition>, CodecError> {
        match self.described(event.event_type()) {
            Described::Nothing => Ok(None),
            Described::By(schema) => Ok(Some(schema)),
            Described::Derive => self
                .derived(event.event_type(), Any::type_id(event.as_any()), || {
                    Json::recorded_schema_of(event)
                })
                .map(Some),
        }
    }

    fn decode_envelope<E: DomainEvent>(&self, envelope: &Envelope) -> Result<E, CodecError> {
        self.decode_versioned(&envelope.content_type, envelope.version, &envelope.payload)
    }
}

/// Where the schema of an event type comes from.
enum Described {
    /// It has none: configured without, or its format's codec is not registered (encoding
    /// fails then anyway).
    Nothing,
    /// Its registered codec's.
    By(SchemaDefinition),
    /// Derived from its serde implementation (JSON).
    Derive,
}

impl Codecs {
    fn described(&self, event_type: &str) -> Described {
        if self.without_schema.contains(event_type) {
            return Described::Nothing;
        }
        let format = self.selected(event_type);
        let entry = self.by_name.read().get(event_type).cloned();
        if let Some((kind, definition)) = entry.and_then(|entry| entry.schema(format)) {
            return Described::By(SchemaDefinition {
                event_type: event_type.to_owned(),
                kind,
                definition,
            });
        }
        match format {
            Format::Json => Described::Derive,
            Format::Avro | Format::Protobuf => Described::Nothing,
        }
    }

    /// The JSON schema of the Rust type `type_id`, derived once.
    fn derived(
        &self,
        event_type: &str,
        type_id: TypeId,
        derive: impl FnOnce() -> Result<SchemaDefinition, CodecError>,
    ) -> Result<SchemaDefinition, CodecError> {
        let known = self.derived.read().get(&type_id).cloned();
        let result = match known {
            Some(result) => result,
            None => {
                let result = derive().map_err(|error| match error {
                    CodecError::Schema { reason, .. } => reason,
                    other => other.to_string(),
                });
                self.derived.write().insert(type_id, result.clone());
                result
            }
        };
        result.map_err(|reason| CodecError::Schema {
            event_type: event_type.to_owned(),
            reason,
        })
    }

    /// Decodes a payload of `content_type` written with schema `version` of `E`.
    pub fn decode_versioned<E: DomainEvent>(
        &self,
        content_type: &str,
        version: u32,
        payload: &[u8],
    ) -> Result<E, CodecError> {
        if Json::reads(content_type) {
            return Json.decode(content_type, payload);
        }
        match self.typed::<E>() {
            Some(codec) if media_type(content_type) == codec.content_type() => {
                codec.decode(version, payload)
            }
            _ => Err(CodecError::UnsupportedContentType {
                content_type: content_type.to_owned(),
                event_type: E::EVENT_TYPE.to_owned(),
            }),
        }
    }
}

fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}
