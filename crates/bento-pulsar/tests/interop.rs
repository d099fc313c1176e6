//! Bento and the official Pulsar Python client (`pulsar-client`) on one real broker: what one
//! publishes, the other reads, with Bento's documented properties and with registered Avro and
//! JSON schemas. The Python side is `interop/python/bento_interop.py`; the client is installed
//! from PyPI (pinned) if `import pulsar` fails. Pulsar's Java client (`pulsar-client consume
//! --schema-type auto_consume` of the dev-env's distribution) reads Bento's schema'd events
//! as records too.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use apache_avro::AvroSchema;
use bento_application::{
    Bus, BusError, Context, HandlerError, MessageBus, PublishOptions, Subscription,
    SubscriptionSpec, wire,
};
use bento_codec::{AvroCodec, Codecs, Format};
use bento_domain::{DomainEvent, Envelope, MessageId};
use bento_pulsar::PulsarBus;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn Error>>;

/// The Python client version the tests install (has wheels for CPython 3.11 on x86_64).
const PULSAR_CLIENT: &str = "pulsar-client[avro]==3.8.0";

/// Same record as `AccountOpened` in the Python script.
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

fn script() -> String {
    common::workspace_root()
        .join("interop/python/bento_interop.py")
        .display()
        .to_string()
}

/// Makes sure `import pulsar` (with Avro support) works, installing the pinned client if not.
fn python_client() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import pulsar, pulsar.schema, fastavro"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if importable() {
            return;
        }
        let install = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", PULSAR_CLIENT])
            .output()
            .unwrap_or_else(|e| panic!("running python3 -m pip: {e}"));
        assert!(
            install.status.success() && importable(),
            "could not install {PULSAR_CLIENT}: {}",
            String::from_utf8_lossy(&install.stderr)
        );
    });
}

/// Runs the Python script with `args` and returns the JSON it prints.
async fn python(args: Vec<String>) -> Value {
    python_client();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new("python3");
        command
            .arg(script())
            .args(["--url", &common::pulsar_url()])
            .args(&args);
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("running python3 {args:?}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "python3 {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("python3 {args:?} printed no JSON ({e}): {stdout}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the python3 task failed: {e}"))
}

/// The first `count` messages of `topic` as Pulsar's Java client reads them with its
/// AUTO_CONSUME schema.
async fn java_auto_consume(topic: &str, count: usize) -> Vec<bento_testkit::pulsar_cli::Consumed> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        bento_testkit::pulsar_cli::auto_consume(
            &common::pulsar_url(),
            &topic,
            &common::unique("java"),
            count,
            std::time::Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the Java client task failed: {e}"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The Python client publishes `{"from":"python"}` to `topic` with `properties` and `key`.
async fn python_produces_json(
    topic: &str,
    properties: &HashMap<&str, String>,
    key: &str,
) -> TestResult {
    let properties = serde_json::to_string(properties)?;
    python(args(&[
        "produce",
        "--topic",
        topic,
        "--properties",
        &properties,
        "--key",
        key,
        "--payload",
        r#"{"from":"python"}"#,
    ]))
    .await;
    Ok(())
}

/// A bus whose `accounts.account-opened` topic is `topic` (unique per test).
async fn bus_for(topic: &str) -> PulsarBus {
    let mut config = common::config();
    config
        .topics
        .event_types
        .insert(AccountOpened::EVENT_TYPE.into(), topic.into());
    common::bus_with(config).await
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_what_bento_published() -> TestResult {
    let bus = common::bus().await;
    let topic = bus.topic_name(&common::unique("interop-to-python"));
    let envelope = Envelope::new("orders.placed", 3, "application/json", &br#"{"n":1}"#[..])
        .with_aggregate("order", "o-7")
        .with_ordering_key("o-7")
        .with_correlation_id("corr-42")
        .with_header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
    let id = envelope.id;
    bus.publish(envelope, PublishOptions::default().to_topic(&topic))
        .await?;

    let seen = python(args(&[
        "consume",
        "--topic",
        &topic,
        "--subscription",
        "python",
        "--count",
        "1",
    ]))
    .await;
    let message = &seen[0];
    let properties = &message["properties"];
    assert_eq!(text(&properties[wire::MESSAGE_ID]), id.to_string());
    assert_eq!(text(&properties[wire::EVENT_TYPE]), "orders.placed");
    assert_eq!(text(&properties[wire::EVENT_VERSION]), "3");
    assert_eq!(text(&properties[wire::CORRELATION_ID]), "corr-42");
    assert_eq!(text(&properties[wire::CONTENT_TYPE]), "application/json");
    assert_eq!(text(&properties[wire::AGGREGATE_ID]), "o-7");
    assert_eq!(
        text(&properties["traceparent"]),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(text(&message["key"]), "o-7", "the ordering key is the key");
    assert_eq!(text(&message["payload"]), r#"{"n":1}"#);
    assert!(message["event_timestamp"].as_u64().unwrap_or_default() > 0);
    bus.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bento_reads_what_python_published_and_keeps_traceparent() -> TestResult {
    let bus = common::bus().await;
    let topic = bus.topic_name(&common::unique("interop-from-python"));
    let (subscription, mut rx) =
        forward_envelopes(&bus, SubscriptionSpec::topic(&topic, "bento")).await?;
    let id = MessageId::new();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let properties: HashMap<&str, String> = HashMap::from([
        (wire::MESSAGE_ID, id.to_string()),
        (wire::EVENT_TYPE, "orders.placed".into()),
        (wire::EVENT_VERSION, "2".into()),
        (wire::OCCURRED_AT, "2026-01-02T03:04:05.000006Z".into()),
        (wire::AGGREGATE_TYPE, "order".into()),
        (wire::AGGREGATE_ID, "o-9".into()),
        (wire::ORDERING_KEY, "o-9".into()),
        (wire::CORRELATION_ID, "corr-py".into()),
        (wire::CONTENT_TYPE, "application/json".into()),
        ("traceparent", traceparent.into()),
    ]);
    python_produces_json(&topic, &properties, "o-9").await?;

    let envelope = common::next(&mut rx, "message from Python").await;
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.event_type, "orders.placed");
    assert_eq!(envelope.version, 2);
    assert_eq!(envelope.aggregate_type, "order");
    assert_eq!(envelope.aggregate_id, "o-9");
    assert_eq!(envelope.ordering_key.as_deref(), Some("o-9"));
    assert_eq!(envelope.correlation_id.as_deref(), Some("corr-py"));
    assert_eq!(envelope.content_type, "application/json");
    assert_eq!(
        envelope
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "2026-01-02T03:04:05.000006Z"
    );
    assert_eq!(&envelope.payload[..], br#"{"from":"python"}"#);
    assert_eq!(
        envelope.headers.get("traceparent").map(String::as_str),
        Some(traceparent),
        "the trace context travels on: {:?}",
        envelope.headers
    );
    subscription.shutdown().await?;
    bus.close().await?;
    Ok(())
}

/// Subscribes `spec` on `bus` with a handler that sends every envelope it gets to the returned
/// channel.
async fn forward_envelopes(
    bus: &dyn MessageBus,
    spec: SubscriptionSpec,
) -> Result<(Subscription, mpsc::UnboundedReceiver<Envelope>), BusError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |ctx: Context| {
        let _ = tx.send(ctx.envelope().clone());
        std::future::ready(Ok::<(), HandlerError>(()))
    };
    let subscription = bus.subscribe(spec, Arc::new(handler)).await?;
    Ok((subscription, rx))
}

/// Bento publishes with the declared schema, Python reads with `AvroSchema`/`JsonSchema` of the
/// same record; Python publishes with its schema and Bento's properties, Bento reads.
async fn schema_round_trips(format: Format, python_schema: &str, content_type: &str) {
    let topic = common::unique(&format!("interop-{python_schema}"));
    let pulsar = bus_for(&topic).await;
    let full_topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let codecs = Codecs::new(format);
    codecs.register::<AccountOpened>(AvroCodec::derived().expect("derived Avro schema"));
    let bus = Bus::new(Arc::new(pulsar.clone()), codecs);
    bus.declare::<AccountOpened>()
        .await
        .unwrap_or_else(|e| panic!("declaring the {format} schema: {e}"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe_with(
            SubscriptionSpec::event_type(AccountOpened::EVENT_TYPE, "bento"),
            common::forward::<AccountOpened>(tx),
        )
        .await
        .unwrap_or_else(|e| panic!("subscribing with the {format} schema: {e}"));

    let from_bento = AccountOpened {
        account_id: "a-1".into(),
        owner: "Ada".into(),
        credit: 42,
    };
    bus.publish(&from_bento)
        .await
        .unwrap_or_else(|e| panic!("publishing {format}: {e}"));
    assert_eq!(
        common::next(&mut rx, "Bento's own event").await.0,
        from_bento
    );

    let seen = python(args(&[
        "consume",
        "--topic",
        &full_topic,
        "--subscription",
        "python",
        "--schema",
        python_schema,
    ]))
    .await;
    assert_eq!(
        seen[0]["value"],
        json!({"account_id": "a-1", "owner": "Ada", "credit": 42}),
        "Python's {python_schema} schema reads Bento's {format} event"
    );
    assert_eq!(
        text(&seen[0]["properties"][wire::CONTENT_TYPE]),
        content_type
    );
    let java = java_auto_consume(&full_topic, 1).await;
    assert!(
        java[0].is_record() && java[0].fields()["account_id"] == "a-1",
        "Java's AUTO_CONSUME reads Bento's {format} event as a record: {java:?}"
    );

    let id = MessageId::new();
    let properties = BTreeMap::from([
        (wire::MESSAGE_ID, id.to_string()),
        (wire::EVENT_TYPE, AccountOpened::EVENT_TYPE.to_owned()),
        (wire::EVENT_VERSION, "1".to_owned()),
        (wire::CONTENT_TYPE, content_type.to_owned()),
    ]);
    python(args(&[
        "produce",
        "--topic",
        &full_topic,
        "--schema",
        python_schema,
        "--properties",
        &serde_json::to_string(&properties).unwrap_or_default(),
        "--value",
        r#"{"account_id": "a-2", "owner": "Py", "credit": 7}"#,
    ]))
    .await;
    let (got, ctx) = common::next(&mut rx, "event from Python").await;
    assert_eq!(ctx.message_id(), id);
    assert_eq!(
        got,
        AccountOpened {
            account_id: "a-2".into(),
            owner: "Py".into(),
            credit: 7,
        }
    );
    subscription
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    pulsar
        .close()
        .await
        .unwrap_or_else(|e| panic!("close: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_schema_interop_with_python() {
    schema_round_trips(Format::Avro, "avro", "application/avro").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_interop_with_python() {
    schema_round_trips(Format::Json, "json", "application/json").await;
}

/// A trace started by a Python producer continues in Bento: the consumer span of the
/// observability layer is in the trace named by the message's `traceparent`, as a child of the
/// span it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_started_in_python_continues_in_bento() -> TestResult {
    use bento_observability::testing::SpanCapture;
    use bento_observability::{ConsumerParent, ObservedBus, TraceOptions};

    let capture = SpanCapture::global()?;
    let pulsar = common::bus().await;
    let topic = pulsar.topic_name(&common::unique("interop-trace"));
    let bus: Arc<dyn MessageBus> = Arc::new(
        ObservedBus::builder(Arc::new(pulsar))
            .tracing(TraceOptions::default().consumer_parent(ConsumerParent::Child))
            .lag_interval(None)
            .build(),
    );
    let (subscription, mut rx) = forward_envelopes(
        bus.as_ref(),
        SubscriptionSpec::topic(&topic, "bento-traced"),
    )
    .await?;
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let properties: HashMap<&str, String> = HashMap::from([
        (wire::MESSAGE_ID, MessageId::new().to_string()),
        (wire::EVENT_TYPE, "orders.placed".into()),
        (wire::CONTENT_TYPE, "application/json".into()),
        ("traceparent", format!("00-{trace_id}-{parent_id}-01")),
    ]);
    python_produces_json(&topic, &properties, "o-1").await?;
    common::next(&mut rx, "traced message from Python").await;
    subscription.shutdown().await?;

    let consumer = capture
        .spans_on(&topic)
        .into_iter()
        .find(|span| span.name.starts_with("process"))
        .ok_or("no consumer span was recorded")?;
    assert_eq!(consumer.span_context.trace_id().to_string(), trace_id);
    assert_eq!(consumer.parent_span_id.to_string(), parent_id);
    Ok(())
}

/// A JSON event with no codec of its own: its first publish registers the JSON schema derived
/// from the Rust type (the record apache-avro derives for it), and Python's
/// `JsonSchema(AccountOpened)` and Java's AUTO_CONSUME both read it as that record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_event_carries_its_schema_and_python_and_java_read_it_as_a_record() -> TestResult {
    let topic = common::unique("interop-json-derived");
    let pulsar = bus_for(&topic).await;
    let full_topic = pulsar.topic_for(AccountOpened::EVENT_TYPE);
    let bus = Bus::new(Arc::new(pulsar.clone()), Codecs::default());
    bus.publish(&AccountOpened {
        account_id: "a-1".into(),
        owner: "Ada".into(),
        credit: 42,
    })
    .await?;

    let admin = bento_pulsar::PulsarAdmin::from_url(&common::admin_url())?;
    let stored = admin.schema(&full_topic).await?;
    assert_eq!(stored.kind, "JSON");
    assert_eq!(
        apache_avro::Schema::parse_str(&stored.data)?.canonical_form(),
        AccountOpened::get_schema().canonical_form()
    );

    let seen = python(args(&[
        "consume",
        "--topic",
        &full_topic,
        "--subscription",
        "python",
        "--schema",
        "json",
    ]))
    .await;
    assert_eq!(
        seen[0]["value"],
        json!({"account_id": "a-1", "owner": "Ada", "credit": 42}),
        "Python's JsonSchema(AccountOpened) reads the record"
    );

    let java = java_auto_consume(&full_topic, 1).await;
    assert!(java[0].is_record(), "{java:?}");
    assert_eq!(
        java[0].fields(),
        BTreeMap::from([
            ("account_id".to_owned(), "a-1".to_owned()),
            ("credit".to_owned(), "42".to_owned()),
            ("owner".to_owned(), "Ada".to_owned()),
        ])
    );
    pulsar.close().await?;
    Ok(())
}
