//! The schemas of an event type as stand-alone documents, for registries that take them one by
//! one (a Confluent-compatible registry for Kafka): a JSON Schema document for a JSON event, the
//! `.proto` file of a Protobuf event. The same conversions as the AsyncAPI document's payloads.

use serde_json::{Map, Value};

use crate::{json_schema, proto};

/// Where the AsyncAPI conversion points its references, and where a stand-alone document has
/// its named schemas.
const COMPONENT_REFS: &str = "\"#/components/schemas/";
const DEFINITION_REFS: &str = "\"#/definitions/";

/// The JSON Schema (draft 07) document of the JSON that `avro_schema` (the Avro record schema
/// of a `SchemaKind::Json` definition) describes: the root record's schema at the top, titled
/// with the record's full name, and every named type under `definitions`.
pub fn json_schema_document(avro_schema: &str) -> Result<Value, String> {
    let avro: Value = serde_json::from_str(avro_schema)
        .map_err(|e| format!("the Avro schema is not JSON: {e}"))?;
    let (root, definitions) = json_schema::convert(&avro, "")?;
    let rewrite = |value: &Value| -> Result<Value, String> {
        let text = value.to_string().replace(COMPONENT_REFS, DEFINITION_REFS);
        serde_json::from_str(&text).map_err(|e| format!("rewriting references: {e}"))
    };
    let root = rewrite(&root)?;
    let definitions: Map<String, Value> = definitions
        .iter()
        .map(|(key, schema)| rewrite(schema).map(|schema| (key.clone(), schema)))
        .collect::<Result<_, _>>()?;
    let root_key = root
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix(&DEFINITION_REFS[1..]))
        .map(str::to_owned);
    let mut document = match root_key.as_deref().and_then(|key| definitions.get(key)) {
        Some(Value::Object(record)) => record.clone(),
        _ => match root {
            Value::Object(schema) => schema,
            other => Map::from_iter([("allOf".to_owned(), Value::Array(vec![other]))]),
        },
    };
    if let Some(key) = root_key {
        document
            .entry("title")
            .or_insert_with(|| Value::String(key));
    }
    let mut ordered = Map::new();
    ordered.insert(
        "$schema".into(),
        Value::String("http://json-schema.org/draft-07/schema#".into()),
    );
    ordered.extend(document);
    if !definitions.is_empty() {
        ordered.insert("definitions".into(), Value::Object(definitions));
    }
    Ok(Value::Object(ordered))
}

/// The `.proto` file of a `SchemaKind::ProtobufNative` definition (the JSON document with the
/// base64 `fileDescriptorSet`, `rootMessageTypeName` and `rootFileDescriptorName`): the root
/// message first, then the messages and enums of its file it uses; imports only the well-known
/// `google/protobuf/*` files.
pub fn proto_file(definition: &str) -> Result<String, String> {
    proto::render(definition).map(|rendered| rendered.text)
}
