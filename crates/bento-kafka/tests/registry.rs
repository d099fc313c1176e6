//! The Kafka backend with a real Confluent-compatible schema registry (the dev-env's Apicurio
//! Registry, `cargo xtask dev-env up registry`) and a real broker: event schemas registered
//! under their subjects, compatible evolution accepted, an incompatible schema refused with an
//! error naming the topic, event type, subject, strategy and the registry's reason; records in
//! the Confluent wire format read by confluent-kafka's `AvroDeserializer`, `JSONDeserializer`
//! and `ProtobufDeserializer` (Python, `interop/python/kafka_registry_interop.py`), and records
//! written by its serializers read by Bento.

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::AvroSchema;
use bento_application::{Bus, Context, HandlerError, MessageBus, SubscriptionSpec};
use bento_codec::{AvroCodec, Codecs, Format, ProtobufCodec};
use bento_domain::DomainEvent;
use bento_kafka::{
    Compatibility, KafkaBus, RegistryClient, SchemaRegistryConfig, SubjectNameStrategy,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn Error>>;

/// The Python client, with the extras its schema registry serializers need.
const CONFLUENT_KAFKA: &str = "confluent-kafka[avro,json,protobuf,schemaregistry]==2.16.1";

/// Held by each test for its whole run: Apicurio Registry 2.4's in-memory storage fails (and
/// then blocks) on concurrent first registrations (`Concurrent update in table "SEQUENCES"`),
/// so the tests of this binary register one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a test waits for a record.
const PATIENCE: Duration = Duration::from_secs(30);

/// Version 1 of the Avro event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, AvroSchema)]
struct AccountOpened {
    account_id: String,
    owner: String,
    credit: i32,
}

impl DomainEvent for AccountOpened {
    const EVENT_TYPE: &'static str = "accounts.account-opened";
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account_id.clone()
    }
}

const V1_AVSC: &str = r#"{"type":"record","name":"AccountOpened","namespace":"NS","fields":[
    {"name":"account_id","type":"string"},
    {"name":"owner","type":"string"},
    {"name":"credit","type":"int"}]}"#;

/// Version 2: a new field with a default, which readers of version 2 can fill in for data of
/// version 1 (backward compatible).
const V2_AVSC: &str = r#"{"type":"record","name":"AccountOpened","namespace":"NS","fields":[
    {"name":"account_id","type":"string"},
    {"name":"owner","type":"string"},
    {"name":"credit","type":"int"},
    {"name":"currency","type":"string","default":"EUR"}]}"#;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AccountOpenedV2 {
    account_id: String,
    owner: String,
    credit: i32,
    currency: String,
}

impl DomainEvent for AccountOpenedV2 {
    const EVENT_TYPE: &'static str = "accounts.account-opened";
    const VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account_id.clone()
    }
}

/// An incompatible change: `credit` becomes a string, and a field without default is added.
const BROKEN_AVSC: &str = r#"{"type":"record","name":"AccountOpened","namespace":"NS","fields":[
    {"name":"account_id","type":"string"},
    {"name":"owner","type":"string"},
    {"name":"credit","type":"string"},
    {"name":"branch","type":"string"}]}"#;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AccountOpenedBroken {
    account_id: String,
    owner: String,
    credit: String,
    branch: String,
}

impl DomainEvent for AccountOpenedBroken {
    const EVENT_TYPE: &'static str = "accounts.account-opened";
    const VERSION: u32 = 3;
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account_id.clone()
    }
}

/// A JSON event (its JSON Schema is derived from its serde form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserRegistered {
    user_id: String,
    email: String,
    age: Option<u32>,
}

impl DomainEvent for UserRegistered {
    const EVENT_TYPE: &'static str = "users.user-registered";
    const AGGREGATE_TYPE: &'static str = "user";
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

/// `OrderShipped` of `examples/proto/shipping.proto`, written out with prost's derive.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct OrderShipped {
    #[prost(string, tag = "1")]
    order_id: String,
    #[prost(string, tag = "2")]
    carrier: String,
    #[prost(string, repeated, tag = "3")]
    parcel_ids: Vec<String>,
    #[prost(int64, tag = "4")]
    shipped_at_ms: i64,
}

impl DomainEvent for OrderShipped {
    const EVENT_TYPE: &'static str = "shipping.order-shipped";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

/// The registry the tests use: `BENTO_TEST_REGISTRY_URL`, by default the dev-env's.
fn registry_url() -> String {
    std::env::var("BENTO_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_owned())
}

/// A bus on the test broker with the test registry, the event types of `topics` on their
/// topics; panics (fails the test) when the registry does not answer.
async fn bus(strategy: SubjectNameStrategy, topics: &[(&str, &str)]) -> (KafkaBus, RegistryClient) {
    let mut config = common::config();
    let mut registry = SchemaRegistryConfig::new(registry_url());
    registry.subject_name_strategy = strategy;
    registry.compatibility = Some(Compatibility::Backward);
    config.schema_registry = Some(registry);
    for (event_type, topic) in topics {
        config
            .topics
            .insert((*event_type).to_owned(), (*topic).to_owned());
    }
    let kafka = common::connect(config).await;
    let client = kafka
        .schema_registry()
        .cloned()
        .expect("the bus has the registry it was configured with");
    if let Err(error) = client.subjects().await {
        panic!(
            "the schema registry at {} does not answer ({error}); start it with \
             `cargo xtask dev-env up registry` or point BENTO_TEST_REGISTRY_URL at one",
            registry_url()
        );
    }
    (kafka, client)
}

/// An Avro schema text whose record lives in a namespace of its own (so that record-named
/// subjects do not meet those of other runs).
fn avsc(template: &str, namespace: &str) -> String {
    template.replace("\"NS\"", &format!("\"{namespace}\""))
}

fn namespace() -> String {
    format!("bento.test.r{}", uuid::Uuid::now_v7().simple())
}

fn avro_codecs<E: DomainEvent + Serialize + serde::de::DeserializeOwned>(avsc: &str) -> Codecs {
    let codecs = Codecs::new(Format::Avro);
    codecs.register::<E>(AvroCodec::from_avsc(avsc).expect("a valid Avro schema"));
    codecs
}

fn forward<E: Send + 'static>(
    tx: mpsc::UnboundedSender<(E, Context)>,
) -> impl Fn(E, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    move |event, ctx| {
        let _ = tx.send((event, ctx));
        std::future::ready(Ok(()))
    }
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}"))
        .unwrap_or_else(|| panic!("the {what} channel closed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_schema_is_registered_under_the_topic_subject_and_records_round_trip() -> TestResult {
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let topic = common::unique("registry-avro");
    let (kafka, registry) = bus(
        SubjectNameStrategy::Topic,
        &[(AccountOpened::EVENT_TYPE, &topic)],
    )
    .await;
    let ns = namespace();
    let bus = Bus::new(
        Arc::new(kafka.clone()),
        avro_codecs::<AccountOpened>(&avsc(V1_AVSC, &ns)),
    );
    bus.declare::<AccountOpened>().await?;

    let subject = format!("{topic}-value");
    let latest = registry
        .latest(&subject)
        .await?
        .expect("the subject exists");
    assert_eq!(latest.schema_type, "AVRO");
    assert_eq!(latest.version, 1);
    assert!(latest.schema.contains("credit"), "{}", latest.schema);
    // Declaring it again registers no new version.
    bus.declare::<AccountOpened>().await?;
    assert_eq!(registry.latest(&subject).await?.map(|v| v.version), Some(1));

    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, common::unique("reader")),
            forward::<AccountOpened>(tx),
        )
        .await?;
    let event = AccountOpened {
        account_id: "a-1".into(),
        owner: "Ada".into(),
        credit: 42,
    };
    bus.publish(&event).await?;
    let (got, ctx) = next(&mut rx, "Avro event").await;
    assert_eq!(got, event);
    assert_eq!(ctx.envelope().content_type, "application/avro");
    subscription.shutdown().await?;
    kafka.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backward_compatible_evolution_is_accepted_and_an_incompatible_schema_refused() -> TestResult
{
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let topic = common::unique("registry-evolve");
    let (kafka, registry) = bus(
        SubjectNameStrategy::Topic,
        &[(AccountOpened::EVENT_TYPE, &topic)],
    )
    .await;
    let ns = namespace();
    let subject = format!("{topic}-value");
    let v1 = Bus::new(
        Arc::new(kafka.clone()),
        avro_codecs::<AccountOpened>(&avsc(V1_AVSC, &ns)),
    );
    v1.declare::<AccountOpened>().await?;

    // Version 2 adds a field with a default: accepted as version 2 of the subject.
    let v2_kafka = common::connect(kafka.config().clone()).await;
    let v2 = Bus::new(
        Arc::new(v2_kafka.clone()),
        avro_codecs::<AccountOpenedV2>(&avsc(V2_AVSC, &ns)),
    );
    v2.declare::<AccountOpenedV2>().await?;
    let latest = registry
        .latest(&subject)
        .await?
        .expect("the subject exists");
    assert_eq!(latest.version, 2);
    assert!(latest.schema.contains("currency"), "{}", latest.schema);

    // A field changing type and a new one without default: refused, and the error says where,
    // what, by which rules and why.
    let broken_kafka = common::connect(kafka.config().clone()).await;
    let broken = Bus::new(
        Arc::new(broken_kafka.clone()),
        avro_codecs::<AccountOpenedBroken>(&avsc(BROKEN_AVSC, &ns)),
    );
    let error = broken
        .declare::<AccountOpenedBroken>()
        .await
        .expect_err("an incompatible schema must be refused")
        .to_string();
    for expected in [
        topic.as_str(),
        AccountOpened::EVENT_TYPE,
        subject.as_str(),
        "TopicNameStrategy",
        "BACKWARD",
    ] {
        assert!(error.contains(expected), "names {expected}: {error}");
    }
    assert!(
        error.contains("ncompatible"),
        "gives the registry's reason: {error}"
    );
    // Nothing was registered; a publish of the refused type fails the same way.
    assert_eq!(registry.latest(&subject).await?.map(|v| v.version), Some(2));
    let published = broken
        .publish(&AccountOpenedBroken {
            account_id: "b".into(),
            owner: "o".into(),
            credit: "1".into(),
            branch: "x".into(),
        })
        .await;
    assert!(
        published.is_err(),
        "the refused schema's events are not published"
    );

    // Version 1 and version 2 publishers both go on.
    v1.publish(&AccountOpened {
        account_id: "a".into(),
        owner: "o".into(),
        credit: 1,
    })
    .await?;
    v2.publish(&AccountOpenedV2 {
        account_id: "a".into(),
        owner: "o".into(),
        credit: 1,
        currency: "CHF".into(),
    })
    .await?;
    for bus in [kafka, v2_kafka, broken_kafka] {
        bus.close().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_name_strategy_names_the_subject_after_the_record() -> TestResult {
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let topic = common::unique("registry-record");
    let (kafka, registry) = bus(
        SubjectNameStrategy::Record,
        &[(AccountOpened::EVENT_TYPE, &topic)],
    )
    .await;
    let ns = namespace();
    let bus = Bus::new(
        Arc::new(kafka.clone()),
        avro_codecs::<AccountOpened>(&avsc(V1_AVSC, &ns)),
    );
    bus.declare::<AccountOpened>().await?;
    let subject = format!("{ns}.AccountOpened");
    assert!(
        registry.latest(&subject).await?.is_some(),
        "subject {subject}"
    );
    assert!(registry.latest(&format!("{topic}-value")).await?.is_none());
    kafka.close().await?;
    Ok(())
}

/// An Avro record whose datum starts with a zero byte (an empty first string) fails once and
/// is read again from its retry tier: retry records hold the codec's bytes, which the consumer
/// must not take for a framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_record_is_decoded_from_its_retry_tier() -> TestResult {
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let topic = common::unique("registry-retry");
    let (kafka, _registry_client) = bus(
        SubjectNameStrategy::Topic,
        &[(AccountOpened::EVENT_TYPE, &topic)],
    )
    .await;
    let ns = namespace();
    let bus = Bus::new(
        Arc::new(kafka.clone()),
        avro_codecs::<AccountOpened>(&avsc(V1_AVSC, &ns)),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let handler = {
        let attempts = attempts.clone();
        move |event: AccountOpened, ctx: Context| {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let _ = tx.send((event, ctx.attempt()));
            std::future::ready(if attempt == 1 {
                Err(HandlerError::retryable("first attempt fails"))
            } else {
                Ok(())
            })
        }
    };
    let policy = bento_application::RetryPolicy::exponential(3, Duration::from_millis(200));
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, common::unique("retrying"))
                .retry(policy),
            handler,
        )
        .await?;
    let event = AccountOpened {
        account_id: String::new(),
        owner: "Ada".into(),
        credit: 1,
    };
    bus.publish(&event).await?;
    let (first, first_attempt) = next(&mut rx, "first attempt").await;
    let (second, second_attempt) = next(&mut rx, "retried attempt").await;
    assert_eq!((first, first_attempt), (event.clone(), 1));
    assert_eq!((second, second_attempt), (event, 2));
    subscription.shutdown().await?;
    kafka.close().await?;
    Ok(())
}

/// Runs the Python side; its JSON output.
fn python(args: &[&str]) -> Result<Value, Box<dyn Error>> {
    common::python(
        "kafka_registry_interop.py",
        "confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.json_schema, confluent_kafka.schema_registry.protobuf",
        CONFLUENT_KAFKA,
        args,
    )
}

/// The serialized `FileDescriptorSet` of `examples/proto/shipping.proto`.
fn shipping_descriptors() -> Result<Vec<u8>, Box<dyn Error>> {
    let proto_dir = common::workspace_root().join("examples/proto");
    let descriptors = protox::compile(["shipping.proto"], [&proto_dir])?;
    Ok(prost::Message::encode_to_vec(&descriptors))
}

fn protobuf_codecs(descriptors: &[u8]) -> Codecs {
    let codecs = Codecs::new(Format::Protobuf);
    codecs.register::<OrderShipped>(ProtobufCodec::new().with_descriptor(
        descriptors,
        "bento.examples.shipping.OrderShipped",
        "shipping.proto",
    ));
    codecs
}

/// Bento publishes one event of each format; confluent-kafka's deserializers read them with
/// the writer schemas they fetch from the registry by the records' schema ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_deserializers_read_what_bento_wrote() -> TestResult {
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let (avro_topic, json_topic, proto_topic) = (
        common::unique("registry-py-avro"),
        common::unique("registry-py-json"),
        common::unique("registry-py-proto"),
    );
    let (kafka, registry) = bus(
        SubjectNameStrategy::Topic,
        &[
            (AccountOpened::EVENT_TYPE, &avro_topic),
            (UserRegistered::EVENT_TYPE, &json_topic),
            (OrderShipped::EVENT_TYPE, &proto_topic),
        ],
    )
    .await;
    let descriptors = shipping_descriptors()?;
    let descriptor_file = std::env::temp_dir().join(format!("{proto_topic}.desc"));
    std::fs::write(&descriptor_file, &descriptors)?;
    let bento = Arc::new(kafka.clone());
    let ns = namespace();

    let account = AccountOpened {
        account_id: "a-7".into(),
        owner: "Ada".into(),
        credit: 7,
    };
    Bus::new(
        bento.clone(),
        avro_codecs::<AccountOpened>(&avsc(V1_AVSC, &ns)),
    )
    .publish(&account)
    .await?;
    let user = UserRegistered {
        user_id: "u-7".into(),
        email: "ada@example.com".into(),
        age: Some(36),
    };
    Bus::new(bento.clone(), Codecs::new(Format::Json))
        .publish(&user)
        .await?;
    let order = OrderShipped {
        order_id: "o-7".into(),
        carrier: "postal".into(),
        parcel_ids: vec!["p-1".into(), "p-2".into()],
        shipped_at_ms: 1_700_000_000_000,
    };
    Bus::new(bento.clone(), protobuf_codecs(&descriptors))
        .publish(&order)
        .await?;

    let (bootstrap, url) = (common::bootstrap(), registry_url());
    let read = |topic: &str, format: &str| -> Result<Value, Box<dyn Error>> {
        let descriptors = descriptor_file.display().to_string();
        let records = python(&[
            "consume",
            &bootstrap,
            &url,
            topic,
            format,
            "1",
            &descriptors,
        ])?;
        Ok(records[0].clone())
    };
    for (topic, format, expected) in [
        (
            &avro_topic,
            "avro",
            json!({"account_id": "a-7", "owner": "Ada", "credit": 7}),
        ),
        (
            &json_topic,
            "json",
            json!({"user_id": "u-7", "email": "ada@example.com", "age": 36}),
        ),
        (
            &proto_topic,
            "protobuf",
            // Protobuf's JSON form writes 64-bit integers as strings.
            json!({"order_id": "o-7", "carrier": "postal", "parcel_ids": ["p-1", "p-2"],
                   "shipped_at_ms": "1700000000000"}),
        ),
    ] {
        let record = read(topic, format)?;
        assert_eq!(record["value"], expected, "{format} record: {record}");
        assert_eq!(record["magic"], 0, "{format} record: {record}");
        let latest = registry
            .latest(&format!("{topic}-value"))
            .await?
            .expect("the subject exists");
        assert_eq!(
            record["schema_id"], latest.id,
            "{format} record's schema id"
        );
        let expected_type = match format {
            "avro" => "AVRO",
            "json" => "JSON",
            _ => "PROTOBUF",
        };
        assert_eq!(latest.schema_type, expected_type);
    }
    let _ = std::fs::remove_file(&descriptor_file);
    kafka.close().await?;
    Ok(())
}

/// confluent-kafka's serializers write one record of each format, Avro and JSON with the schema
/// Bento registered (the subject's latest), Protobuf with the schema of its message type,
/// which it registers; Bento's subscriptions read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bento_reads_what_confluent_serializers_wrote() -> TestResult {
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let (avro_topic, json_topic, proto_topic) = (
        common::unique("registry-in-avro"),
        common::unique("registry-in-json"),
        common::unique("registry-in-proto"),
    );
    let (kafka, _registry) = bus(
        SubjectNameStrategy::Topic,
        &[
            (AccountOpened::EVENT_TYPE, &avro_topic),
            (UserRegistered::EVENT_TYPE, &json_topic),
            (OrderShipped::EVENT_TYPE, &proto_topic),
        ],
    )
    .await;
    let descriptors = shipping_descriptors()?;
    let descriptor_file = std::env::temp_dir().join(format!("{proto_topic}.desc"));
    std::fs::write(&descriptor_file, &descriptors)?;
    let bento = Arc::new(kafka.clone());
    let ns = namespace();

    let avro = Bus::new(
        bento.clone(),
        avro_codecs::<AccountOpened>(&avsc(V1_AVSC, &ns)),
    );
    let json_bus = Bus::new(bento.clone(), Codecs::new(Format::Json));
    let proto = Bus::new(bento.clone(), protobuf_codecs(&descriptors));
    avro.declare::<AccountOpened>().await?;
    json_bus.declare::<UserRegistered>().await?;
    // Protobuf: the Python serializer registers its own message type's schema (see the
    // script), so Bento declares nothing on that topic here.

    let (account_tx, mut accounts) = mpsc::unbounded_channel();
    let (user_tx, mut users) = mpsc::unbounded_channel();
    let (order_tx, mut orders) = mpsc::unbounded_channel();
    let subscriptions = vec![
        avro.subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, common::unique("in")),
            forward::<AccountOpened>(account_tx),
        )
        .await?,
        json_bus
            .subscribe_with(
                SubscriptionSpec::event_type(UserRegistered::EVENT_TYPE, common::unique("in")),
                forward::<UserRegistered>(user_tx),
            )
            .await?,
        proto
            .subscribe_with(
                SubscriptionSpec::event_type(OrderShipped::EVENT_TYPE, common::unique("in")),
                forward::<OrderShipped>(order_tx),
            )
            .await?,
    ];

    let (bootstrap, url) = (common::bootstrap(), registry_url());
    let descriptors_path = descriptor_file.display().to_string();
    let write = |topic: &str, format: &str, value: Value| -> Result<Value, Box<dyn Error>> {
        python(&[
            "produce",
            &bootstrap,
            &url,
            topic,
            format,
            &value.to_string(),
            &descriptors_path,
        ])
    };
    let written = write(
        &avro_topic,
        "avro",
        json!({"account_id": "py-1", "owner": "Grace", "credit": 3}),
    )?;
    assert_eq!(written["magic"], 0);
    let (account, _) = next(&mut accounts, "Avro record from Python").await;
    assert_eq!(
        account,
        AccountOpened {
            account_id: "py-1".into(),
            owner: "Grace".into(),
            credit: 3,
        }
    );
    write(
        &json_topic,
        "json",
        json!({"user_id": "py-1", "email": "grace@example.com", "age": null}),
    )?;
    let (user, _) = next(&mut users, "JSON record from Python").await;
    assert_eq!(
        user,
        UserRegistered {
            user_id: "py-1".into(),
            email: "grace@example.com".into(),
            age: None,
        }
    );
    write(
        &proto_topic,
        "protobuf",
        json!({"order_id": "py-1", "carrier": "rail", "parcel_ids": ["p-9"], "shipped_at_ms": "5"}),
    )?;
    let (order, _) = next(&mut orders, "Protobuf record from Python").await;
    assert_eq!(
        order,
        OrderShipped {
            order_id: "py-1".into(),
            carrier: "rail".into(),
            parcel_ids: vec!["p-9".into()],
            shipped_at_ms: 5,
        }
    );
    for subscription in subscriptions {
        subscription.shutdown().await?;
    }
    let _ = std::fs::remove_file(&descriptor_file);
    kafka.close().await?;
    Ok(())
}

/// Without a registry configured, records carry the codec's bytes alone, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_registry_records_are_not_framed() -> TestResult {
    common::share_broker();
    let _registry = ONE_AT_A_TIME.lock().await;
    let kafka = common::connect(common::config()).await;
    assert!(kafka.schema_registry().is_none());
    assert!(kafka.as_schema_registry().is_none());
    kafka.close().await?;
    Ok(())
}
