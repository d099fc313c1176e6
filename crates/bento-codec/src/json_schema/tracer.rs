//! The tracer: a deserializer that notes what it is asked for and answers with placeholders.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Visitor};

use super::access::{Choice, Entry, Fields, Items};
use super::node::{Node, Plan, describe};
use super::{BYTES, INTEGERS, MAX_DEPTH, STRINGS};

/// The deserializer that notes what a type's `Deserialize` implementation asks for.
pub(crate) struct Tracer<'p> {
    pub(super) plan: &'p Plan,
    pub(super) candidates: &'p HashMap<String, usize>,
    pub(super) path: String,
    pub(super) nodes: HashMap<String, Node>,
    /// Where a placeholder value was refused, first.
    pub(super) refused: Option<String>,
    /// Where the last placeholder value was offered.
    pub(super) last_offered: Option<String>,
    /// Where `deserialize_any` was called, first.
    pub(super) any: Option<String>,
    /// The structs and enums being traced, outermost first.
    pub(super) named: Vec<&'static str>,
    /// Above 0 inside a struct or enum met again inside itself: options are `None`, sequences
    /// and maps empty, so that the recursion ends; nothing there is noted.
    pub(super) pruned: usize,
    pub(super) depth: usize,
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
    pub(super) fn new(plan: &'p Plan, candidates: &'p HashMap<String, usize>) -> Self {
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

    pub(super) fn note(&mut self, node: Node) {
        if self.pruned == 0 {
            self.nodes.insert(self.path.clone(), node);
        }
    }

    /// Appends `segment` to the path; returns the length to truncate back to.
    pub(super) fn enter(&mut self, segment: &str) -> Result<usize, TraceError> {
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

    pub(super) fn leave(&mut self, len: usize) {
        self.depth -= 1;
        self.path.truncate(len);
    }

    pub(super) fn candidate(&self) -> usize {
        self.candidates.get(&self.path).copied().unwrap_or(0)
    }

    /// Notes where a placeholder was refused, if that is what failed.
    pub(super) fn offered<T>(&mut self, result: Result<T, TraceError>) -> Result<T, TraceError> {
        if result.is_err() && self.refused.is_none() {
            self.refused = Some(self.path.clone());
        }
        if self.pruned == 0 {
            self.last_offered = Some(self.path.clone());
        }
        result
    }

    pub(super) fn integer(&self) -> u8 {
        INTEGERS
            .get(self.candidate())
            .copied()
            .unwrap_or(INTEGERS[INTEGERS.len() - 1])
    }

    /// Starts a named type; whether it is one already being traced (a recursion).
    pub(super) fn open_named(&mut self, name: &'static str, node: Node) -> bool {
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

    pub(super) fn close_named(&mut self, recursive: bool) {
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
