//! The schema Pulsar's `JSON` schema type wants for an event type: the Avro record schema its
//! JSON form follows, derived from the type's serde implementation.
//!
//! Nothing has to be derived on the event type for it: the type's own `Deserialize`
//! implementation is run against a deserializer that, instead of reading input, notes what the
//! implementation asks for (a struct named `UserCreated` with fields `user_id` and `email`, a
//! string, an optional `u32`, a sequence of ...) and answers with placeholder values. Because
//! it is the type's real implementation that runs, serde's attributes are honoured as they are
//! when the type is read from JSON: `rename`, `rename_all`, `skip`, transparent newtypes.
//!
//! - Enums are traced once per variant (the tracer runs the implementation again, choosing the
//!   next variant), so every variant is described.
//! - Placeholder values a type refuses (a `Uuid` or a date parsed from a string, a `NonZeroU32`)
//!   make the tracer run again with the next of a few common values at that place.
//! - A type that is only known from its value (it calls `deserialize_any`: `serde_json::Value`,
//!   `#[serde(untagged)]` and internally tagged enums, `#[serde(flatten)]`) cannot be
//!   described; nor can field names that are not Avro names (`user-id`). The error names the
//!   place.
//!
//! The mapping follows what serde_json writes: integers up to 32 bits are `int`, wider ones
//! `long`; `Option<T>` is `["null", T]` with default `null`; sequences (bytes too, which
//! serde_json writes as arrays of numbers) are arrays; maps are Avro maps (JSON object keys are
//! strings); unit-only enums are Avro enums (strings in JSON) when their names are Avro names,
//! strings otherwise; a variant with data is a one-field record named after the variant (what
//! `{"Variant": ...}` is), in a union with the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::{Value, json};

/// How many times the type's implementation may be run, in all, for one schema.
const MAX_PASSES: usize = 2048;
/// How deeply values may nest before the tracer gives up (a recursive type it cannot cut).
const MAX_DEPTH: usize = 64;

/// Strings offered, in turn, until the type accepts one.
const STRINGS: &[&str] = &[
    "",
    "1970-01-01T00:00:00Z",
    "00000000-0000-0000-0000-000000000000",
    "0",
    "a",
    "1970-01-01",
    "00:00:00",
    "1970-01-01T00:00:00",
    "http://localhost/",
    "a@localhost",
    "PT0S",
];
/// Integers offered, in turn (0 first; 1 for `NonZero` types).
const INTEGERS: &[u8] = &[0, 1];
/// Byte strings offered, in turn (empty first; 16 bytes for binary UUIDs).
const BYTES: &[&[u8]] = &[b"", &[0; 16]];

/// The Avro record schema (as JSON text) of the JSON that the type behind `run` reads.
///
/// `run` runs the type's `Deserialize` implementation against the [`Tracer`] it is given and
/// drops the result. Fails with a reason naming the place that cannot be described.
pub(crate) fn derive(
    mut run: impl FnMut(&mut Tracer<'_>) -> Result<(), String>,
) -> Result<String, String> {
    let mut candidates: HashMap<String, usize> = HashMap::new();
    let mut all: HashMap<String, Node> = HashMap::new();
    // Variants (as `<enum path>::<variant>`) that a pass took or that a plan in the queue will.
    let mut planned: HashSet<String> = HashSet::new();
    let mut plans: VecDeque<Plan> = VecDeque::from([Plan::default()]);
    let mut passes = 0;
    while let Some(plan) = plans.pop_front() {
        let nodes = loop {
            passes += 1;
            if passes > MAX_PASSES {
                return Err(format!(
                    "the type has too many variants to describe ({MAX_PASSES} passes)"
                ));
            }
            let mut tracer = Tracer::new(&plan, &candidates);
            let outcome = run(&mut tracer);
            // A value refused after its visitor took it (`#[serde(try_from = "String")]`, a
            // parse in `deserialize_with`) is blamed on the last placeholder offered.
            let refused = tracer.refused.take().or(tracer.last_offered.take());
            match (outcome, refused) {
                (Ok(()), _) => break tracer.nodes,
                (Err(error), _) if tracer.any.is_some() => {
                    let place = tracer.any.as_deref().unwrap_or_default();
                    return Err(format!(
                        "{} can only be read by looking at the value (its type calls \
                         deserialize_any, as serde_json::Value, #[serde(untagged)] and \
                         internally tagged enums and #[serde(flatten)] do), so no schema \
                         describes it ({error})",
                        describe(place)
                    ));
                }
                (Err(error), Some(place)) => {
                    let next = candidates.get(&place).copied().unwrap_or(0) + 1;
                    let offered = match tracer.nodes.get(&place) {
                        Some(Node::Primitive("string")) => STRINGS.len(),
                        Some(Node::Bytes) => BYTES.len(),
                        Some(Node::Primitive(_)) => INTEGERS.len(),
                        _ => 0,
                    };
                    if next >= offered {
                        return Err(format!(
                            "{} refused every placeholder value offered to learn its type \
                             ({error})",
                            describe(&place)
                        ));
                    }
                    candidates.insert(place, next);
                }
                (Err(error), None) => return Err(error),
            }
        };
        for (path, node) in &nodes {
            let Node::Enum { variants, .. } = node else {
                continue;
            };
            let chosen = plan.get(path).copied().unwrap_or(0);
            for (index, variant) in variants.iter().enumerate() {
                let key = format!("{path}::{variant}");
                if planned.insert(key) && index != chosen {
                    let mut next = plan.clone();
                    next.insert(path.clone(), index);
                    plans.push_back(next);
                }
            }
        }
        for (path, node) in nodes {
            all.entry(path).or_insert(node);
        }
    }
    let mut builder = Builder {
        nodes: &all,
        defined: HashMap::new(),
    };
    let schema = match all.get("") {
        Some(Node::Struct { .. }) => builder.schema("")?,
        Some(other) => {
            return Err(format!(
                "Pulsar's JSON schema describes a record (a struct with named fields), and the \
                 event is {}",
                other.what()
            ));
        }
        None => return Err("the type asked for nothing to read".into()),
    };
    let mut text = String::new();
    write_ordered(&schema, &mut text);
    Ok(text)
}

/// `value` as compact JSON with keys in the order Avro schemas are usually written (and
/// apache-avro writes them): `type` and `name` first for types, `name`, `type`, `default` for
/// fields, so that the same record reads the same whoever wrote it.
fn write_ordered(value: &Value, out: &mut String) {
    const TYPE_KEYS: &[&str] = &["type", "name", "symbols", "items", "values", "fields"];
    const FIELD_KEYS: &[&str] = &["name", "type", "default"];
    match value {
        Value::Object(map) => {
            let is_type = map.contains_key("fields")
                || map.contains_key("symbols")
                || map.contains_key("items")
                || map.contains_key("values");
            let order = if is_type { TYPE_KEYS } else { FIELD_KEYS };
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_ordered(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ordered(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Which variant to take at each enum (by path); the first where it says nothing.
type Plan = HashMap<String, usize>;

/// What the implementation asked for at one place.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    /// An Avro primitive: `null`, `boolean`, `int`, `long`, `float`, `double`, `string`.
    Primitive(&'static str),
    /// Bytes (an array of numbers in JSON).
    Bytes,
    /// An option; the value's node is at `<path>?`.
    Option,
    /// A sequence; its element's node is at `<path>[]`.
    Seq,
    /// A tuple of this many values, at `<path>[0]`, `<path>[1]`, ...
    Tuple(usize),
    /// A map; its value's node is at `<path>{}`.
    Map,
    /// A struct; each field's node is at `<path>.<field>`.
    Struct {
        name: &'static str,
        fields: &'static [&'static str],
    },
    /// An enum; what each variant holds is at `<path>::<variant>`.
    Enum {
        name: &'static str,
        variants: &'static [&'static str],
    },
    /// What a variant holds: nothing, one value (at `<variant path>=`), a tuple (at
    /// `<variant path>[i]`) or fields (at `<variant path>.<field>`).
    Variant(VariantKind),
    /// The struct or enum of this name again, inside itself.
    Recursive(&'static str),
}

#[derive(Clone, Debug, PartialEq)]
enum VariantKind {
    Unit,
    Newtype,
    Tuple(usize),
    Struct(&'static [&'static str]),
}

impl Node {
    fn what(&self) -> String {
        match self {
            Node::Primitive(kind) => format!("a {kind}"),
            Node::Bytes => "bytes".into(),
            Node::Option => "an option".into(),
            Node::Seq | Node::Tuple(_) => "a sequence".into(),
            Node::Map => "a map".into(),
            Node::Struct { name, .. } => format!("the struct `{name}`"),
            Node::Enum { name, .. } => format!("the enum `{name}`"),
            Node::Variant(_) => "a variant".into(),
            Node::Recursive(name) => format!("`{name}` inside itself"),
        }
    }
}

/// A place, for messages: the field path, e.g. `address.street`, or the event itself.
fn describe(path: &str) -> String {
    let readable = path.replace('?', "");
    let readable = readable.trim_start_matches('.');
    if readable.is_empty() {
        "the event".into()
    } else {
        format!("`{readable}`")
    }
}

/// The deserializer that notes what a type's `Deserialize` implementation asks for.
pub(crate) struct Tracer<'p> {
    plan: &'p Plan,
    candidates: &'p HashMap<String, usize>,
    path: String,
    nodes: HashMap<String, Node>,
    /// Where a placeholder value was refused, first.
    refused: Option<String>,
    /// Where the last placeholder value was offered.
    last_offered: Option<String>,
    /// Where `deserialize_any` was called, first.
    any: Option<String>,
    /// The structs and enums being traced, outermost first.
    named: Vec<&'static str>,
    /// Above 0 inside a struct or enum met again inside itself: options are `None`, sequences
    /// and maps empty, so that the recursion ends; nothing there is noted.
    pruned: usize,
    depth: usize,
}

/// Why tracing stopped.
#[derive(Debug)]
pub(crate) struct TraceError(String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TraceError(msg.to_string())
    }
}

impl<'p> Tracer<'p> {
    fn new(plan: &'p Plan, candidates: &'p HashMap<String, usize>) -> Self {
        Self {
            plan,
            candidates,
            path: String::new(),
            nodes: HashMap::new(),
            refused: None,
            last_offered: None,
            any: None,
            named: Vec::new(),
            pruned: 0,
            depth: 0,
        }
    }

    fn note(&mut self, node: Node) {
        if self.pruned == 0 {
            self.nodes.insert(self.path.clone(), node);
        }
    }

    /// Appends `segment` to the path; returns the length to truncate back to.
    fn enter(&mut self, segment: &str) -> Result<usize, TraceError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(TraceError(format!(
                "{} is nested more than {MAX_DEPTH} levels deep",
                describe(&self.path)
            )));
        }
        let len = self.path.len();
        self.path.push_str(segment);
        Ok(len)
    }

    fn leave(&mut self, len: usize) {
        self.depth -= 1;
        self.path.truncate(len);
    }

    fn candidate(&self) -> usize {
        self.candidates.get(&self.path).copied().unwrap_or(0)
    }

    /// Notes where a placeholder was refused, if that is what failed.
    fn offered<T>(&mut self, result: Result<T, TraceError>) -> Result<T, TraceError> {
        if result.is_err() && self.refused.is_none() {
            self.refused = Some(self.path.clone());
        }
        if self.pruned == 0 {
            self.last_offered = Some(self.path.clone());
        }
        result
    }

    fn integer(&self) -> u8 {
        INTEGERS
            .get(self.candidate())
            .copied()
            .unwrap_or(INTEGERS[INTEGERS.len() - 1])
    }

    /// Starts a named type; whether it is one already being traced (a recursion).
    fn open_named(&mut self, name: &'static str, node: Node) -> bool {
        let recursive = self.named.contains(&name);
        if recursive {
            self.note(Node::Recursive(name));
            self.pruned += 1;
        } else {
            self.note(node);
        }
        self.named.push(name);
        recursive
    }

    fn close_named(&mut self, recursive: bool) {
        self.named.pop();
        if recursive {
            self.pruned -= 1;
        }
    }
}

macro_rules! integers {
    ($($method:ident $visit:ident $ty:ty => $avro:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            self.note(Node::Primitive($avro));
            let value = self.integer() as $ty;
            let result = visitor.$visit(value);
            self.offered(result)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Tracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        if self.any.is_none() {
            self.any = Some(self.path.clone());
        }
        Err(TraceError(format!(
            "{} asks for any value",
            describe(&self.path)
        )))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Primitive("boolean"));
        let result = visitor.visit_bool(false);
        self.offered(result)
    }

    integers! {
        deserialize_i8 visit_i8 i8 => "int";
        deserialize_i16 visit_i16 i16 => "int";
        deserialize_i32 visit_i32 i32 => "int";
        deserialize_u8 visit_u8 u8 => "int";
        deserialize_u16 visit_u16 u16 => "int";
        deserialize_i64 visit_i64 i64 => "long";
        deserialize_u32 visit_u32 u32 => "long";
        deserialize_u64 visit_u64 u64 => "long";
        deserialize_i128 visit_i128 i128 => "long";
        deserialize_u128 visit_u128 u128 => "long";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Primitive("float"));
        let result = visitor.visit_f32(f32::from(self.integer()));
        self.offered(result)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Primitive("double"));
        let result = visitor.visit_f64(f64::from(self.integer()));
        self.offered(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Primitive("string"));
        let result = visitor.visit_char('a');
        self.offered(result)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Primitive("string"));
        let text = STRINGS.get(self.candidate()).copied().unwrap_or_default();
        let result = visitor.visit_str(text);
        self.offered(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Bytes);
        let bytes = BYTES.get(self.candidate()).copied().unwrap_or_default();
        let result = visitor.visit_bytes(bytes);
        self.offered(result)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Option);
        if self.pruned > 0 {
            return visitor.visit_none();
        }
        let len = self.enter("?")?;
        let result = visitor.visit_some(&mut *self);
        self.leave(len);
        result
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Primitive("null"));
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_unit(visitor)
    }

    /// serde_json writes a newtype struct as what it wraps.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Seq);
        let len = usize::from(self.pruned == 0);
        visitor.visit_seq(Items {
            tracer: self,
            next: 0,
            len,
            tuple: false,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.note(Node::Tuple(len));
        visitor.visit_seq(Items {
            tracer: self,
            next: 0,
            len,
            tuple: true,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.note(Node::Map);
        let done = self.pruned > 0;
        visitor.visit_map(Entry { tracer: self, done })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let recursive = self.open_named(name, Node::Struct { name, fields });
        let result = visitor.visit_map(Fields {
            tracer: &mut *self,
            fields,
            next: 0,
        });
        self.close_named(recursive);
        result
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        if variants.is_empty() {
            return Err(TraceError(format!(
                "{} is the enum `{name}`, which has no variant",
                describe(&self.path)
            )));
        }
        let recursive = self.open_named(name, Node::Enum { name, variants });
        let index = self
            .plan
            .get(&self.path)
            .copied()
            .filter(|&i| i < variants.len())
            .unwrap_or(0);
        let result = visitor.visit_enum(Choice {
            tracer: &mut *self,
            variant: variants[index],
        });
        self.close_named(recursive);
        result
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_unit()
    }

    /// JSON is human readable: types that write themselves differently for humans (a UUID as
    /// text, not 16 bytes) are traced in their JSON form.
    fn is_human_readable(&self) -> bool {
        true
    }
}

/// The elements of a sequence (one element, or none when pruned) or of a tuple (all).
struct Items<'a, 'p> {
    tracer: &'a mut Tracer<'p>,
    next: usize,
    len: usize,
    tuple: bool,
}

impl<'de> de::SeqAccess<'de> for Items<'_, '_> {
    type Error = TraceError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        if self.next >= self.len {
            return Ok(None);
        }
        let segment = if self.tuple {
            format!("[{}]", self.next)
        } else {
            "[]".to_owned()
        };
        self.next += 1;
        let len = self.tracer.enter(&segment)?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result.map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.next)
    }
}

/// One entry of a map (none when pruned): its key at `{key}`, its value at `{}`.
struct Entry<'a, 'p> {
    tracer: &'a mut Tracer<'p>,
    done: bool,
}

impl<'de> de::MapAccess<'de> for Entry<'_, '_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        if self.done {
            return Ok(None);
        }
        let len = self.tracer.enter("{key}")?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        self.done = true;
        let len = self.tracer.enter("{}")?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result
    }
}

/// Every field of a struct (or of a struct variant), in order, each at `.<field>`.
struct Fields<'a, 'p> {
    tracer: &'a mut Tracer<'p>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.fields.get(self.next) {
            Some(field) => {
                let key: de::value::StrDeserializer<'static, TraceError> =
                    field.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let field = self.fields.get(self.next).copied().unwrap_or_default();
        self.next += 1;
        let len = self.tracer.enter(&format!(".{field}"))?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(len);
        result
    }
}

/// The variant the plan chose for an enum.
struct Choice<'a, 'p> {
    tracer: &'a mut Tracer<'p>,
    variant: &'static str,
}

impl<'de, 'a, 'p> de::EnumAccess<'de> for Choice<'a, 'p> {
    type Error = TraceError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), TraceError> {
        let name: de::value::StrDeserializer<'static, TraceError> =
            self.variant.into_deserializer();
        let value = seed.deserialize(name)?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for Choice<'_, '_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        let len = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Unit));
        self.tracer.leave(len);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TraceError> {
        let len = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Newtype));
        let inner = self.tracer.enter("=")?;
        let result = seed.deserialize(&mut *self.tracer);
        self.tracer.leave(inner);
        self.tracer.leave(len);
        result
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let at = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Tuple(len)));
        let result = visitor.visit_seq(Items {
            tracer: &mut *self.tracer,
            next: 0,
            len,
            tuple: true,
        });
        self.tracer.leave(at);
        result
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let at = self.tracer.enter(&format!("::{}", self.variant))?;
        self.tracer.note(Node::Variant(VariantKind::Struct(fields)));
        let result = visitor.visit_map(Fields {
            tracer: &mut *self.tracer,
            fields,
            next: 0,
        });
        self.tracer.leave(at);
        result
    }
}

/// Turns the noted nodes into an Avro schema.
struct Builder<'a> {
    nodes: &'a HashMap<String, Node>,
    /// Named types already defined in the schema, with the field or symbol names they were
    /// defined with: a second use of the name is a reference when those agree (the same Rust
    /// type), a new name otherwise (another type serde names alike, e.g. a generic struct).
    defined: HashMap<String, Vec<String>>,
}

impl Builder<'_> {
    fn node(&self, path: &str) -> Result<&Node, String> {
        self.nodes
            .get(path)
            .ok_or_else(|| format!("{} was never read while tracing", describe(path)))
    }

    fn schema(&mut self, path: &str) -> Result<Value, String> {
        match self.node(path)?.clone() {
            Node::Primitive(kind) => Ok(json!(kind)),
            Node::Bytes => Ok(json!({"type": "array", "items": "int"})),
            Node::Option => {
                let inner = self.schema(&format!("{path}?"))?;
                Ok(nullable(inner))
            }
            Node::Seq => {
                let items = self.schema(&format!("{path}[]"))?;
                Ok(json!({"type": "array", "items": items}))
            }
            Node::Tuple(len) => {
                let items = (0..len)
                    .map(|i| self.schema(&format!("{path}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(json!({"type": "array", "items": union(path, items)?}))
            }
            Node::Map => {
                let values = self.schema(&format!("{path}{{}}"))?;
                Ok(json!({"type": "map", "values": values}))
            }
            Node::Struct { name, fields } => self.record(name, path, fields),
            Node::Enum { name, variants } => self.enumeration(name, path, variants),
            Node::Recursive(name) => Ok(json!(avro_name(name))),
            Node::Variant(_) => Err(format!("{} is a variant out of place", describe(path))),
        }
    }

    fn record(&mut self, name: &str, path: &str, fields: &[&str]) -> Result<Value, String> {
        let mut described = Vec::with_capacity(fields.len());
        for field in fields {
            if !is_avro_name(field) {
                return Err(format!(
                    "the field `{field}` of `{name}` ({}) is not a valid Avro name (letters, \
                     digits and `_`, not starting with a digit), which Pulsar's JSON schema \
                     requires",
                    describe(&format!("{path}.{field}"))
                ));
            }
            let schema = self.schema(&format!("{path}.{field}"))?;
            let mut entry = json!({"name": field, "type": schema});
            if starts_with_null(&entry["type"]) {
                entry["default"] = Value::Null;
            }
            described.push(entry);
        }
        let names = fields.iter().map(|f| (*f).to_owned()).collect();
        Ok(self.named(
            avro_name(name),
            names,
            json!({"type": "record", "fields": described}),
        ))
    }

    fn enumeration(&mut self, name: &str, path: &str, variants: &[&str]) -> Result<Value, String> {
        let mut units = Vec::new();
        let mut members = Vec::new();
        for variant in variants {
            let at = format!("{path}::{variant}");
            let Node::Variant(kind) = self.node(&at)?.clone() else {
                return Err(format!("{} was not traced as a variant", describe(&at)));
            };
            let content = match kind {
                VariantKind::Unit => {
                    units.push((*variant).to_owned());
                    continue;
                }
                VariantKind::Newtype => self.schema(&format!("{at}="))?,
                VariantKind::Tuple(len) => {
                    let items = (0..len)
                        .map(|i| self.schema(&format!("{at}[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?;
                    json!({"type": "array", "items": union(&at, items)?})
                }
                VariantKind::Struct(fields) => {
                    self.record(&format!("{name}_{variant}_fields"), &at, fields)?
                }
            };
            if !is_avro_name(variant) {
                return Err(format!(
                    "the variant `{variant}` of `{name}` ({}) is not a valid Avro name, which \
                     Pulsar's JSON schema requires of the key serde_json writes for it",
                    describe(path)
                ));
            }
            // serde_json writes a variant with data as {"<variant>": <data>}.
            let fields = vec![(*variant).to_owned()];
            members.push(self.named(
                avro_name(&format!("{name}_{variant}")),
                fields,
                json!({"type": "record", "fields": [{"name": variant, "type": content}]}),
            ));
        }
        if !units.is_empty() {
            // serde_json writes a unit variant as its name.
            let unit = if units.iter().all(|u| is_avro_name(u)) {
                let symbols = units.clone();
                self.named(
                    avro_name(name),
                    units,
                    json!({"type": "enum", "symbols": symbols}),
                )
            } else {
                json!("string")
            };
            members.insert(0, unit);
        }
        if members.len() == 1 {
            return Ok(members.remove(0));
        }
        union(path, members)
    }

    /// The definition of a named type, or a reference to it when it is defined already.
    fn named(&mut self, name: String, members: Vec<String>, mut definition: Value) -> Value {
        let mut chosen = name.clone();
        let mut n = 2;
        loop {
            match self.defined.get(&chosen) {
                Some(known) if *known == members => return json!(chosen),
                Some(_) => {
                    chosen = format!("{name}_{n}");
                    n += 1;
                }
                None => break,
            }
        }
        self.defined.insert(chosen.clone(), members);
        definition["name"] = json!(chosen);
        definition
    }
}

/// `["null", ...]`: the schema of an `Option`.
fn nullable(inner: Value) -> Value {
    let mut members = vec![json!("null")];
    match inner {
        Value::Array(inner) => members.extend(inner.into_iter().filter(|m| m != "null")),
        Value::String(s) if s == "null" => {}
        other => members.push(other),
    }
    if members.len() == 1 {
        json!("null")
    } else {
        Value::Array(members)
    }
}

fn starts_with_null(schema: &Value) -> bool {
    match schema {
        Value::Array(members) => members.first().is_some_and(|m| m == "null"),
        Value::String(s) => s == "null",
        _ => false,
    }
}

/// One schema for values of any of `members`: itself when they agree, else an Avro union
/// (flattened, without repeats), which may hold at most one array and one map.
fn union(path: &str, members: Vec<Value>) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for member in members {
        let flattened = match member {
            Value::Array(inner) => inner,
            other => vec![other],
        };
        for m in flattened {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    for unnamed in ["array", "map"] {
        if out.iter().filter(|m| m["type"] == unnamed).count() > 1 {
            return Err(format!(
                "{} holds {unnamed}s of different kinds, which an Avro union cannot tell apart",
                describe(path)
            ));
        }
    }
    Ok(if out.len() == 1 {
        out.remove(0)
    } else {
        Value::Array(out)
    })
}

/// Whether `name` is an Avro name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` made an Avro name (type names appear in no payload, so changing them is harmless).
fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The schema of `E`'s JSON form.
pub(crate) fn of<E: serde::de::DeserializeOwned>() -> Result<String, String> {
    derive(|tracer| E::deserialize(tracer).map(drop).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    use super::of;

    fn schema<E: serde::de::DeserializeOwned>() -> Value {
        let text = of::<E>().unwrap_or_else(|e| panic!("no schema: {e}"));
        apache_avro::Schema::parse_str(&text)
            .unwrap_or_else(|e| panic!("not an Avro schema ({e}): {text}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[derive(Deserialize, apache_avro::AvroSchema)]
    #[allow(dead_code)]
    struct UserCreated {
        user_id: String,
        email: String,
        age: i32,
        score: f64,
        active: bool,
    }

    #[test]
    fn keys_come_in_the_usual_order() {
        assert_eq!(
            of::<Address>().unwrap_or_default(),
            r#"{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"zip","type":["null","long"],"default":null}]}"#
        );
    }

    #[test]
    fn a_flat_struct_is_the_record_apache_avro_derives() {
        let derived = <UserCreated as apache_avro::AvroSchema>::get_schema();
        let ours = apache_avro::Schema::parse_str(&of::<UserCreated>().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ours.canonical_form(), derived.canonical_form());
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Address {
        street: String,
        zip: Option<u32>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "camelCase")]
    struct OrderPlaced {
        order_id: String,
        lines: Vec<(String, u8)>,
        tags: Vec<String>,
        notes: Option<String>,
        prices: HashMap<String, f32>,
        shipping: Address,
        billing: Option<Address>,
        #[serde(skip)]
        internal: u64,
        raw: Vec<u8>,
        big: u64,
        nested: BTreeMap<String, Vec<Option<i64>>>,
    }

    #[test]
    fn fields_options_sequences_maps_and_nested_records() {
        let s = schema::<OrderPlaced>();
        assert_eq!(s["type"], "record");
        assert_eq!(s["name"], "OrderPlaced");
        let fields: Vec<&str> = s["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "orderId", "lines", "tags", "notes", "prices", "shipping", "billing", "raw", "big",
                "nested"
            ],
            "serde's renames are honoured, skipped fields left out"
        );
        let field = |name: &str| {
            s["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["name"] == name)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(field("orderId")["type"], "string");
        assert_eq!(
            field("lines")["type"],
            json!({"type": "array", "items": {"type": "array", "items": ["string", "int"]}})
        );
        assert_eq!(field("notes")["type"], json!(["null", "string"]));
        assert_eq!(field("notes")["default"], Value::Null);
        assert_eq!(
            field("prices")["type"],
            json!({"type": "map", "values": "float"})
        );
        assert_eq!(field("shipping")["type"]["name"], "Address");
        assert_eq!(
            field("shipping")["type"]["fields"][1]["type"],
            json!(["null", "long"])
        );
        assert_eq!(
            field("billing")["type"],
            json!(["null", "Address"]),
            "a record used twice is defined once"
        );
        assert_eq!(
            field("raw")["type"],
            json!({"type": "array", "items": "int"})
        );
        assert_eq!(field("big")["type"], "long");
        assert_eq!(
            field("nested")["type"],
            json!({"type": "map", "values": {"type": "array", "items": ["null", "long"]}})
        );
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Status {
        Placed,
        Paid,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Payment {
        Cash,
        Card {
            number: String,
            expires: Option<String>,
        },
        Voucher(String),
        Split(u32, u32),
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Paid {
        status: Status,
        payment: Payment,
        previous: Option<Payment>,
    }

    #[test]
    fn every_variant_of_an_enum_is_described() {
        let s = schema::<Paid>();
        assert_eq!(
            s["fields"][0]["type"],
            json!({"type": "enum", "name": "Status", "symbols": ["Placed", "Paid"]})
        );
        let payment = &s["fields"][1]["type"];
        let members = payment.as_array().cloned().unwrap_or_default();
        assert_eq!(members.len(), 4, "{payment}");
        assert_eq!(
            members[0],
            json!({"type": "enum", "name": "Payment", "symbols": ["Cash"]})
        );
        assert_eq!(members[1]["name"], "Payment_Card");
        assert_eq!(members[1]["fields"][0]["name"], "Card");
        assert_eq!(
            members[1]["fields"][0]["type"]["fields"][1]["type"],
            json!(["null", "string"])
        );
        assert_eq!(
            members[2],
            json!({"type": "record", "name": "Payment_Voucher",
                   "fields": [{"name": "Voucher", "type": "string"}]})
        );
        assert_eq!(
            members[3]["fields"][0]["type"],
            json!({"type": "array", "items": "long"})
        );
        assert_eq!(
            s["fields"][2]["type"],
            json!([
                "null",
                "Payment",
                "Payment_Card",
                "Payment_Voucher",
                "Payment_Split"
            ]),
            "the second use refers to the named types"
        );
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Category {
        name: String,
        children: Vec<Category>,
        parent: Option<Box<Category>>,
    }

    #[test]
    fn recursive_types_refer_to_themselves() {
        let s = schema::<Category>();
        assert_eq!(
            s["fields"][1]["type"],
            json!({"type": "array", "items": "Category"})
        );
        assert_eq!(s["fields"][2]["type"], json!(["null", "Category"]));
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Stamped {
        id: Uuid,
        at: Timestamp,
        count: std::num::NonZeroU32,
        #[serde(with = "transparent")]
        wrapped: Wrapper,
    }

    /// Like `uuid::Uuid`: text that must parse.
    struct Uuid;
    impl<'de> Deserialize<'de> for Uuid {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            if text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4 {
                Ok(Uuid)
            } else {
                Err(serde::de::Error::custom("not a UUID"))
            }
        }
    }

    /// Like `chrono::DateTime<Utc>`: an RFC 3339 time.
    struct Timestamp;
    impl<'de> Deserialize<'de> for Timestamp {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            if text.ends_with('Z') && text.contains('T') {
                Ok(Timestamp)
            } else {
                Err(serde::de::Error::custom("not a time"))
            }
        }
    }

    #[derive(Deserialize)]
    struct Wrapper(#[allow(dead_code)] String);

    mod transparent {
        use serde::Deserialize;
        pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<super::Wrapper, D::Error> {
            super::Wrapper::deserialize(d)
        }
    }

    #[test]
    fn values_that_must_parse_are_offered_until_one_does() {
        let s = schema::<Stamped>();
        let types: Vec<&Value> = s["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| &f["type"])
            .collect();
        assert_eq!(
            types,
            [
                &json!("string"),
                &json!("string"),
                &json!("long"),
                &json!("string")
            ]
        );
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct RealWorld {
        id: uuid::Uuid,
        at: chrono::DateTime<chrono::Utc>,
        day: Option<chrono::NaiveDate>,
        code: Code,
    }

    #[derive(Deserialize)]
    #[serde(try_from = "String")]
    struct Code;
    impl TryFrom<String> for Code {
        type Error = String;
        fn try_from(text: String) -> Result<Self, String> {
            text.parse::<u8>().map(|_| Code).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn uuids_times_and_try_from_are_strings() {
        let s = schema::<RealWorld>();
        let types: Vec<&Value> = s["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| &f["type"])
            .collect();
        assert_eq!(
            types,
            [
                &json!("string"),
                &json!("string"),
                &json!(["null", "string"]),
                &json!("string")
            ]
        );
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Loose {
        id: String,
        extra: serde_json::Value,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Kebab {
        #[serde(rename = "user-id")]
        user_id: String,
    }

    #[derive(Serialize, Deserialize)]
    struct Bare(String);

    #[test]
    fn what_cannot_be_described_is_named() {
        let error = of::<Loose>().err().unwrap_or_default();
        assert!(
            error.contains("`extra`") && error.contains("deserialize_any"),
            "{error}"
        );
        let error = of::<Kebab>().err().unwrap_or_default();
        assert!(
            error.contains("`user-id`") && error.contains("Avro name"),
            "{error}"
        );
        let error = of::<Bare>().err().unwrap_or_default();
        assert!(error.contains("record"), "{error}");
    }
}
