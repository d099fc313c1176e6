//! The service's AsyncAPI document ([`Bento::asyncapi`]), and the offline mode that prints it
//! without a broker.
//!
//! With `BENTO_ASYNCAPI=1` in the environment (or `--asyncapi` among the program's arguments),
//! [`Bento::from_config`] and [`Bento::from_env`] build the service *offline*: the bus is the
//! in-memory one, naming topics as the configured backend does, so that the service can make
//! its declarations and subscriptions and print [`Bento::asyncapi`] without connecting to a
//! broker; no metrics endpoint is served and no span exported. [`Bento::is_offline`] tells the
//! service to print its document and exit. `bento asyncapi -- <service command>` runs a service
//! that way.

use std::sync::Arc;

use async_trait::async_trait;
use bento_application::{
    BusError, EnvelopeHandler, MessageBus, PublishOptions, Subscription, SubscriptionSpec,
};
pub use bento_asyncapi::{AsyncApi, AsyncApiError, Broker};
use bento_domain::Envelope;
use bento_memory::{MemoryBus, MemoryConfig};

use crate::{BackendKind, Bento, Config, RuntimeError};

/// The environment variable that builds services offline, to print their AsyncAPI document.
pub const ASYNCAPI_VAR: &str = "BENTO_ASYNCAPI";

/// The program argument that does what [`ASYNCAPI_VAR`] does.
pub const ASYNCAPI_ARG: &str = "--asyncapi";

/// Whether the service is asked for its AsyncAPI document: [`ASYNCAPI_VAR`] is set (to anything
/// but empty, `0` or `false`) or [`ASYNCAPI_ARG`] is among the program's arguments.
pub fn requested() -> bool {
    let by_var =
        std::env::var(ASYNCAPI_VAR).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"));
    by_var || std::env::args_os().skip(1).any(|arg| arg == ASYNCAPI_ARG)
}

/// Maps event types and topic names as the configured backend does.
struct Naming {
    backend: &'static str,
    event_type_topic: Box<dyn Fn(&str) -> String + Send + Sync>,
    address: Arc<dyn Fn(&str) -> String + Send + Sync>,
    broker: Broker,
}

fn naming(config: &Config) -> Result<Naming, RuntimeError> {
    match config.messaging.backend {
        BackendKind::Memory => Ok(Naming {
            backend: "memory",
            event_type_topic: Box::new(str::to_owned),
            address: Arc::new(str::to_owned),
            broker: Broker::Memory,
        }),
        BackendKind::Pulsar => pulsar_naming(config),
        BackendKind::Kafka => kafka_naming(config),
    }
}

#[cfg(feature = "pulsar")]
fn pulsar_naming(config: &Config) -> Result<Naming, RuntimeError> {
    let settings: bento_pulsar::PulsarConfig = config.backend_settings(BackendKind::Pulsar)?;
    settings
        .validate()
        .map_err(|error| RuntimeError::Config(error.to_string()))?;
    let broker = Broker::Pulsar {
        service_url: settings.service_url.clone(),
        tenant: settings.tenant.clone(),
        namespace: settings.namespace.clone(),
    };
    let settings = Arc::new(settings);
    let for_topics = settings.clone();
    Ok(Naming {
        backend: "pulsar",
        event_type_topic: Box::new(move |event_type| settings.event_type_topic(event_type)),
        address: Arc::new(move |topic| for_topics.full_topic_name(topic)),
        broker,
    })
}

#[cfg(feature = "kafka")]
fn kafka_naming(config: &Config) -> Result<Naming, RuntimeError> {
    let settings: bento_kafka::KafkaConfig = config.backend_settings(BackendKind::Kafka)?;
    settings
        .validate()
        .map_err(|error| RuntimeError::Config(error.to_string()))?;
    let broker = Broker::Kafka {
        bootstrap_servers: settings.bootstrap_servers.clone(),
        secure: matches!(
            settings.security.protocol,
            bento_kafka::Protocol::Ssl | bento_kafka::Protocol::SaslSsl
        ),
    };
    let topics = settings.topics;
    Ok(Naming {
        backend: "kafka",
        // As `KafkaBus::topic_for` maps them.
        event_type_topic: Box::new(move |event_type| match topics.get(event_type) {
            Some(topic) => topic.clone(),
            None => bento_kafka::topics::sanitize(event_type),
        }),
        address: Arc::new(bento_kafka::topics::sanitize),
        broker,
    })
}

#[cfg(not(feature = "pulsar"))]
fn pulsar_naming(_: &Config) -> Result<Naming, RuntimeError> {
    Err(RuntimeError::BackendNotCompiled {
        backend: "pulsar",
        feature: "pulsar",
    })
}

#[cfg(not(feature = "kafka"))]
fn kafka_naming(_: &Config) -> Result<Naming, RuntimeError> {
    Err(RuntimeError::BackendNotCompiled {
        backend: "kafka",
        feature: "kafka",
    })
}

/// The bus of an offline service: the in-memory bus, with the configured backend's name and
/// topic names.
struct OfflineBus {
    memory: MemoryBus,
    naming: Naming,
}

/// The bus an offline service runs on (see the module documentation).
pub(crate) fn offline_bus(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    Ok(Arc::new(OfflineBus {
        memory: MemoryBus::new(MemoryConfig::default()),
        naming: naming(config)?,
    }))
}

#[async_trait]
impl MessageBus for OfflineBus {
    fn backend(&self) -> &'static str {
        self.naming.backend
    }

    async fn publish(&self, envelope: Envelope, options: PublishOptions) -> Result<(), BusError> {
        self.memory.publish(envelope, options).await
    }

    async fn publish_batch(
        &self,
        envelopes: Vec<Envelope>,
        options: PublishOptions,
    ) -> Result<(), BusError> {
        self.memory.publish_batch(envelopes, options).await
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EnvelopeHandler>,
    ) -> Result<Subscription, BusError> {
        self.memory.subscribe(spec, handler).await
    }

    fn topic_for(&self, event_type: &str) -> String {
        (self.naming.event_type_topic)(event_type)
    }

    async fn close(&self) -> Result<(), BusError> {
        self.memory.close().await
    }
}

impl Bento {
    /// The AsyncAPI 3.0 document of what this service declared through [`Bento::bus`] so far:
    /// the event types it declared or published, its subscriptions, on the configured broker
    /// (servers, topic names and bindings from `[messaging]`). Titled after the program; set
    /// the title, version and description on the result:
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let bento = bento_runtime::Bento::from_env().await?;
    /// // ... declare event types, subscribe handlers ...
    /// if bento.is_offline() {
    ///     println!("{}", bento.asyncapi()?.title("users").version("1.0.0").to_json_pretty()?);
    ///     return Ok(());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn asyncapi(&self) -> Result<AsyncApi, RuntimeError> {
        let naming = naming(self.config())?;
        let title = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "Bento service".to_owned());
        let address = naming.address.clone();
        Ok(AsyncApi::new(self.bus().contract(), naming.broker)
            .title(title)
            .address_with(move |topic| address(topic)))
    }
}
