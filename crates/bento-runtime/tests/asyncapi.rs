//! `Bento::asyncapi` on each backend, built offline from a configuration whose broker does not
//! exist (so nothing connects), validated with the official AsyncAPI parser.

use bento_application::{Context, HandlerError, SubscriptionSpec};
use bento_domain::DomainEvent;
use bento_runtime::{Bento, Config};
use bento_testkit::asyncapi::validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
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

async fn welcome(_: UserCreated, _: Context) -> Result<(), HandlerError> {
    Ok(())
}

/// The configuration in `toml`, read as a service reads its `bento.toml`.
fn config(toml: &str) -> Result<(Config, tempfile::TempDir), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bento.toml");
    std::fs::write(&path, toml)?;
    Ok((Config::from_figment(Config::figment(&path))?, dir))
}

/// The document of a service that declares `UserCreated` and subscribes `welcome`, offline.
async fn document(toml: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let (config, _dir) = config(toml)?;
    let bento = Bento::offline(config).await?;
    assert!(bento.is_offline());
    let bus = bento.bus();
    bus.declare::<UserCreated>().await?;
    bus.subscribe_with(SubscriptionSpec::named("welcome-email"), welcome)
        .await?;
    let document = bento
        .asyncapi()?
        .title("users")
        .version("1.0.0")
        .to_value()?;
    bento.shutdown().await?;
    let report = validate(&document).map_err(|e| format!("cannot validate: {e}"))?;
    assert!(
        report.valid,
        "the AsyncAPI parser rejected the document: {:#?}\n{document:#}",
        report.errors
    );
    assert!(
        report
            .operations
            .iter()
            .any(|o| o == "send.users.user-created")
    );
    assert!(
        report
            .operations
            .iter()
            .any(|o| o == "receive.welcome-email")
    );
    Ok(document)
}

#[cfg(feature = "pulsar")]
#[tokio::test]
async fn pulsar_topics_servers_and_bindings_without_a_broker()
-> Result<(), Box<dyn std::error::Error>> {
    let document = document(
        r#"
        [messaging]
        backend = "pulsar"
        [messaging.pulsar]
        service_url = "pulsar://127.0.0.1:1"
        tenant = "acme"
        namespace = "users"
        [messaging.pulsar.topics.event_types]
        "users.user-created" = "user-events"
        "#,
    )
    .await?;
    assert_eq!(document["servers"]["pulsar"]["host"], "127.0.0.1:1");
    assert_eq!(
        document["servers"]["pulsar"]["bindings"]["pulsar"]["tenant"],
        "acme"
    );
    let channel = &document["channels"]["user-events"];
    assert_eq!(channel["address"], "persistent://acme/users/user-events");
    assert_eq!(channel["bindings"]["pulsar"]["namespace"], "users");
    // The dead letters of welcome-email, named as the Pulsar backend names them.
    assert_eq!(
        document["channels"]["user-events-welcome-email-DLQ"]["address"],
        "persistent://acme/users/user-events-welcome-email-DLQ"
    );
    Ok(())
}

#[cfg(feature = "kafka")]
#[tokio::test]
async fn kafka_topics_servers_and_bindings_without_a_broker()
-> Result<(), Box<dyn std::error::Error>> {
    let document = document(
        r#"
        [messaging]
        backend = "kafka"
        [messaging.kafka]
        bootstrap_servers = "127.0.0.1:1"
        "#,
    )
    .await?;
    assert_eq!(document["servers"]["kafka"]["host"], "127.0.0.1:1");
    let channel = &document["channels"]["users.user-created"];
    assert_eq!(channel["address"], "users.user-created");
    assert_eq!(channel["bindings"]["kafka"]["topic"], "users.user-created");
    assert_eq!(
        document["operations"]["receive.welcome-email"]["bindings"]["kafka"]["groupId"]["enum"][0],
        "welcome-email"
    );
    Ok(())
}

#[tokio::test]
async fn memory_has_no_server() -> Result<(), Box<dyn std::error::Error>> {
    let document = document("").await?;
    assert!(document.get("servers").is_none());
    assert_eq!(
        document["channels"]["users.user-created"]["address"],
        "users.user-created"
    );
    assert_eq!(
        document["components"]["messages"]["users.user-created"]["payload"]["$ref"],
        "#/components/schemas/UserCreated"
    );
    Ok(())
}
