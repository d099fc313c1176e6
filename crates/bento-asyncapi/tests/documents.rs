//! Documents made from what a service declared through a real bus (JSON, Avro and Protobuf
//! events; typed, routed and untyped subscriptions), on each broker's servers and bindings,
//! validated with the official AsyncAPI parser (`@asyncapi/parser` 3.x with the Avro and
//! Protobuf schema parsers, run with node; see `bento_testkit::asyncapi`).

use std::sync::Arc;

use apache_avro::AvroSchema;
use bento_application::{
    Bus, Context, DeadLetterPolicy, HandlerError, MessageBus, SubscriptionSpec,
};
use bento_asyncapi::{AsyncApi, Broker};
use bento_codec::{AvroCodec, Codecs, Format, ProtobufCodec};
use bento_domain::DomainEvent;
use bento_memory::{MemoryBus, MemoryConfig};
use bento_testkit::asyncapi::validate;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A JSON event: its schema is traced from its serde implementation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    email: String,
    age: Option<u32>,
    tags: Vec<String>,
    plan: Plan,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Plan {
    Free,
    Pro,
}

impl DomainEvent for UserCreated {
    const EVENT_TYPE: &'static str = "users.user-created";
    const AGGREGATE_TYPE: &'static str = "user";
    const VERSION: u32 = 2;
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

/// An Avro event.
#[derive(Debug, Clone, Serialize, Deserialize, AvroSchema)]
struct OrderPlaced {
    order_id: String,
    total_cents: i64,
}

impl DomainEvent for OrderPlaced {
    const EVENT_TYPE: &'static str = "orders.order-placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

/// A Protobuf event.
#[derive(Clone, PartialEq, Serialize, Deserialize, prost::Message)]
struct OrderShipped {
    #[prost(string, tag = "1")]
    order_id: String,
    #[prost(string, repeated, tag = "2")]
    parcel_ids: Vec<String>,
    #[prost(message, optional, tag = "3")]
    address: Option<Address>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, prost::Message)]
struct Address {
    #[prost(string, tag = "1")]
    city: String,
}

impl DomainEvent for OrderShipped {
    const EVENT_TYPE: &'static str = "shipping.order-shipped";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

fn field(
    name: &str,
    number: i32,
    label: Label,
    kind: Type,
    type_name: Option<&str>,
) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(label as i32),
        r#type: Some(kind as i32),
        type_name: type_name.map(str::to_owned),
        ..FieldDescriptorProto::default()
    }
}

/// The descriptor set `shipping.proto` compiles to.
fn shipping_descriptors() -> Vec<u8> {
    let file = FileDescriptorProto {
        name: Some("shipping.proto".into()),
        package: Some("test.shipping".into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            DescriptorProto {
                name: Some("OrderShipped".into()),
                field: vec![
                    field("order_id", 1, Label::Optional, Type::String, None),
                    field("parcel_ids", 2, Label::Repeated, Type::String, None),
                    field(
                        "address",
                        3,
                        Label::Optional,
                        Type::Message,
                        Some(".test.shipping.Address"),
                    ),
                ],
                ..DescriptorProto::default()
            },
            DescriptorProto {
                name: Some("Address".into()),
                field: vec![field("city", 1, Label::Optional, Type::String, None)],
                ..DescriptorProto::default()
            },
            DescriptorProto {
                name: Some("Unrelated".into()),
                ..DescriptorProto::default()
            },
        ],
        ..FileDescriptorProto::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

async fn on_user(_: UserCreated, _: Context) -> Result<(), HandlerError> {
    Ok(())
}

async fn on_shipped(_: OrderShipped, _: Context) -> Result<(), HandlerError> {
    Ok(())
}

async fn inspect(_: Context) -> Result<(), HandlerError> {
    Ok(())
}

/// A service on the in-memory bus that sends a JSON event (published), an Avro event
/// (declared) and a Protobuf event (published), and reads with a typed handler, a router and
/// an untyped dead-letter inspector.
async fn service() -> Result<Bus<Codecs>, Box<dyn std::error::Error>> {
    let port: Arc<dyn MessageBus> = Arc::new(MemoryBus::new(MemoryConfig::default()));
    let codecs = Codecs::new(Format::Json)
        .with_format(OrderPlaced::EVENT_TYPE, Format::Avro)
        .with_format(OrderShipped::EVENT_TYPE, Format::Protobuf);
    let bus = Bus::new(port, codecs);
    bus.codec().register(AvroCodec::<OrderPlaced>::derived()?);
    let descriptors: &'static [u8] = Box::leak(shipping_descriptors().into_boxed_slice());
    bus.codec()
        .register(ProtobufCodec::<OrderShipped>::new().with_descriptor(
            descriptors,
            "test.shipping.OrderShipped",
            "shipping.proto",
        ));

    bus.declare::<OrderPlaced>().await?;
    bus.subscribe_with(
        SubscriptionSpec::named("welcome-email")
            .dead_letter(DeadLetterPolicy::to_topic("users.welcome-email.dlq")),
        on_user,
    )
    .await?;
    let router = bus.router().route(on_shipped).route(on_user).build();
    bus.subscribe_with(
        SubscriptionSpec::topic("shipping.order-shipped", "tracking"),
        router,
    )
    .await?;
    bus.subscribe_envelopes(
        SubscriptionSpec::topic("users.welcome-email.dlq", "dlq-inspector"),
        inspect,
    )
    .await?;
    bus.publish(&UserCreated {
        user_id: "u-1".into(),
        email: "ada@example.com".into(),
        age: None,
        tags: vec![],
        plan: Plan::Pro,
    })
    .await?;
    bus.publish(&OrderShipped {
        order_id: "o-1".into(),
        parcel_ids: vec!["p-1".into()],
        address: None,
    })
    .await?;
    Ok(bus)
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Validates `document` and fails with the parser's diagnostics unless it is valid.
fn assert_valid(document: &Value) -> bento_testkit::asyncapi::Validation {
    let report = validate(document).unwrap_or_else(|e| panic!("cannot validate: {e}"));
    assert!(
        report.valid,
        "the AsyncAPI parser rejected the document: {:#?}\n{}",
        report.errors,
        serde_json::to_string_pretty(document).unwrap_or_default()
    );
    assert_eq!(report.version.as_deref(), Some("3.0.0"));
    report
}

#[tokio::test]
async fn a_service_on_the_memory_bus_has_a_valid_document() -> TestResult {
    let bus = service().await?;
    let document = AsyncApi::new(bus.contract(), Broker::Memory)
        .title("users")
        .version("1.0.0")
        .to_value()?;
    let report = assert_valid(&document);

    // What the parser read.
    for channel in [
        "users.user-created",
        "orders.order-placed",
        "shipping.order-shipped",
        "users.welcome-email.dlq",
        "shipping.order-shipped-tracking-DLQ",
    ] {
        assert!(
            report.channels.iter().any(|c| c == channel),
            "{channel}: {report:?}"
        );
    }
    for operation in [
        "send.users.user-created",
        "send.orders.order-placed",
        "send.shipping.order-shipped",
        "receive.welcome-email",
        "receive.tracking",
        "receive.dlq-inspector",
        "dead-letter.welcome-email",
        "dead-letter.tracking",
    ] {
        assert!(
            report.operations.iter().any(|o| o == operation),
            "{operation}: {report:?}"
        );
    }
    assert!(
        document.get("servers").is_none(),
        "the memory bus has no server"
    );

    // Operations point where they should.
    let operations = &document["operations"];
    assert_eq!(operations["send.users.user-created"]["action"], "send");
    assert_eq!(operations["receive.welcome-email"]["action"], "receive");
    assert_eq!(
        operations["receive.tracking"]["messages"],
        json!([
            { "$ref": "#/channels/shipping.order-shipped/messages/shipping.order-shipped" },
            { "$ref": "#/channels/shipping.order-shipped/messages/users.user-created" },
        ])
    );
    // The dead-letter inspector reads what welcome-email dead-letters.
    assert_eq!(
        operations["receive.dlq-inspector"]["messages"],
        json!([{ "$ref": "#/channels/users.welcome-email.dlq/messages/users.user-created.dead-letter" }])
    );

    // Messages: payload schemas per format, envelope headers, correlation id.
    let messages = &document["components"]["messages"];
    let user = &messages["users.user-created"];
    assert_eq!(user["contentType"], "application/json");
    assert_eq!(
        user["payload"],
        json!({ "$ref": "#/components/schemas/UserCreated" })
    );
    let schema = &document["components"]["schemas"]["UserCreated"];
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["required"],
        json!(["user_id", "email", "tags", "plan"])
    );
    assert_eq!(schema["properties"]["age"]["oneOf"][0]["type"], "null");
    assert_eq!(
        document["components"]["schemas"]["Plan"]["enum"],
        json!(["Free", "Pro"])
    );
    let headers = &user["headers"];
    assert_eq!(
        headers["properties"]["bento-event-type"]["const"],
        "users.user-created"
    );
    assert_eq!(headers["properties"]["bento-event-version"]["const"], "2");
    assert_eq!(
        headers["properties"]["content-type"]["const"],
        "application/json"
    );
    assert!(
        headers["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("bento-correlation-id")))
    );
    assert_eq!(
        document["components"]["correlationIds"]["bento"]["location"],
        "$message.header#/bento-correlation-id"
    );
    assert_eq!(
        user["correlationId"]["$ref"],
        "#/components/correlationIds/bento"
    );

    let order = &messages["orders.order-placed"];
    assert_eq!(order["contentType"], "application/avro");
    assert_eq!(
        order["payload"]["schemaFormat"],
        "application/vnd.apache.avro;version=1.9.0"
    );
    assert_eq!(order["payload"]["schema"]["name"], "OrderPlaced");

    let shipped = &messages["shipping.order-shipped"];
    assert_eq!(shipped["contentType"], "application/x-protobuf");
    assert_eq!(
        shipped["payload"]["schemaFormat"],
        "application/vnd.google.protobuf;version=3"
    );
    let proto = shipped["payload"]["schema"].as_str().unwrap_or_default();
    assert!(proto.contains("message OrderShipped {"), "{proto}");
    assert!(proto.contains("repeated string parcel_ids = 2;"), "{proto}");
    assert!(proto.contains("message Address {"), "{proto}");
    assert!(!proto.contains("Unrelated"), "{proto}");

    let dead = &messages["users.user-created.dead-letter"];
    assert!(
        dead["headers"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("bento-dlq-reason")))
    );
    Ok(())
}

#[tokio::test]
async fn pulsar_servers_channels_and_bindings() -> TestResult {
    let bus = service().await?;
    let document = AsyncApi::new(
        bus.contract(),
        Broker::Pulsar {
            service_url: "pulsar+ssl://pulsar.example.com:6651".into(),
            tenant: "acme".into(),
            namespace: "users".into(),
        },
    )
    .to_value()?;
    assert_valid(&document);
    let server = &document["servers"]["pulsar"];
    assert_eq!(server["protocol"], "pulsar+ssl");
    assert_eq!(server["host"], "pulsar.example.com:6651");
    assert_eq!(server["bindings"]["pulsar"]["tenant"], "acme");
    let channel = &document["channels"]["users.user-created"];
    assert_eq!(
        channel["address"],
        "persistent://acme/users/users.user-created"
    );
    assert_eq!(channel["bindings"]["pulsar"]["namespace"], "users");
    assert_eq!(channel["bindings"]["pulsar"]["persistence"], "persistent");
    Ok(())
}

#[tokio::test]
async fn kafka_servers_channels_and_bindings() -> TestResult {
    let bus = service().await?;
    let document = AsyncApi::new(
        bus.contract(),
        Broker::Kafka {
            bootstrap_servers: "k1.example.com:9092,k2.example.com:9092".into(),
            secure: false,
        },
    )
    .title("users")
    .to_value()?;
    assert_valid(&document);
    assert_eq!(keys(&document["servers"]), ["kafka", "kafka-2"]);
    assert_eq!(document["servers"]["kafka"]["protocol"], "kafka");
    let channel = &document["channels"]["orders.order-placed"];
    assert_eq!(channel["bindings"]["kafka"]["topic"], "orders.order-placed");
    assert_eq!(
        document["operations"]["receive.welcome-email"]["bindings"]["kafka"]["groupId"]["enum"],
        json!(["welcome-email"])
    );
    assert_eq!(
        document["components"]["messages"]["users.user-created"]["bindings"]["kafka"]["key"]["type"],
        "string"
    );
    Ok(())
}

/// A document the parser must reject, so that a passing validation means something.
#[test]
fn the_validator_rejects_a_broken_document() {
    let broken = json!({
        "asyncapi": "3.0.0",
        "info": { "title": "broken", "version": "1" },
        "operations": { "send.x": { "action": "send", "channel": { "$ref": "#/channels/missing" } } }
    });
    let report = validate(&broken).unwrap_or_else(|e| panic!("cannot validate: {e}"));
    assert!(!report.valid, "{report:?}");
    assert!(!report.errors.is_empty());
}
