//! What a type's implementation asked for at each place, and how places are named.

use std::collections::HashMap;

/// Which variant to take at each enum (by path); the first where it says nothing.
pub(super) type Plan = HashMap<String, usize>;

/// What the implementation asked for at one place.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
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
pub(super) enum VariantKind {
    Unit,
    Newtype,
    Tuple(usize),
    Struct(&'static [&'static str]),
}

impl Node {
    pub(super) fn what(&self) -> String {
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
pub(super) fn describe(path: &str) -> String {
    let readable = path.replace('?', "");
    let readable = readable.trim_start_matches('.');
    if readable.is_empty() {
        "the event".into()
    } else {
        format!("`{readable}`")
    }
}
