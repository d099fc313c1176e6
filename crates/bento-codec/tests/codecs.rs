//! Round trips, selection per event type, schema checks and Avro schema evolution.

use apache_avro::AvroSchema;
use bento_codec::{AvroCodec, Codec, CodecError, Codecs, Format, ProtobufCodec};
use bento_domain::{DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
struct UserCreated {
    user_id: String,
    email: String,
    age: i32,
}

impl DomainEvent for UserCreated {
    const EVENT_TYPE: &'static str = "users.user-created";
    const VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "user";
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize, prost::Message)]
struct Shipped {
    #[prost(string, tag = "1")]
    order_id: String,
    #[prost(int64, tag = "2")]
    parcels: i64,
}

impl DomainEvent for Shipped {
    const EVENT_TYPE: &'static str = "orders.shipped";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

fn user() -> UserCreated {
    UserCreated {
        user_id: "u-1".into(),
        email: "ada@example.com".into(),
        age: 36,
    }
}

/// Version 1 of UserCreated had no `age`.
const USER_V1: &str = r#"{"type":"record","name":"UserCreated","fields":[
    {"name":"user_id","type":"string"},{"name":"email","type":"string"}]}"#;

#[test]
fn each_codec_round_trips_and_stamps_its_content_type() -> Result<(), CodecError> {
    let codecs = Codecs::new(Format::Avro).with_format(Shipped::EVENT_TYPE, Format::Protobuf);
    codecs.register(AvroCodec::<UserCreated>::derived()?);
    codecs.register(ProtobufCodec::<Shipped>::new());

    let avro = codecs.encode(&user())?;
    assert_eq!(avro.content_type, "application/avro");
    assert_eq!(
        codecs.decode::<UserCreated>(&avro.content_type, &avro.payload)?,
        user()
    );

    let shipped = Shipped {
        order_id: "o-9".into(),
        parcels: 2,
    };
    let proto = codecs.encode(&shipped)?;
    assert_eq!(proto.content_type, "application/x-protobuf");
    assert_eq!(proto.payload, prost::Message::encode_to_vec(&shipped));
    assert_eq!(
        codecs.decode::<Shipped>(&proto.content_type, &proto.payload)?,
        shipped
    );

    // The recorded (type-erased) path of the unit of work picks the same codec.
    assert_eq!(codecs.encode_recorded(&user())?, avro);
    Ok(())
}

#[test]
fn json_is_the_default_and_always_readable() -> Result<(), CodecError> {
    let codecs = Codecs::new(Format::Json);
    codecs.register(AvroCodec::<UserCreated>::derived()?);
    let json = codecs.encode(&user())?;
    assert_eq!(json.content_type, "application/json");
    // A consumer with an Avro codec still reads JSON messages of the type.
    let avro_consumer = Codecs::new(Format::Avro);
    avro_consumer.register(AvroCodec::<UserCreated>::derived()?);
    assert_eq!(
        avro_consumer.decode::<UserCreated>(&json.content_type, &json.payload)?,
        user()
    );
    Ok(())
}

#[test]
fn a_format_selected_without_a_codec_is_a_clear_error() {
    let codecs = Codecs::new(Format::Json).with_format(UserCreated::EVENT_TYPE, Format::Protobuf);
    let error = codecs
        .encode(&user())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("users.user-created") && error.contains("protobuf"),
        "{error}"
    );
}

#[test]
fn unknown_content_type_names_type_and_content_type() {
    let codecs = Codecs::default();
    let error = codecs
        .decode::<UserCreated>("application/avro", b"\x02")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("application/avro") && error.contains("users.user-created"),
        "{error}"
    );
}

#[test]
fn given_schema_is_checked_against_the_rust_type() {
    let matching = r#"{"type":"record","name":"UserCreated","fields":[
        {"name":"user_id","type":"string"},{"name":"email","type":"string"},{"name":"age","type":"int"}]}"#;
    assert!(AvroCodec::<UserCreated>::checked(matching).is_ok());
    let wrong = r#"{"type":"record","name":"UserCreated","fields":[
        {"name":"user_id","type":"long"},{"name":"email","type":"string"},{"name":"age","type":"int"}]}"#;
    let error = AvroCodec::<UserCreated>::checked(wrong)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("disagree"), "{error}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "UserCreated")]
#[avro(name = "UserCreated")]
struct UserCreatedV1 {
    user_id: String,
    email: String,
}

impl DomainEvent for UserCreatedV1 {
    const EVENT_TYPE: &'static str = "users.user-created";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "user";
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

#[test]
fn avro_schema_evolution_reads_older_and_newer_versions() -> Result<(), CodecError> {
    // A v1 producer (no `age`) and a v2 consumer that knows v1's schema. Adding `age` without
    // a default is not backward compatible, so the v2 reader schema gives it one.
    let v2_with_default = r#"{"type":"record","name":"UserCreated","fields":[
        {"name":"user_id","type":"string"},{"name":"email","type":"string"},
        {"name":"age","type":"int","default":0}]}"#;
    let producer_v1 = Codecs::new(Format::Avro);
    producer_v1.register(AvroCodec::<UserCreatedV1>::derived()?);
    let old = producer_v1.encode(&UserCreatedV1 {
        user_id: "u-1".into(),
        email: "a@b.c".into(),
    })?;
    let envelope = Envelope::new(
        UserCreated::EVENT_TYPE,
        1,
        old.content_type.clone(),
        old.payload.clone(),
    );

    let consumer_v2 = Codecs::new(Format::Avro);
    consumer_v2
        .register(AvroCodec::<UserCreated>::from_avsc(v2_with_default)?.with_version(1, USER_V1)?);
    let read: UserCreated = consumer_v2.decode_envelope(&envelope)?;
    assert_eq!(
        read,
        UserCreated {
            user_id: "u-1".into(),
            email: "a@b.c".into(),
            age: 0
        }
    );

    // Forward: a v1 consumer reads what v2 writes (the extra field is skipped).
    let producer_v2 = Codecs::new(Format::Avro);
    producer_v2.register(AvroCodec::<UserCreated>::derived()?);
    let new = producer_v2.encode(&user())?;
    let newer = Envelope::new(
        UserCreated::EVENT_TYPE,
        2,
        new.content_type.clone(),
        new.payload.clone(),
    );
    let consumer_v1 = Codecs::new(Format::Avro);
    let v2_schema = UserCreated::get_schema().canonical_form();
    consumer_v1.register(AvroCodec::<UserCreatedV1>::derived()?.with_version(2, &v2_schema)?);
    let read: UserCreatedV1 = consumer_v1.decode_envelope(&newer)?;
    assert_eq!(
        read,
        UserCreatedV1 {
            user_id: "u-1".into(),
            email: "ada@example.com".into()
        }
    );

    // A version nobody registered is a clear decode error, not garbage.
    let unknown = Envelope::new(
        UserCreated::EVENT_TYPE,
        7,
        new.content_type.clone(),
        new.payload.clone(),
    );
    let error = consumer_v1
        .decode_envelope::<UserCreatedV1>(&unknown)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("version 7"), "{error}");
    Ok(())
}

#[test]
fn an_incompatible_version_is_refused_when_registered() -> Result<(), CodecError> {
    // v2's `age` has no default, so v2 cannot read v1 data.
    let error = AvroCodec::<UserCreated>::derived()?
        .with_version(1, USER_V1)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("version 1"), "{error}");
    Ok(())
}

#[test]
fn codecs_describe_schemas_for_a_registry() -> Result<(), CodecError> {
    use bento_application::SchemaKind;
    let avro = Codecs::new(Format::Avro);
    avro.register(AvroCodec::<UserCreated>::derived()?);
    let schema = avro
        .schema::<UserCreated>()?
        .map(|s| (s.kind, s.definition));
    assert!(
        matches!(&schema, Some((SchemaKind::Avro, d)) if d.contains("\"UserCreated\"") && d.contains("age")),
        "{schema:?}"
    );

    let json = Codecs::new(Format::Json);
    json.register(AvroCodec::<UserCreated>::derived()?);
    assert_eq!(
        json.schema::<UserCreated>()?.map(|s| s.kind),
        Some(SchemaKind::Json)
    );

    let proto = Codecs::new(Format::Protobuf);
    proto.register(ProtobufCodec::<Shipped>::new().with_descriptor(
        b"\x0a\x00",
        "orders.Shipped",
        "orders.proto",
    ));
    let native = proto.schema::<Shipped>()?.map(|s| (s.kind, s.definition));
    assert!(
        matches!(&native, Some((SchemaKind::ProtobufNative, d)) if d.contains("orders.Shipped") && d.contains("CgA=")),
        "{native:?}"
    );
    Ok(())
}

#[test]
fn plain_json_types_get_the_schema_of_their_serde_form() -> Result<(), CodecError> {
    use bento_application::SchemaKind;
    let codecs = Codecs::default();
    let schema = codecs
        .schema::<UserCreated>()?
        .ok_or_else(|| CodecError::Decode {
            event_type: "users.user-created".into(),
            source: "no schema".into(),
        })?;
    assert_eq!(schema.kind, SchemaKind::Json);
    assert_eq!(schema.event_type, "users.user-created");
    // The same record apache-avro derives for the type, so JSON and Avro readers agree.
    let ours =
        apache_avro::Schema::parse_str(&schema.definition).map_err(|e| CodecError::Decode {
            event_type: "users.user-created".into(),
            source: e.into(),
        })?;
    assert_eq!(
        ours.canonical_form(),
        UserCreated::get_schema().canonical_form()
    );
    // An event recorded by an aggregate (type erased) gets the same schema.
    let recorded: Box<dyn bento_domain::RecordedEvent> = Box::new(user());
    assert_eq!(
        codecs.recorded_schema(recorded.as_ref())?,
        Some(schema.clone())
    );
    assert_eq!(bento_codec::Json.schema::<UserCreated>()?, Some(schema));

    // Opting out, per event type.
    let without = Codecs::default().without_schema(UserCreated::EVENT_TYPE);
    assert_eq!(without.schema::<UserCreated>()?, None);
    assert_eq!(without.recorded_schema(recorded.as_ref())?, None);
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Untyped {
    id: String,
    details: serde_json::Value,
}

impl DomainEvent for Untyped {
    const EVENT_TYPE: &'static str = "misc.untyped";
    const AGGREGATE_TYPE: &'static str = "misc";
    fn aggregate_id(&self) -> String {
        self.id.clone()
    }
}

#[test]
fn a_type_no_schema_describes_fails_naming_the_field_and_the_way_out() {
    let error = Codecs::default()
        .schema::<Untyped>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("misc.untyped"), "{error}");
    assert!(error.contains("`details`"), "{error}");
    assert!(error.contains("schema = \"none\""), "{error}");
    assert_eq!(
        Codecs::default()
            .without_schema(Untyped::EVENT_TYPE)
            .schema::<Untyped>()
            .ok(),
        Some(None)
    );
}
