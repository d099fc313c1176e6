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

use serde_json::Value;

mod access;
mod builder;
mod node;
#[cfg(test)]
mod tests;
mod tracer;

use builder::Builder;
use node::{Node, Plan, describe};
pub(crate) use tracer::Tracer;

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
        let nodes = trace(&mut run, &plan, &mut candidates, &mut passes)?;
        plan_other_variants(&plan, &nodes, &mut planned, &mut plans);
        for (path, node) in nodes {
            all.entry(path).or_insert(node);
        }
    }
    write_schema(&all)
}

/// Runs the type's implementation along `plan` until it accepts the placeholders offered
/// (trying the next candidate value where one was refused); what it asked for, by path.
fn trace(
    run: &mut impl FnMut(&mut Tracer<'_>) -> Result<(), String>,
    plan: &Plan,
    candidates: &mut HashMap<String, usize>,
    passes: &mut usize,
) -> Result<HashMap<String, Node>, String> {
    loop {
        *passes += 1;
        if *passes > MAX_PASSES {
            return Err(format!(
                "the type has too many variants to describe ({MAX_PASSES} passes)"
            ));
        }
        let mut tracer = Tracer::new(plan, candidates);
        let outcome = run(&mut tracer);
        // A value refused after its visitor took it (`#[serde(try_from = "String")]`, a
        // parse in `deserialize_with`) is blamed on the last placeholder offered.
        let refused = tracer.refused.take().or(tracer.last_offered.take());
        match (outcome, refused) {
            (Ok(()), _) => return Ok(tracer.nodes),
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
    }
}

/// Queues a plan for each variant of the enums in `nodes` that no pass took or will take yet.
fn plan_other_variants(
    plan: &Plan,
    nodes: &HashMap<String, Node>,
    planned: &mut HashSet<String>,
    plans: &mut VecDeque<Plan>,
) {
    for (path, node) in nodes {
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
}

/// The Avro record schema of the traced `nodes`, as JSON text.
fn write_schema(nodes: &HashMap<String, Node>) -> Result<String, String> {
    let mut builder = Builder {
        nodes,
        defined: HashMap::new(),
    };
    let schema = match nodes.get("") {
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

/// The schema of `E`'s JSON form.
pub(crate) fn of<E: serde::de::DeserializeOwned>() -> Result<String, String> {
    derive(|tracer| E::deserialize(tracer).map(drop).map_err(|e| e.to_string()))
}
