//! The `tracing` subscriber a service runs with: logs to stderr and, when configured, spans
//! exported with OTLP.
//!
//! Services that set up their own subscriber leave `observability.install_subscriber` off and
//! add [`otel_layer`] to theirs (with a provider from [`tracer_provider`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ObservabilityConfig, TracingConfig};
use crate::{ObservabilityError, trace};

/// The instrumentation scope name of Bento's spans.
pub const TRACER_NAME: &str = "bento";
/// `service.name` when neither the configuration nor `OTEL_SERVICE_NAME` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "bento-service";

/// Keeps the span exporter of an installed subscriber; [`TelemetryGuard::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// The tracer provider spans are exported through, if any.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) -> Result<(), ObservabilityError> {
        match self.provider {
            Some(provider) => provider
                .shutdown()
                .map_err(|error| ObservabilityError::Export(error.into())),
            None => Ok(()),
        }
    }
}

/// The tracer provider `config` asks for: `Some` when spans are exported
/// (`otlp_endpoint` set), `None` otherwise.
pub fn tracer_provider(
    config: &TracingConfig,
) -> Result<Option<SdkTracerProvider>, ObservabilityError> {
    let Some(endpoint) = config.otlp_endpoint.as_deref() else {
        return Ok(None);
    };
    exporting_provider(endpoint, config).map(Some)
}

#[cfg(feature = "otlp")]
fn exporting_provider(
    endpoint: &str,
    config: &TracingConfig,
) -> Result<SdkTracerProvider, ObservabilityError> {
    use opentelemetry_otlp::WithExportConfig;
    let base = endpoint.trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|error| ObservabilityError::Export(error.into()))?;
    let service_name = config
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(config.sample_ratio))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name)
                .build(),
        )
        .build())
}

#[cfg(not(feature = "otlp"))]
fn exporting_provider(
    _endpoint: &str,
    _config: &TracingConfig,
) -> Result<SdkTracerProvider, ObservabilityError> {
    Err(ObservabilityError::OtlpNotCompiled)
}

/// Parent-based: a message's consumer span follows its producer's decision; new traces are
/// sampled at `ratio`.
pub fn sampler(ratio: f64) -> Sampler {
    let ratio = if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        1.0
    };
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
}

/// The `tracing-opentelemetry` layer that turns Bento's spans (and the service's) into
/// OpenTelemetry spans of `provider`.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, Tracer>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME))
}

/// What [`install`] exports: INFO and above from everywhere, and Bento's per-message spans at
/// DEBUG. Use it with [`otel_layer`] in a subscriber of your own.
pub fn export_filter() -> Targets {
    Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("bento_observability", tracing::Level::DEBUG)
}

/// Installs the global subscriber `config` describes:
///
/// - logs to stderr, filtered by `RUST_LOG` or else `observability.log_filter`;
/// - when `observability.tracing.otlp_endpoint` is set, spans exported with OTLP per
///   [`export_filter`] (Bento's message spans and every INFO span), whatever the log filter says;
/// - the W3C propagator as OpenTelemetry's global one (for the service's own HTTP layers).
///
/// Fails if a global subscriber is already set.
pub fn install(config: &ObservabilityConfig) -> Result<TelemetryGuard, ObservabilityError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => filter,
        _ => config.log_filter.clone(),
    };
    let env_filter =
        EnvFilter::try_new(&filter).map_err(|error| ObservabilityError::LogFilter {
            filter: filter.clone(),
            source: error,
        })?;
    let provider = if config.tracing.enabled {
        tracer_provider(&config.tracing)?
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|provider| otel_layer(provider).with_filter(export_filter()));
    tracing_subscriber::registry()
        .with(otel)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(env_filter),
        )
        .try_init()
        .map_err(|_| ObservabilityError::SubscriberAlreadySet)?;
    opentelemetry::global::set_text_map_propagator(trace::w3c_propagator());
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(TelemetryGuard { provider })
}
