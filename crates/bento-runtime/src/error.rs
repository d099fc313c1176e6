/// Why the runtime could not start.
///
/// Its `Debug` is its message followed by the causes the message does not already say, as
/// anyhow and eyre print errors, so that
/// `main() -> Result<(), Box<dyn std::error::Error>>` (whose error Rust prints with `Debug`)
/// reports a start-up failure in words:
///
/// ```text
/// Error: the Pulsar bus could not start: ...
///
/// Caused by:
///     connection refused ...
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
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

impl std::fmt::Debug for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.to_string();
        f.write_str(&shown)?;
        let mut first = true;
        for cause in std::iter::successors(std::error::Error::source(self), |e| e.source()) {
            let cause = cause.to_string();
            // Most messages end with their cause's: say each thing once.
            if shown.contains(&cause) {
                continue;
            }
            if first {
                f.write_str("\n\nCaused by:")?;
                first = false;
            }
            write!(f, "\n    {cause}")?;
            shown.push_str(&cause);
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_as_the_message() {
        let error = RuntimeError::BackendNotCompiled {
            backend: "kafka",
            feature: "kafka",
        };
        // What `main() -> Result<(), Box<dyn Error>>` prints after `Error: `.
        let boxed: Box<dyn std::error::Error> = Box::new(error);
        let printed = format!("{boxed:?}");
        assert!(
            printed.starts_with(
                "messaging.backend = \"kafka\" but bento-runtime was built without its `kafka` \
                 cargo feature"
            ),
            "{printed}"
        );
        assert!(!printed.contains("BackendNotCompiled"), "{printed}");
        assert!(!printed.contains("Caused by"), "{printed}");
    }

    /// A client error whose message does not repeat its own cause.
    #[derive(Debug, thiserror::Error)]
    #[error("handshake failed")]
    struct Handshake(#[source] std::io::Error);

    #[test]
    fn debug_lists_the_causes_not_said_yet() {
        let error = RuntimeError::Bus(bento_application::BusError::Connection {
            backend: "pulsar",
            address: "pulsar://127.0.0.1:6651".into(),
            source: Box::new(Handshake(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the server answered with TLS",
            ))),
        });
        let printed = format!("{error:?}");
        assert_eq!(
            printed,
            "cannot reach the pulsar broker at pulsar://127.0.0.1:6651: handshake failed\n\n\
             Caused by:\n    the server answered with TLS"
        );
    }
}
