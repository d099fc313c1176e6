/// Why observability could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObservabilityError {
    /// A Prometheus metric could not be created or registered (e.g. a name taken twice in one
    /// registry).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The metrics endpoint could not listen on its address.
    #[error("cannot serve metrics on `{address}` (observability.metrics.address): {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A global `tracing` subscriber is already installed.
    #[error(
        "a global tracing subscriber is already set; either drop yours and let Bento install \
         one, or add `bento_observability::telemetry::otel_layer` to it and leave \
         observability.install_subscriber off"
    )]
    SubscriberAlreadySet,
    /// The log filter is not valid `RUST_LOG` syntax.
    #[error("invalid log filter `{filter}` (observability.log_filter): {source}")]
    LogFilter {
        /// The filter.
        filter: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// Span export is configured but could not be started, or could not flush at shutdown.
    #[error("OTLP span export (observability.tracing.otlp_endpoint): {0}")]
    Export(#[source] bento_application::BoxError),
    /// Span export is configured but bento-observability was built without the `otlp` feature.
    #[error(
        "observability.tracing.otlp_endpoint is set but Bento was built without its `otlp` cargo \
         feature; enable it (e.g. `cargo run --features otlp` in the examples, or \
         `bento-runtime = {{ features = [\"otlp\"] }}`)"
    )]
    OtlpNotCompiled,
}
