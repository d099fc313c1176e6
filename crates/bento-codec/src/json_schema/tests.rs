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
