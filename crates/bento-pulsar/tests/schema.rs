//! Schemas in Pulsar's schema registry through `MessageBus::declare_schema` / `Bus::declare`,
//! against the real broker (`cargo xtask dev-env up pulsar`). Every test works in a namespace of
//! its own (`public/<unique>`), so that it can set the compatibility strategy freely.

mod common;

use std::error::Error;
use std::sync::Arc;

use apache_avro::AvroSchema;
use bento_application::{Bus, MessageBus, SubscriptionSpec};
use bento_codec::{AvroCodec, Codecs, Format, ProtobufCodec};
use bento_domain::DomainEvent;
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
    let admin = admin();
    let namespace = format!("public/{}", common::unique(what));
    admin.create_namespace(&namespace).await.unwrap_or_else(|e| {
        panic!(
            "creating namespace {namespace} on {} failed ({e}); these tests need a real broker: \
             `cargo xtask dev-env up pulsar`",
            admin.url()
        )
    });
    admin
        .set_schema_compatibility(&namespace, &strategy)
        .await
        .unwrap_or_else(|e| panic!("setting the compatibility strategy of {namespace}: {e}"));
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

    // A bus that declared nothing publishes to the topic too (Bento's schema-less producers are
    // accepted: the broker does not enforce schema validation by default).
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
