//! Schemas in Pulsar's schema registry through `MessageBus::declare_schema` / `Bus::declare`
//! and the first publish of each event type, against the real broker (`cargo xtask dev-env up
//! pulsar`): registration, compatibility, and "one topic, one encoding" (a topic's schema type
//! is checked against the codec of what is published to it or read from it). Every test works
//! in a namespace of its own (`public/<unique>`), so that it can set the compatibility strategy
//! and schema validation freely.

mod common;

use std::error::Error;
use std::sync::Arc;

use apache_avro::AvroSchema;
use std::time::Duration;

use bento_application::{
    Bus, Context, DeadLetterPolicy, HandlerError, MessageBus, PublishOptions, RetryPolicy,
    SubscriptionSpec,
};
use bento_codec::{AvroCodec, Codecs, Format, ProtobufCodec};
use bento_domain::{DomainEvent, Envelope};
use bento_pulsar::PulsarBus;
use bento_pulsar::admin::{PulsarAdmin, SchemaCompatibility};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn Error>>;

/// Version 1 of the event.
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

/// Version 2: a new field with a default (compatible both ways).
const V2_AVSC: &str = r#"{"type":"record","name":"AccountOpened","fields":[
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

/// An incompatible change: `credit` becomes a string.
const BROKEN_AVSC: &str = r#"{"type":"record","name":"AccountOpened","fields":[
    {"name":"account_id","type":"string"},
    {"name":"owner","type":"string"},
    {"name":"credit","type":"string"}]}"#;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AccountOpenedBroken {
    account_id: String,
    owner: String,
    credit: String,
}

impl DomainEvent for AccountOpenedBroken {
    const EVENT_TYPE: &'static str = "accounts.account-opened";
    const VERSION: u32 = 3;
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account_id.clone()
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

fn admin() -> PulsarAdmin {
    let url = common::admin_url();
    PulsarAdmin::from_url(&url)
        .unwrap_or_else(|e| panic!("BENTO_TEST_PULSAR_ADMIN_URL `{url}` is unusable: {e}"))
}

/// A fresh namespace `public/<unique>` with `strategy`, and a bus whose plain topics live there.
async fn scratch(what: &str, strategy: SchemaCompatibility) -> (String, PulsarBus) {
    scratch_with(what, Some(strategy), false).await
}

/// A fresh namespace `public/<unique>` with `strategy` (or the broker's default), enforcing
/// schema validation or not, and a bus whose plain topics live there.
async fn scratch_with(
    what: &str,
    strategy: Option<SchemaCompatibility>,
    enforced: bool,
) -> (String, PulsarBus) {
    let admin = admin();
    let namespace = format!("public/{}", common::unique(what));
    admin.create_namespace(&namespace).await.unwrap_or_else(|e| {
        panic!(
            "creating namespace {namespace} on {} failed ({e}); these tests need a real broker: \
             `cargo xtask dev-env up pulsar`",
            admin.url()
        )
    });
    if let Some(strategy) = strategy {
        admin
            .set_schema_compatibility(&namespace, &strategy)
            .await
            .unwrap_or_else(|e| panic!("setting the compatibility strategy of {namespace}: {e}"));
    }
    admin
        .set_schema_validation_enforced(&namespace, enforced)
        .await
        .unwrap_or_else(|e| panic!("setting schemaValidationEnforced on {namespace}: {e}"));
    assert_eq!(
        admin.schema_validation_enforced(&namespace).await.ok(),
        Some(enforced)
    );
    let mut config = common::config();
    config.namespace = namespace
        .split_once('/')
        .map(|(_, ns)| ns.to_owned())
        .unwrap_or_default();
    (namespace, common::bus_with(config).await)
}

fn avro_v1() -> Codecs {
    let codecs = Codecs::new(Format::Avro);
    codecs.register::<AccountOpened>(AvroCodec::derived().expect("derived Avro schema"));
    codecs
}

fn avro_v2() -> Codecs {
    let codecs = Codecs::new(Format::Avro);
    codecs.register::<AccountOpenedV2>(AvroCodec::from_avsc(V2_AVSC).expect("v2 schema"));
    codecs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_schema_is_registered_and_messages_round_trip() -> TestResult {
    let (_namespace, pulsar) = scratch("schema-avro", SchemaCompatibility::Backward).await;
    let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let bus = Bus::new(Arc::new(pulsar.clone()), avro_v1());
    bus.declare::<AccountOpened>().await?;

    let stored = admin().schema(&topic).await?;
    assert_eq!(stored.kind, "AVRO");
    assert_eq!(stored.version, 0);
    let data: serde_json::Value = serde_json::from_str(&stored.data)?;
    let fields: Vec<&str> = data["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["account_id", "owner", "credit"]);

    // Declaring the same schema again is no new version.
    bus.declare::<AccountOpened>().await?;
    assert_eq!(admin().schema_versions(&topic).await?.len(), 1);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "reader"),
            common::forward::<AccountOpened>(tx),
        )
        .await?;
    let event = AccountOpened {
        account_id: "a-1".into(),
        owner: "Ada".into(),
        credit: 42,
    };
    bus.publish(&event).await?;
    let (got, ctx) = common::next(&mut rx, "Avro event").await;
    assert_eq!(got, event);
    assert_eq!(ctx.envelope().content_type, "application/avro");

    // Another bus (another process of the service) publishes to the topic too: it declares the
    // schema before its first publish of the type, which the broker finds registered already.
    let other = common::bus_with(pulsar.config().clone()).await;
    let plain = Bus::new(Arc::new(other.clone()), avro_v1());
    let second = AccountOpened {
        account_id: "a-2".into(),
        owner: "Bob".into(),
        credit: 7,
    };
    plain.publish(&second).await?;
    assert_eq!(common::next(&mut rx, "second Avro event").await.0, second);

    subscription.shutdown().await?;
    other.close().await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_schema_is_refused_at_declare_time() -> TestResult {
    for strategy in [SchemaCompatibility::Backward, SchemaCompatibility::Full] {
        let (namespace, pulsar) = scratch("schema-refused", strategy.clone()).await;
        let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
        let v1 = Bus::new(Arc::new(pulsar.clone()), avro_v1());
        v1.declare::<AccountOpened>().await?;

        let broken_codecs = Codecs::new(Format::Avro);
        broken_codecs.register::<AccountOpenedBroken>(AvroCodec::from_avsc(BROKEN_AVSC)?);
        let broken = Bus::new(Arc::new(pulsar.clone()), broken_codecs);
        let error = broken
            .declare::<AccountOpenedBroken>()
            .await
            .expect_err("a field changing from int to string must be refused")
            .to_string();
        assert!(error.contains(&topic), "names the topic: {error}");
        assert!(
            error.contains(&format!("{strategy} (namespace {namespace})")),
            "names the strategy {strategy}: {error}"
        );
        assert!(
            error.contains("IncompatibleSchema") || error.contains("ncompatible"),
            "gives the broker's reason: {error}"
        );
        // Nothing was registered, and the topic still publishes with version 1.
        assert_eq!(admin().schema_versions(&topic).await?.len(), 1);
        v1.publish(&AccountOpened {
            account_id: "a".into(),
            owner: "o".into(),
            credit: 1,
        })
        .await?;
        pulsar.close().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatible_evolution_is_accepted_and_v1_reads_v2() -> TestResult {
    let (_namespace, pulsar) = scratch("schema-evolve", SchemaCompatibility::Full).await;
    let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let v1 = Bus::new(Arc::new(pulsar.clone()), avro_v1());
    v1.declare::<AccountOpened>().await?;

    // The v1 reader, subscribed with its v1 schema (checked by the broker). Its codec also
    // knows v2's writer schema (Bento's own versioning), so it can read v2 payloads.
    let v1_reading_v2 = Codecs::new(Format::Avro);
    v1_reading_v2.register::<AccountOpened>(AvroCodec::derived()?.with_version(2, V2_AVSC)?);
    let v1_bus = Bus::new(Arc::new(pulsar.clone()), v1_reading_v2);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = v1_bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "v1-reader"),
            common::forward::<AccountOpened>(tx),
        )
        .await?;

    // A v2 publisher, on its own bus, as after a deploy of the producing service.
    let pulsar2 = common::bus_with(pulsar.config().clone()).await;
    let v2 = Bus::new(Arc::new(pulsar2.clone()), avro_v2());
    v2.declare::<AccountOpenedV2>().await?;
    let versions = admin().schema_versions(&topic).await?;
    assert_eq!(
        versions.len(),
        2,
        "v2 is a new schema version: {versions:?}"
    );
    assert!(versions[1].data.contains("currency"));

    v2.publish(&AccountOpenedV2 {
        account_id: "a-9".into(),
        owner: "Grace".into(),
        credit: 3,
        currency: "CHF".into(),
    })
    .await?;
    let (got, ctx) = common::next(&mut rx, "v2 event read as v1").await;
    assert_eq!(ctx.envelope().version, 2);
    assert_eq!(
        got,
        AccountOpened {
            account_id: "a-9".into(),
            owner: "Grace".into(),
            credit: 3,
        }
    );
    reader.shutdown().await?;
    pulsar2.close().await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_native_schema_is_stored_and_messages_round_trip() -> TestResult {
    let (_namespace, pulsar) = scratch("schema-proto", SchemaCompatibility::Full).await;
    let topic = pulsar.topic_for(OrderShipped::EVENT_TYPE);
    let proto_dir = common::workspace_root().join("examples/proto");
    let descriptors = protox::compile(["shipping.proto"], [&proto_dir])?;
    let descriptors = prost::Message::encode_to_vec(&descriptors);
    let codecs = Codecs::new(Format::Protobuf);
    codecs.register::<OrderShipped>(ProtobufCodec::new().with_descriptor(
        &descriptors,
        "bento.examples.shipping.OrderShipped",
        "shipping.proto",
    ));
    let bus = Bus::new(Arc::new(pulsar.clone()), codecs);
    bus.declare::<OrderShipped>().await?;

    let stored = admin().schema(&topic).await?;
    assert_eq!(stored.kind, "PROTOBUF_NATIVE");
    let data: serde_json::Value = serde_json::from_str(&stored.data)?;
    assert_eq!(
        data["rootMessageTypeName"],
        "bento.examples.shipping.OrderShipped"
    );
    assert_eq!(data["rootFileDescriptorName"], "shipping.proto");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(OrderShipped::EVENT_TYPE, "shipping"),
            common::forward::<OrderShipped>(tx),
        )
        .await?;
    let event = OrderShipped {
        order_id: "o-1".into(),
        carrier: "postal".into(),
        parcel_ids: vec!["p-1".into(), "p-2".into()],
        shipped_at_ms: 1_700_000_000_000,
    };
    bus.publish(&event).await?;
    let (got, ctx) = common::next(&mut rx, "Protobuf event").await;
    assert_eq!(got, event);
    assert_eq!(ctx.envelope().content_type, "application/x-protobuf");
    subscription.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}

fn account(id: &str) -> AccountOpened {
    AccountOpened {
        account_id: id.into(),
        owner: "Ada".into(),
        credit: 42,
    }
}

/// Asserts that `error` names the topic, the event type, the registered schema type and the
/// codec.
fn names_everything(error: &str, topic: &str, registered: &str, codec: &str) {
    assert!(error.contains(topic), "names the topic `{topic}`: {error}");
    assert!(
        error.contains(AccountOpened::EVENT_TYPE),
        "names the event type: {error}"
    );
    assert!(
        error.contains(registered),
        "names the registered type {registered}: {error}"
    );
    assert!(error.contains(codec), "names the codec `{codec}`: {error}");
}

/// Every schema version `topic` has: their types.
async fn schema_types(topic: &str) -> Vec<String> {
    admin()
        .schema_versions(topic)
        .await
        .unwrap_or_else(|e| panic!("reading the schemas of {topic}: {e}"))
        .into_iter()
        .map(|v| v.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_on_an_avro_topic_is_refused_naming_topic_event_type_registered_type_and_codec()
-> TestResult {
    // Bento refuses it itself, before the broker would (which does not without enforcement).
    for enforced in [false, true] {
        let (_namespace, pulsar) = scratch_with("one-encoding", None, enforced).await;
        let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
        // The first service publishes Avro: its first publish registers the AVRO schema.
        let avro = Bus::new(Arc::new(pulsar.clone()), avro_v1());
        avro.publish(&account("a-1")).await?;
        assert_eq!(schema_types(&topic).await, ["AVRO"]);

        // A second service, with the default codec (JSON), each check on a bus of its own as
        // in another process.
        let json_bus = common::bus_with(pulsar.config().clone()).await;
        let json = Bus::new(Arc::new(json_bus.clone()), Codecs::default());
        let error = json
            .publish(&account("a-2"))
            .await
            .expect_err("JSON on an AVRO topic")
            .to_string();
        names_everything(&error, &topic, "AVRO", "json codec");

        // ... and subscribing: the consumer's codec is checked the same way.
        let error = json
            .subscribe_with(
                SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "json-reader"),
                common::forward::<AccountOpened>(mpsc::unbounded_channel().0),
            )
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        names_everything(&error, &topic, "AVRO", "json codec");

        // Without a schema of its own (`schema = "none"`), JSON is still not what the topic
        // holds.
        let none_bus = common::bus_with(pulsar.config().clone()).await;
        let none = Bus::new(
            Arc::new(none_bus.clone()),
            Codecs::default().without_schema(AccountOpened::EVENT_TYPE),
        );
        let error = none
            .publish(&account("a-3"))
            .await
            .expect_err("schema-less JSON on an AVRO topic")
            .to_string();
        names_everything(&error, &topic, "AVRO", "json codec");

        // Nor is a raw envelope of another encoding.
        let raw_bus = common::bus_with(pulsar.config().clone()).await;
        let envelope = Envelope::new(
            AccountOpened::EVENT_TYPE,
            1,
            "application/json",
            &br#"{"account_id":"a-4","owner":"x","credit":1}"#[..],
        );
        let error = raw_bus
            .publish(envelope, PublishOptions::default())
            .await
            .expect_err("a raw JSON envelope on an AVRO topic")
            .to_string();
        names_everything(&error, &topic, "AVRO", "json codec");

        // The topic holds one encoding: AVRO only, and only the Avro message.
        assert_eq!(schema_types(&topic).await, ["AVRO"]);
        let stats = admin().topic_stats(&topic).await?;
        assert_eq!(stats.msg_in_counter, 1, "only the Avro message was stored");
        for bus in [json_bus, none_bus, raw_bus, pulsar] {
            bus.close().await?;
        }
    }
    Ok(())
}

/// Another record on the topic: the same schema type, another event type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CardIssued {
    card_id: String,
}

impl DomainEvent for CardIssued {
    const EVENT_TYPE: &'static str = "accounts.card-issued";
    const AGGREGATE_TYPE: &'static str = "card";
    fn aggregate_id(&self) -> String {
        self.card_id.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_record_type_on_a_topic_is_refused_naming_both() -> TestResult {
    let (_namespace, pulsar) = scratch_with("one-record", None, true).await;
    let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let accounts = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    accounts.publish(&account("a-1")).await?;
    // A service that maps its own event type onto that topic.
    let mut config = pulsar.config().clone();
    config
        .topics
        .event_types
        .insert(CardIssued::EVENT_TYPE.into(), topic.clone());
    let cards_bus = common::bus_with(config).await;
    let cards = Bus::new(Arc::new(cards_bus.clone()), Codecs::default());
    let error = cards
        .publish(&CardIssued {
            card_id: "c-1".into(),
        })
        .await
        .expect_err("another record on the topic")
        .to_string();
    assert!(error.contains(&topic), "{error}");
    assert!(error.contains("`AccountOpened`"), "{error}");
    assert!(error.contains("`CardIssued`"), "{error}");
    assert!(error.contains(CardIssued::EVENT_TYPE), "{error}");
    cards_bus.close().await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_event_registers_its_schema_on_first_publish() -> TestResult {
    let (_namespace, pulsar) = scratch_with("json-schema", None, true).await;
    let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "reader"),
            common::forward::<AccountOpened>(tx),
        )
        .await?;
    bus.publish(&account("a-1")).await?;
    let (got, ctx) = common::next(&mut rx, "JSON event").await;
    assert_eq!(got, account("a-1"));
    assert_eq!(ctx.envelope().content_type, "application/json");

    let stored = admin().schema(&topic).await?;
    assert_eq!(stored.kind, "JSON");
    // The record apache-avro derives for the type: JSON and Avro readers see one record.
    let parsed = apache_avro::Schema::parse_str(&stored.data)?;
    assert_eq!(
        parsed.canonical_form(),
        AccountOpened::get_schema().canonical_form()
    );

    // The broker enforces schemas here; a bus that declares nothing still publishes JSON to
    // the topic, with the topic's registered schema.
    let other = common::bus_with(pulsar.config().clone()).await;
    let raw = Envelope::new(
        AccountOpened::EVENT_TYPE,
        1,
        "application/json",
        &br#"{"account_id":"a-2","owner":"Py","credit":7}"#[..],
    );
    other.publish(raw, PublishOptions::default()).await?;
    assert_eq!(
        common::next(&mut rx, "raw JSON envelope")
            .await
            .0
            .account_id,
        "a-2"
    );
    // ... but not text.
    let text = Envelope::new(AccountOpened::EVENT_TYPE, 1, "text/plain", &b"a-3"[..]);
    let error = other
        .publish(text, PublishOptions::default())
        .await
        .expect_err("text on a JSON topic")
        .to_string();
    assert!(
        error.contains("text/plain") && error.contains("JSON") && error.contains(&topic),
        "{error}"
    );
    assert_eq!(schema_types(&topic).await, ["JSON"]);

    // Published to another topic, the event type takes its schema there too.
    let elsewhere = pulsar.topic_name("json-elsewhere");
    bus.publish_with(
        &account("a-9"),
        PublishOptions::default().to_topic(&elsewhere),
    )
    .await?;
    assert_eq!(admin().schema(&elsewhere).await?.data, stored.data);
    subscription.shutdown().await?;
    other.close().await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_none_publishes_without_registering_a_schema() -> TestResult {
    let (_namespace, pulsar) = scratch_with("schema-none", None, true).await;
    let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let codecs = Codecs::default().without_schema(AccountOpened::EVENT_TYPE);
    let bus = Bus::new(Arc::new(pulsar.clone()), codecs);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "reader"),
            common::forward::<AccountOpened>(tx),
        )
        .await?;
    bus.publish(&account("a-1")).await?;
    assert_eq!(
        common::next(&mut rx, "schema-less JSON").await.0,
        account("a-1")
    );
    let error = admin().schema(&topic).await.err();
    assert!(
        error.as_ref().is_some_and(|e| e.is_not_found()),
        "no schema registered: {error:?}"
    );
    subscription.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_dead_letter_topics_carry_the_topic_schema() -> TestResult {
    let (_namespace, pulsar) = scratch_with("copies", None, true).await;
    let topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    let dead_letters = pulsar.topic_name("copies-dlq");
    let failing = |_event: AccountOpened, _ctx: Context| async {
        Err::<(), _>(HandlerError::retryable("always"))
    };
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "failing")
                .retry(RetryPolicy::exponential(2, Duration::from_millis(50)))
                .dead_letter(DeadLetterPolicy::to_topic(&dead_letters)),
            failing,
        )
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let forward = move |ctx: Context| {
        let _ = tx.send(ctx.envelope().clone());
        std::future::ready(Ok::<(), HandlerError>(()))
    };
    let inspector = bus
        .subscribe_envelopes(SubscriptionSpec::topic(&dead_letters, "inspector"), forward)
        .await?;
    bus.publish(&account("a-1")).await?;
    let dead = common::next(&mut rx, "dead letter").await;
    assert_eq!(dead.content_type, "application/json");

    let registered = admin().schema(&topic).await?;
    for copies in [pulsar.retry_topic(&topic, "failing"), dead_letters] {
        let schema = admin().schema(&copies).await?;
        assert_eq!(
            (schema.kind.as_str(), schema.data.as_str()),
            (registered.kind.as_str(), registered.data.as_str()),
            "{copies} carries the schema of {topic}"
        );
    }
    inspector.shutdown().await?;
    subscription.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Loose {
    id: String,
    details: serde_json::Value,
}

impl DomainEvent for Loose {
    const EVENT_TYPE: &'static str = "misc.loose";
    const AGGREGATE_TYPE: &'static str = "misc";
    fn aggregate_id(&self) -> String {
        self.id.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_schema_describes_fails_to_publish_saying_how_to_opt_out() -> TestResult {
    let (_namespace, pulsar) = scratch_with("loose", None, true).await;
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    let event = Loose {
        id: "l-1".into(),
        details: serde_json::json!({"any": "thing"}),
    };
    let error = bus
        .publish(&event)
        .await
        .expect_err("serde_json::Value has no schema")
        .to_string();
    assert!(
        error.contains("misc.loose") && error.contains("`details`"),
        "{error}"
    );
    assert!(error.contains(r#"schema = "none""#), "{error}");
    let opted_out = Bus::new(
        Arc::new(pulsar.clone()),
        Codecs::default().without_schema(Loose::EVENT_TYPE),
    );
    opted_out.publish(&event).await?;
    pulsar.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_with_a_schema_of_its_own_still_takes_dead_letters() -> TestResult {
    let (_namespace, pulsar) = scratch_with("stale-dlq", None, true).await;
    // A dead-letter topic that holds Avro records already (from an earlier codec, say).
    let dead_letters = pulsar.topic_name("stale-dlq");
    admin()
        .upload_schema(
            &dead_letters,
            &bento_pulsar::admin::SchemaUpload {
                kind: "AVRO".into(),
                schema: AccountOpened::get_schema().canonical_form(),
                properties: Default::default(),
            },
        )
        .await?;
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    let hopeless = |_event: AccountOpened, _ctx: Context| async {
        Err::<(), _>(HandlerError::permanent("never"))
    };
    // Subscribing prepares the dead-letter topic: the topic's JSON schema is refused there,
    // so its copies go with its own schema rather than not at all.
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "hopeless")
                .dead_letter(DeadLetterPolicy::to_topic(&dead_letters)),
            hopeless,
        )
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let forward = move |ctx: Context| {
        let _ = tx.send(ctx.envelope().clone());
        std::future::ready(Ok::<(), HandlerError>(()))
    };
    let inspector = bus
        .subscribe_envelopes(SubscriptionSpec::topic(&dead_letters, "inspector"), forward)
        .await?;
    bus.publish(&account("a-1")).await?;
    let dead = common::next(&mut rx, "dead letter").await;
    assert_eq!(
        serde_json::from_slice::<AccountOpened>(&dead.payload)?,
        account("a-1")
    );
    assert_eq!(schema_types(&dead_letters).await, ["AVRO"]);
    inspector.shutdown().await?;
    subscription.shutdown().await?;
    pulsar.close().await?;
    Ok(())
}
