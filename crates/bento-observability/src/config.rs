//! The `[observability]` configuration section (read by `bento-runtime` with figment).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[observability]`: metrics, tracing and logs of a Bento service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Install a global `tracing` subscriber: logs to stderr (filtered by `log_filter`, or
    /// `RUST_LOG` when set) plus the OpenTelemetry layer when spans are exported. Off by
    /// default, so a service that sets up its own subscriber keeps it; turned on implicitly when
    /// `tracing.otlp_endpoint` is set.
    pub install_subscriber: bool,
    /// Log filter of the installed subscriber (`RUST_LOG` syntax), when `RUST_LOG` is unset.
    pub log_filter: String,
    /// `[observability.metrics]`.
    pub metrics: MetricsConfig,
    /// `[observability.tracing]`.
    pub tracing: TracingConfig,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            install_subscriber: false,
            log_filter: "info".into(),
            metrics: MetricsConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl ObservabilityConfig {
    /// Whether a global subscriber is to be installed (asked for, or needed to export spans).
    pub fn wants_subscriber(&self) -> bool {
        self.install_subscriber || (self.tracing.enabled && self.tracing.otlp_endpoint.is_some())
    }
}

/// `[observability.metrics]`: Prometheus metrics and the HTTP endpoint serving them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record Bento's metrics (on by default; they cost little and are only served when
    /// `address` is set).
    pub enabled: bool,
    /// Where to serve `/metrics`, `/health/live` and `/health/ready`, e.g. `0.0.0.0:9464`;
    /// unset (the default): no HTTP endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Most distinct values kept per label (topic, event type, subscription); further values
    /// are counted under `other`, so a flood of unexpected names cannot blow up the series.
    pub max_label_values: usize,
    /// Seconds between two reads of the consumer lag of each subscription, for backends that
    /// can tell it (`MessageBus::consumer_lag`); `0` turns lag polling off.
    pub lag_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: None,
            max_label_values: 100,
            lag_interval_secs: 15,
        }
    }
}

impl MetricsConfig {
    /// The lag polling interval, `None` when off.
    pub fn lag_interval(&self) -> Option<Duration> {
        (self.lag_interval_secs > 0).then(|| Duration::from_secs(self.lag_interval_secs))
    }
}

/// How a consumer span relates to the producer span whose context the message carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ConsumerParent {
    /// The consumer span is a child of the producer span: one trace from the request that
    /// published to the handler that consumed (the default).
    #[default]
    Child,
    /// The consumer span starts a new trace and links to the producer span (suits long-lived
    /// or fan-out flows where one trace per message would grow without bound).
    Link,
}

/// The level of Bento's per-message spans.
///
/// DEBUG by default, like the request spans of `tower-http`: a service logging at INFO pays
/// nothing for them, and enables them with `bento_observability=debug` in its filter (the
/// subscriber Bento installs to export spans does so by itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SpanLevel {
    /// `DEBUG` (the default).
    #[default]
    Debug,
    /// `INFO`: the spans are on wherever INFO is, e.g. so that every handler log line carries
    /// the message's ids under a plain `info` filter, at the cost of a span per message.
    Info,
}

impl SpanLevel {
    /// The `tracing` level.
    pub fn as_level(&self) -> tracing::Level {
        match self {
            SpanLevel::Debug => tracing::Level::DEBUG,
            SpanLevel::Info => tracing::Level::INFO,
        }
    }
}

/// `[observability.tracing]`: spans around publishes and handlers, W3C trace context in the
/// envelope headers, and optional OTLP export.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Create producer and consumer spans and propagate the trace context (on by default; free
    /// when no subscriber listens).
    pub enabled: bool,
    /// `child` (default) or `link`: see [`ConsumerParent`].
    pub consumer_parent: ConsumerParent,
    /// `debug` (default) or `info`: see [`SpanLevel`].
    pub span_level: SpanLevel,
    /// OTLP/HTTP collector to export spans to, e.g. `http://127.0.0.1:4318` (`/v1/traces` is
    /// appended unless present). Unset (the default): no export. Needs the `otlp` cargo feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans; default: `OTEL_SERVICE_NAME`, else `bento-service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Fraction of new traces sampled (0.0..=1.0); a message's consumer span follows the
    /// sampling decision of its producer.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consumer_parent: ConsumerParent::Child,
            span_level: SpanLevel::Debug,
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
        }
    }
}
