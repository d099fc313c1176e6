/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration could not be read or has an invalid value; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configured backend is not compiled in.
    #[error(
        "messaging.backend = \"{backend}\" but bento-runtime was built without its `{feature}` \
         cargo feature; enable it (e.g. `cargo run --features {feature}` in the examples, or \
         `bento-runtime = {{ features = [\"{feature}\"] }}`)"
    )]
    BackendNotCompiled {
        /// The backend asked for.
        backend: &'static str,
        /// The feature that enables it.
        feature: &'static str,
    },
    /// The configuration has an `[outbox]` or `[inbox]` but no database is compiled in.
    #[error(
        "the configuration has an `[{section}]` section but bento-runtime was built without a \
         database: enable its `sqlite` or `postgres` cargo feature"
    )]
    StoreNotCompiled {
        /// The section found.
        section: &'static str,
    },
    /// The outbox or inbox database could not be opened or set up; the message names the key,
    /// the URL (without password) or the table.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error(transparent)]
    Store(#[from] bento_sqlx::SqlError),
    /// The backend could not be started (e.g. the broker is unreachable).
    #[error(transparent)]
    Bus(#[from] bento_application::BusError),
    /// Metrics, tracing or the metrics endpoint could not be set up.
    #[error(transparent)]
    Observability(#[from] bento_observability::ObservabilityError),
}

impl From<figment::Error> for RuntimeError {
    fn from(error: figment::Error) -> Self {
        Self::from_errors(error)
    }
}

impl RuntimeError {
    /// One configuration error naming, for each problem, the key and where its value came from.
    pub(crate) fn from_errors(errors: impl IntoIterator<Item = figment::Error>) -> Self {
        let messages: Vec<String> = errors.into_iter().map(|e| describe(&e)).collect();
        RuntimeError::Config(messages.join("; "))
    }
}

fn describe(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let source = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {} {source})", m.name),
            // Environment values: name the exact variable, which figment does not.
            None if m.name.contains("environment") => format!(
                " (from environment variable BENTO_{})",
                error.path.join("__").to_ascii_uppercase()
            ),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    if key.is_empty() {
        format!("{}{source}", error.kind)
    } else {
        format!("`{key}`: {}{source}", error.kind)
    }
}
