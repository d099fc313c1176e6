//! The Avro schema built from the traced nodes.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::node::{Node, VariantKind, describe};

/// Turns the noted nodes into an Avro schema.
pub(super) struct Builder<'a> {
    pub(super) nodes: &'a HashMap<String, Node>,
    /// Named types already defined in the schema, with the field or symbol names they were
    /// defined with: a second use of the name is a reference when those agree (the same Rust
    /// type), a new name otherwise (another type serde names alike, e.g. a generic struct).
    pub(super) defined: HashMap<String, Vec<String>>,
}

impl Builder<'_> {
    pub(super) fn node(&self, path: &str) -> Result<&Node, String> {
        self.nodes
            .get(path)
            .ok_or_else(|| format!("{} was never read while tracing", describe(path)))
    }

    pub(super) fn schema(&mut self, path: &str) -> Result<Value, String> {
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

    pub(super) fn record(
        &mut self,
        name: &str,
        path: &str,
        fields: &[&str],
    ) -> Result<Value, String> {
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

    pub(super) fn enumeration(
        &mut self,
        name: &str,
        path: &str,
        variants: &[&str],
    ) -> Result<Value, String> {
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
    pub(super) fn named(
        &mut self,
        name: String,
        members: Vec<String>,
        mut definition: Value,
    ) -> Value {
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
pub(super) fn nullable(inner: Value) -> Value {
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

pub(super) fn starts_with_null(schema: &Value) -> bool {
    match schema {
        Value::Array(members) => members.first().is_some_and(|m| m == "null"),
        Value::String(s) => s == "null",
        _ => false,
    }
}

/// One schema for values of any of `members`: itself when they agree, else an Avro union
/// (flattened, without repeats), which may hold at most one array and one map.
pub(super) fn union(path: &str, members: Vec<Value>) -> Result<Value, String> {
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
pub(super) fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` made an Avro name (type names appear in no payload, so changing them is harmless).
pub(super) fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}
