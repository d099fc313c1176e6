//! # bento-observability
//!
//! Metrics, traces and logs for every Bento backend (memory, Pulsar, Kafka) without a line of
//! backend code: layers around the [`MessageBus`] port and its handlers.
//!
//! - [`ObservedBus`] wraps any `Arc<dyn MessageBus>`: producer spans that write the W3C trace
//!   context into the envelope headers, consumer spans that read it back, and Prometheus
//!   metrics for publishes, deliveries, retries, dead letters, latency, in-flight handlers and
//!   consumer lag (where the backend can tell).
//! - [`MetricsLayer`] and [`TraceLayer`]: the same metrics and consumer spans as two layers a
//!   service stacks on the subscriptions it picks, either without the other.
//! - [`Metrics`]: the metric families, with bounded label cardinality.
//! - [`MetricsServer`]: `/metrics`, `/health/live`, `/health/ready` over HTTP.
//! - [`telemetry`]: the `tracing` subscriber with OpenTelemetry export (OTLP behind the `otlp`
//!   feature).
//! - [`Observability`]: all of it from the `[observability]` configuration, as
//!   `bento-runtime` uses it.
//!
//! See `docs/observability.md` for metric names, span attributes and configuration keys.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod bus;
mod config;
mod error;
mod handler;
mod http;
mod layers;
mod metrics;
pub mod telemetry;
pub mod trace;

#[cfg(feature = "testing")]
pub mod readiness;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use bento_application::MessageBus;

pub use bus::{ObservedBus, ObservedBusBuilder};
pub use config::{ConsumerParent, MetricsConfig, ObservabilityConfig, SpanLevel, TracingConfig};
pub use error::ObservabilityError;
pub use http::MetricsServer;
pub use layers::{MetricsLayer, TraceLayer};
pub use metrics::{Metrics, MetricsOptions, OTHER, UNKNOWN};
pub use prometheus;
pub use trace::TraceOptions;

/// Observability as configured: the observed bus, its metrics and the HTTP endpoint.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use bento_application::MessageBus;
/// # use bento_observability::{Observability, ObservabilityConfig};
/// # async fn demo(backend: Arc<dyn MessageBus>) -> Result<(), bento_observability::ObservabilityError> {
/// let mut config = ObservabilityConfig::default();
/// config.metrics.address = Some("127.0.0.1:9464".into());
/// let observability = Observability::start(&config, backend).await?;
/// let bus = observability.bus(); // use this one
/// # observability.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Observability {
    bus: Arc<dyn MessageBus>,
    metrics: Option<Metrics>,
    server: Option<MetricsServer>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability")
            .field("backend", &self.bus.backend())
            .field("metrics", &self.metrics)
            .field("server", &self.server)
            .finish()
    }
}

impl Observability {
    /// Wraps `bus` in an [`ObservedBus`] per `config` (not at all if metrics and tracing are
    /// both off) and, if `observability.metrics.address` is set, starts the HTTP endpoint.
    ///
    /// The global subscriber is separate ([`telemetry::install`]), so that it can be in place
    /// before the bus connects.
    pub async fn start(
        config: &ObservabilityConfig,
        bus: Arc<dyn MessageBus>,
    ) -> Result<Self, ObservabilityError> {
        let metrics = if config.metrics.enabled {
            Some(Metrics::new(MetricsOptions {
                max_label_values: config.metrics.max_label_values,
            })?)
        } else {
            None
        };
        let observed: Arc<dyn MessageBus> = if metrics.is_none() && !config.tracing.enabled {
            bus
        } else {
            let mut builder = ObservedBus::builder(bus).lag_interval(config.metrics.lag_interval());
            if let Some(metrics) = &metrics {
                builder = builder.metrics(metrics);
            }
            if config.tracing.enabled {
                builder = builder.tracing(
                    TraceOptions::default()
                        .consumer_parent(config.tracing.consumer_parent)
                        .span_level(config.tracing.span_level),
                );
            }
            Arc::new(builder.build())
        };
        let server = match &config.metrics.address {
            Some(address) => {
                let registry = match &metrics {
                    Some(metrics) => metrics.registry().clone(),
                    None => prometheus::Registry::new(),
                };
                let health = observed.clone();
                Some(MetricsServer::start(address, registry, Some(health)).await?)
            }
            None => None,
        };
        Ok(Self {
            bus: observed,
            metrics,
            server,
        })
    }

    /// The bus to use: observed, unless observability is all off.
    pub fn bus(&self) -> Arc<dyn MessageBus> {
        self.bus.clone()
    }

    /// The metrics, when on; register the service's own in [`Metrics::registry`].
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// Where `/metrics` and the health endpoints are served, when they are.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(MetricsServer::local_addr)
    }

    /// Stops the HTTP endpoint. Close the bus first, so that readiness says no meanwhile.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}
