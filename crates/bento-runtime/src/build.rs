use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bento_application::layer::{BoxHandler, IntoBoxed, Layer};
use bento_application::{BoxPublisher, DEFAULT_SHUTDOWN_GRACE, MessageBus};
use bento_memory::{MemoryBus, MemoryConfig};
use bento_observability::telemetry::TelemetryGuard;
use bento_observability::{Metrics, Observability};

use crate::store::Stores;
use crate::{BackendKind, Bus, Config, RuntimeError};

/// Builds the message bus `config` names.
pub async fn build_message_bus(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    match config.messaging.backend {
        BackendKind::Memory => {
            let memory = &config.messaging.memory;
            Ok(Arc::new(MemoryBus::new(MemoryConfig {
                retain_per_topic: memory.retain_per_topic,
                max_bytes_per_subscription: memory.max_bytes_per_subscription,
                max_delayed_messages: memory.max_delayed_messages,
            })))
        }
        BackendKind::Pulsar => pulsar(config).await,
        BackendKind::Kafka => kafka(config).await,
    }
}

#[cfg(feature = "pulsar")]
async fn pulsar(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    let settings: bento_pulsar::PulsarConfig = config.backend_settings(BackendKind::Pulsar)?;
    settings
        .validate()
        .map_err(|error| RuntimeError::Config(error.to_string()))?;
    Ok(Arc::new(bento_pulsar::PulsarBus::connect(settings).await?))
}

#[cfg(feature = "kafka")]
async fn kafka(config: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    let settings: bento_kafka::KafkaConfig = config.backend_settings(BackendKind::Kafka)?;
    settings
        .validate()
        .map_err(|error| RuntimeError::Config(error.to_string()))?;
    Ok(Arc::new(bento_kafka::KafkaBus::connect(settings).await?))
}

#[cfg(not(feature = "pulsar"))]
async fn pulsar(_: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    Err(RuntimeError::BackendNotCompiled {
        backend: "pulsar",
        feature: "pulsar",
    })
}

#[cfg(not(feature = "kafka"))]
async fn kafka(_: &Config) -> Result<Arc<dyn MessageBus>, RuntimeError> {
    Err(RuntimeError::BackendNotCompiled {
        backend: "kafka",
        feature: "kafka",
    })
}

/// A started Bento runtime: the configuration, the bus it built, and observability (metrics,
/// spans, the `/metrics` and health endpoint) around it.
#[derive(Debug)]
pub struct Bento {
    config: Config,
    bus: Bus,
    observability: Observability,
    telemetry: Option<TelemetryGuard>,
    stores: Stores,
    /// Built offline, to print the service's AsyncAPI document ([`crate::asyncapi`]).
    offline: bool,
}

impl Bento {
    /// Loads the configuration (`bento.toml` and `BENTO_` variables) and builds the bus.
    pub async fn from_env() -> Result<Self, RuntimeError> {
        Self::from_config(Config::load()?).await
    }

    /// Builds the bus for an explicit configuration.
    ///
    /// Logging and span export are set up first (when `observability.install_subscriber` or
    /// `observability.tracing.otlp_endpoint` asks for it), then the bus is built and wrapped
    /// in the observability layers, and the metrics endpoint started if
    /// `observability.metrics.address` is set.
    ///
    /// When the service is asked for its AsyncAPI document (`BENTO_ASYNCAPI=1` or
    /// `--asyncapi`, see [`crate::asyncapi`]), it is built [`Bento::offline`] instead.
    pub async fn from_config(config: Config) -> Result<Self, RuntimeError> {
        if crate::asyncapi::requested() {
            return Self::offline(config).await;
        }
        let telemetry = if config.observability.wants_subscriber() {
            Some(bento_observability::telemetry::install(
                &config.observability,
            )?)
        } else {
            None
        };
        let backend = build_message_bus(&config).await?;
        let observability = Observability::start(&config.observability, backend).await?;
        let mut bus = Bus::new(observability.bus(), config.codec.codecs());
        if let Some(guard) = &config.crash_guard {
            let layer = bento_application::layer::CrashGuardLayer::open(
                &guard.directory,
                guard.max_crashes,
            )
            .map_err(|error| {
                RuntimeError::Config(format!(
                    "crash_guard.directory `{}`: {error}",
                    guard.directory.display()
                ))
            })?;
            bus = bus.layer(layer);
        }
        let mut stores = Stores::open(&config, &bus).await?;
        stores.start(&config, observability.metrics())?;
        tracing::info!(
            backend = config.messaging.backend.as_str(),
            metrics = ?observability.metrics_address(),
            "bento runtime started"
        );
        Ok(Self {
            config,
            bus,
            observability,
            telemetry,
            stores,
            offline: false,
        })
    }

    /// Builds the service as `config` describes it, but without a broker: the bus is the
    /// in-memory one naming topics as the configured backend does, no metrics endpoint is
    /// served and no span exported (the outbox and inbox databases are opened as configured).
    /// For printing the service's contract ([`Bento::asyncapi`]) where no broker runs.
    pub async fn offline(config: Config) -> Result<Self, RuntimeError> {
        let backend = crate::asyncapi::offline_bus(&config)?;
        let mut observability_config = config.observability.clone();
        observability_config.metrics.address = None;
        observability_config.tracing.otlp_endpoint = None;
        let observability = Observability::start(&observability_config, backend).await?;
        let bus = Bus::new(observability.bus(), config.codec.codecs());
        let stores = Stores::open(&config, &bus).await?;
        Ok(Self {
            config,
            bus,
            observability,
            telemetry: None,
            stores,
            offline: true,
        })
    }

    /// Whether the service was built [`Bento::offline`]: it was asked for its AsyncAPI
    /// document, which it should print ([`Bento::asyncapi`]) before exiting.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Adds `layer` around the handler stack of every subscription made through [`Bento::bus`]
    /// from now on: inside the observability layers and the layers added before, outside each
    /// subscription's own (see [`bento_application::layer`] for the whole order).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn demo() -> Result<(), bento_runtime::RuntimeError> {
    /// use bento_application::layer::RateLimitLayer;
    /// let bento = bento_runtime::Bento::from_env()
    ///     .await?
    ///     .layer(RateLimitLayer::new(500, Duration::from_secs(1)));
    /// # Ok(()) }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxHandler> + Send + Sync + 'static,
        L::Service: IntoBoxed<BoxHandler>,
    {
        self.bus = self.bus.layer(layer);
        self
    }

    /// Adds `layer` around every publish made through [`Bento::bus`] from now on, inside the
    /// publish layers added before.
    pub fn publish_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxPublisher> + Send + Sync + 'static,
        L::Service: IntoBoxed<BoxPublisher>,
    {
        self.bus = self.bus.publish_layer(layer);
        self
    }

    /// The typed bus; clone it freely.
    pub fn bus(&self) -> Bus {
        self.bus.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where `/metrics`, `/health/live` and `/health/ready` are served, if they are
    /// (`observability.metrics.address`).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.observability.metrics_address()
    }

    /// Bento's metrics, unless `observability.metrics.enabled` is off (the table of metrics is
    /// on [`Metrics`]). [`Metrics::encode`] is the Prometheus text `/metrics` serves;
    /// [`Metrics::registry`] is the `prometheus::Registry` itself, to read a figure in code or
    /// to register the service's own metrics, served from the same endpoint:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bento = bento_runtime::Bento::from_config(bento_runtime::Config::default()).await?;
    /// let metrics = bento.metrics().ok_or("metrics are off")?;
    /// // Read one: the messages handled so far, over every label.
    /// let handled: f64 = metrics
    ///     .registry()
    ///     .gather()
    ///     .iter()
    ///     .filter(|family| family.name() == "bento_messages_handled_total")
    ///     .flat_map(|family| family.get_metric())
    ///     .map(|metric| metric.get_counter().get_value())
    ///     .sum();
    /// assert_eq!(handled, 0.0);
    /// let _text = metrics.encode()?; // what GET /metrics answers
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> Option<&Metrics> {
        self.observability.metrics()
    }

    /// The transactional outbox of `[outbox]`: begin a unit of work with
    /// `bento.outbox()?.begin().await?`, write through it, record events, commit. The relay
    /// starts with the first call, publishing through the bus as it is then (layers included).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn outbox(
        &self,
    ) -> Result<bento_sqlx::Outbox<sqlx::Any, bento_codec::Codecs>, RuntimeError> {
        self.stores.outbox(&self.bus)
    }

    /// The durable inbox of `[inbox]`: add `bento.inbox()?.layer()` to a subscription, and
    /// its handler writes through `InboxTransaction::of(&ctx)`.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn inbox(&self) -> Result<&bento_sqlx::DurableInbox<sqlx::Any>, RuntimeError> {
        self.stores.inbox()
    }

    /// What the outbox relay did so far, once it runs.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn relay_stats(&self) -> Option<bento_sqlx::RelaySnapshot> {
        self.stores.relay_stats()
    }

    /// Stops the service's subscriptions (every one made through [`Bento::bus`]; in-flight
    /// handlers get [`DEFAULT_SHUTDOWN_GRACE`] to finish), closes the bus (flushes producers),
    /// stops the metrics endpoint and flushes exported spans.
    pub async fn shutdown(self) -> Result<(), RuntimeError> {
        self.shutdown_within(DEFAULT_SHUTDOWN_GRACE).await
    }

    /// Like [`Bento::shutdown`], giving in-flight handlers `grace` to finish; messages not
    /// finished by then are redelivered later, never lost.
    pub async fn shutdown_within(self, grace: Duration) -> Result<(), RuntimeError> {
        let stopped = self.bus.shutdown_subscriptions(grace).await;
        self.stores.shutdown().await;
        let closed = self.bus.message_bus().close().await;
        self.observability.shutdown().await;
        if let Some(telemetry) = self.telemetry {
            telemetry.shutdown()?;
        }
        stopped?;
        closed?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[cfg(not(feature = "pulsar"))]
    #[tokio::test]
    async fn a_backend_not_compiled_in_names_its_feature() {
        let mut config = Config::default();
        config.messaging.backend = BackendKind::Pulsar;
        let error = Bento::from_config(config)
            .await
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("`pulsar` cargo feature"), "{error}");
    }

    #[cfg(feature = "pulsar")]
    #[test]
    fn a_bad_pulsar_setting_names_its_key_and_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BENTO_MESSAGING__BACKEND", "pulsar");
            jail.set_env(
                "BENTO_MESSAGING__PULSAR__SERVICE_URLL",
                "pulsar://typo:6650",
            );
            let config = Config::from_figment(Config::figment(std::path::Path::new("none.toml")))
                .map_err(|e| e.to_string())?;
            let error = config
                .backend_settings::<bento_pulsar::PulsarConfig>(BackendKind::Pulsar)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("service_urll"), "{error}");
            assert!(
                error.contains("BENTO_MESSAGING__PULSAR__SERVICE_URLL"),
                "{error}"
            );
            Ok(())
        });
    }

    #[tokio::test]
    async fn metrics_and_health_are_served_when_an_address_is_set()
    -> Result<(), Box<dyn std::error::Error>> {
        use bento_observability::testing::{http_get, parse_exposition};
        let mut config = Config::default();
        config.observability.metrics.address = Some("127.0.0.1:0".into());
        let bento = Bento::from_config(config).await?;
        let address = bento.metrics_address().ok_or("no metrics address")?;
        let envelope = bento_domain::Envelope::new("runtime.test", 1, "application/json", "{}");
        bento
            .bus()
            .message_bus()
            .publish(envelope, Default::default())
            .await?;
        let (status, body) = http_get(address, "/metrics").await?;
        assert_eq!(status, 200);
        let published = parse_exposition(&body)?.sum(
            "bento_messages_published_total",
            &[("backend", "memory"), ("event_type", "runtime.test")],
        );
        assert_eq!(published, 1.0, "{body}");
        assert_eq!(http_get(address, "/health/ready").await?.0, 200);
        bento.shutdown().await?;
        assert!(http_get(address, "/health/live").await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn memory_is_the_default() -> Result<(), RuntimeError> {
        let bento = Bento::from_config(Config::default()).await?;
        assert_eq!(bento.bus().message_bus().backend(), "memory");
        Ok(())
    }
}
