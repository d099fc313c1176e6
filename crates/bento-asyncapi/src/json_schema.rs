//! JSON Schema (draft 07, which AsyncAPI's default schema format extends) of a JSON event from
//! the Avro record schema its codec describes it with (`SchemaKind::Json`: the Avro schema of
//! the type's serde form, as Pulsar's `JSON` schema type wants it).
//!
//! Named types (records, enums, fixed) become component schemas referenced with `$ref`, so a
//! type used twice is described once and a recursive type refers to itself.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Named schemas of one conversion, by the component key they go under.
pub(crate) type Definitions = BTreeMap<String, Value>;

/// The JSON Schema of the JSON that `avro` describes: the root schema (a `$ref` for a record)
/// and the component schemas it refers to. Component keys are the Avro full names, prefixed
/// with `prefix`.
pub(crate) fn convert(avro: &Value, prefix: &str) -> Result<(Value, Definitions), String> {
    let mut converter = Converter {
        prefix,
        definitions: Definitions::new(),
    };
    let root = converter.schema(avro, "")?;
    Ok((root, converter.definitions))
}

struct Converter<'p> {
    prefix: &'p str,
    definitions: Definitions,
}

/// The `$ref` of a component schema.
pub(crate) fn reference(key: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{key}") })
}

/// A component key from `name`: AsyncAPI allows letters, digits, `.`, `-` and `_`.
pub(crate) fn key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Converter<'_> {
    fn key_of(&self, full_name: &str) -> String {
        key(&format!("{}{full_name}", self.prefix))
    }

    fn schema(&mut self, avro: &Value, namespace: &str) -> Result<Value, String> {
        match avro {
            Value::String(name) => self.named_or_primitive(name, namespace),
            Value::Array(branches) => {
                let branches = branches
                    .iter()
                    .map(|branch| self.schema(branch, namespace))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(json!({ "oneOf": branches }))
            }
            Value::Object(object) => self.complex(object, namespace),
            other => Err(format!("`{other}` is not an Avro schema")),
        }
    }

    fn named_or_primitive(&mut self, name: &str, namespace: &str) -> Result<Value, String> {
        Ok(match name {
            "null" => json!({ "type": "null" }),
            "boolean" => json!({ "type": "boolean" }),
            "int" => json!({ "type": "integer", "format": "int32" }),
            "long" => json!({ "type": "integer", "format": "int64" }),
            "float" => json!({ "type": "number", "format": "float" }),
            "double" => json!({ "type": "number", "format": "double" }),
            // serde_json writes bytes as an array of numbers.
            "bytes" => json!({
                "type": "array",
                "items": { "type": "integer", "minimum": 0, "maximum": 255 }
            }),
            "string" => json!({ "type": "string" }),
            reference_name => {
                let full = full_name(reference_name, namespace);
                let key = self.key_of(&full);
                if !self.definitions.contains_key(&key) {
                    let short = self.key_of(reference_name);
                    if self.definitions.contains_key(&short) {
                        return Ok(reference(&short));
                    }
                    return Err(format!(
                        "the Avro schema names `{full}`, which it never defines"
                    ));
                }
                reference(&key)
            }
        })
    }

    fn complex(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<Value, String> {
        let kind = object
            .get("type")
            .ok_or("an Avro schema object without `type`")?;
        let kind = match kind {
            Value::String(kind) => kind.as_str(),
            // {"type": {...}} or {"type": [...]}: a schema wrapped in an object.
            nested => return self.schema(nested, namespace),
        };
        let mut schema = match kind {
            "record" | "error" => return self.record(object, namespace),
            "enum" => return self.enumeration(object, namespace),
            "fixed" => return self.fixed(object, namespace),
            "array" => {
                let items = object.get("items").ok_or("an Avro array without `items`")?;
                json!({ "type": "array", "items": self.schema(items, namespace)? })
            }
            "map" => {
                let values = object.get("values").ok_or("an Avro map without `values`")?;
                json!({ "type": "object", "additionalProperties": self.schema(values, namespace)? })
            }
            primitive => self.named_or_primitive(primitive, namespace)?,
        };
        if let (Some(logical), Value::Object(schema)) = (object.get("logicalType"), &mut schema) {
            let format = match logical.as_str() {
                Some("uuid") => Some("uuid"),
                Some("date") => Some("date"),
                Some("timestamp-millis" | "timestamp-micros") => Some("int64"),
                _ => None,
            };
            if let Some(format) = format {
                schema.insert("format".into(), json!(format));
            }
        }
        Ok(schema)
    }

    /// Registers the named type `object` under its full name before its body is converted (so
    /// that it can refer to itself) and returns its key and new namespace.
    fn name(
        &mut self,
        object: &Map<String, Value>,
        namespace: &str,
    ) -> Result<(String, String, String), String> {
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a named Avro type without `name`")?;
        let namespace = object
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        let full = full_name(name, namespace);
        let inner_namespace = full
            .rsplit_once('.')
            .map(|(ns, _)| ns.to_owned())
            .unwrap_or_default();
        let key = self.key_of(&full);
        // A placeholder, replaced once converted: a recursive reference finds the key.
        self.definitions.insert(key.clone(), Value::Null);
        Ok((key, full, inner_namespace))
    }

    fn record(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<Value, String> {
        let (key, full, namespace) = self.name(object, namespace)?;
        let fields = object
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("the Avro record `{full}` has no `fields`"))?;
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in fields {
            let name = field
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a field of the Avro record `{full}` has no name"))?;
            let avro = field
                .get("type")
                .ok_or_else(|| format!("the field `{full}.{name}` has no type"))?;
            let mut schema = self.schema(avro, &namespace)?;
            if let (Some(doc), Value::Object(schema)) = (field.get("doc"), &mut schema) {
                schema.insert("description".into(), doc.clone());
            }
            properties.insert(name.to_owned(), schema);
            if field.get("default").is_none() {
                required.push(json!(name));
            }
        }
        let mut schema = json!({
            "type": "object",
            "title": full,
            "properties": properties,
            "required": required,
        });
        if let (Some(doc), Value::Object(map)) = (object.get("doc"), &mut schema) {
            map.insert("description".into(), doc.clone());
        }
        self.definitions.insert(key.clone(), schema);
        Ok(reference(&key))
    }

    fn enumeration(
        &mut self,
        object: &Map<String, Value>,
        namespace: &str,
    ) -> Result<Value, String> {
        let (key, full, _) = self.name(object, namespace)?;
        let symbols = object
            .get("symbols")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("the Avro enum `{full}` has no `symbols`"))?;
        self.definitions.insert(
            key.clone(),
            json!({ "type": "string", "title": full, "enum": symbols }),
        );
        Ok(reference(&key))
    }

    fn fixed(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<Value, String> {
        let (key, full, _) = self.name(object, namespace)?;
        let size = object.get("size").and_then(Value::as_u64).unwrap_or(0);
        self.definitions.insert(
            key.clone(),
            json!({
                "type": "array",
                "title": full,
                "items": { "type": "integer", "minimum": 0, "maximum": 255 },
                "minItems": size,
                "maxItems": size,
            }),
        );
        Ok(reference(&key))
    }
}

/// `name` in `namespace`, unless it has a namespace of its own.
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_referenced_objects_with_required_fields() -> Result<(), String> {
        let avro = json!({
            "type": "record", "name": "UserCreated", "namespace": "users",
            "fields": [
                { "name": "user_id", "type": "string" },
                { "name": "age", "type": ["null", "int"], "default": null },
                { "name": "tags", "type": { "type": "array", "items": "string" } },
                { "name": "next", "type": ["null", "UserCreated"], "default": null },
                { "name": "kind", "type": { "type": "enum", "name": "Kind", "symbols": ["A", "B"] } }
            ]
        });
        let (root, definitions) = convert(&avro, "")?;
        assert_eq!(root, reference("users.UserCreated"));
        let record = &definitions["users.UserCreated"];
        assert_eq!(record["required"], json!(["user_id", "tags", "kind"]));
        assert_eq!(record["properties"]["age"]["oneOf"][1]["format"], "int32");
        assert_eq!(
            record["properties"]["next"]["oneOf"][1],
            reference("users.UserCreated")
        );
        assert_eq!(definitions["users.Kind"]["enum"], json!(["A", "B"]));
        Ok(())
    }

    #[test]
    fn an_undefined_name_is_an_error() {
        let avro =
            json!({ "type": "record", "name": "A", "fields": [{ "name": "b", "type": "B" }] });
        let error = convert(&avro, "").err().unwrap_or_default();
        assert!(error.contains("`B`"), "{error}");
    }
}
