//! Bento and the official Kafka Python client (`confluent-kafka`, installed from PyPI, pinned,
//! if `import confluent_kafka` fails) on one real broker: the Python consumer reads Bento's
//! records with the documented headers, and Bento reads a record the Python producer wrote with
//! them. The Python side is `interop/python/kafka_interop.py`.

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{Bus, PublishOptions, SubscriptionSpec, wire};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_testkit::Collector;
use serde::{Deserialize, Serialize};
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

/// The Python client version the tests install (has wheels for CPython 3.11 on x86_64).
const CONFLUENT_KAFKA: &str = "confluent-kafka==2.16.1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    email: String,
}

impl DomainEvent for UserCreated {
    const EVENT_TYPE: &'static str = "users.user-created";
    const AGGREGATE_TYPE: &'static str = "user";
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

fn python(args: &[&str]) -> Result<Value, Box<dyn Error>> {
    common::python("kafka_interop.py", "confluent_kafka", CONFLUENT_KAFKA, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_what_bento_wrote() -> TestResult {
    common::share_broker();
    let bus = Bus::new(Arc::new(common::connect(common::config()).await), Json);
    let topic = common::unique("interop-out");
    let event = UserCreated {
        user_id: "u-42".into(),
        email: "ada@example.com".into(),
    };
    let envelope = bus.envelope(&event)?.with_correlation_id("corr-7");
    let id = envelope.id;
    bus.message_bus()
        .publish(envelope, PublishOptions::default().to_topic(&topic))
        .await?;

    let records = python(&["consume", &common::bootstrap(), &topic, "1"])?;
    let record = &records[0];
    assert_eq!(record["key"], "u-42");
    assert_eq!(record["value"]["email"], "ada@example.com");
    let headers = &record["headers"];
    assert_eq!(headers[wire::MESSAGE_ID], id.to_string());
    assert_eq!(headers[wire::EVENT_TYPE], "users.user-created");
    assert_eq!(headers[wire::EVENT_VERSION], "1");
    assert_eq!(headers[wire::AGGREGATE_ID], "u-42");
    assert_eq!(headers[wire::CORRELATION_ID], "corr-7");
    assert_eq!(headers[wire::CONTENT_TYPE], "application/json");
    assert!(
        headers[wire::OCCURRED_AT]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bento_reads_what_python_wrote() -> TestResult {
    common::share_broker();
    let bus = Bus::new(Arc::new(common::connect(common::config()).await), Json);
    let topic = common::unique("interop-in");
    let seen = Collector::new();
    let subscription = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&topic, common::unique("reader")),
            seen.handler(),
        )
        .await?;
    let written = python(&["produce", &common::bootstrap(), &topic])?;

    let got = seen
        .wait_for(1, Duration::from_secs(30))
        .await
        .remove(0)
        .envelope;
    assert_eq!(
        Some(got.id.to_string().as_str()),
        written["message_id"].as_str()
    );
    assert_eq!(got.event_type, "users.user-created");
    assert_eq!(got.aggregate_id, "py-user-1");
    assert_eq!(got.ordering_key.as_deref(), Some("py-user-1"));
    assert_eq!(got.correlation_id(), "py-correlation");
    assert_eq!(got.tenant.as_deref(), Some("acme"));
    assert_eq!(
        got.occurred_at.to_rfc3339(),
        "2026-11-27T10:00:00.123456+00:00"
    );
    assert_eq!(
        got.headers.get("traceparent").map(String::as_str),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    let event: UserCreated = serde_json::from_slice(&got.payload)?;
    assert_eq!(event.email, "grace@example.com");
    subscription.shutdown().await?;
    Ok(())
}
