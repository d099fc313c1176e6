//! Errors of the Pulsar backend and their translation into [`bento_application::BusError`].

use pulsar::error::{ConnectionError, ConsumerError, ProducerError, ServiceDiscoveryError};
use pulsar::proto::ServerError;

use crate::config::CONFIG_PREFIX;

pub use bento_application::backend::ConfigError;

/// A setting of [`crate::PulsarConfig`] (below `messaging.pulsar`) is invalid.
pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(CONFIG_PREFIX, key, message)
}

/// The broker's error code, if `error` carries one.
pub(crate) fn server_error(error: &pulsar::Error) -> Option<ServerError> {
    let connection = match error {
        pulsar::Error::Connection(c) => c,
        pulsar::Error::Producer(ProducerError::Connection(c)) => c,
        pulsar::Error::Consumer(ConsumerError::Connection(c)) => c,
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Query(kind, _)) => return *kind,
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Connection(c)) => c,
        _ => return None,
    };
    match connection {
        ConnectionError::PulsarError(kind, _) => *kind,
        _ => None,
    }
}

/// Whether `error` means the broker could not be reached (as opposed to a refusal).
pub(crate) fn is_unreachable(error: &pulsar::Error) -> bool {
    let connection = match error {
        pulsar::Error::Connection(c) => c,
        pulsar::Error::Producer(ProducerError::Connection(c)) => c,
        pulsar::Error::Consumer(ConsumerError::Connection(c)) => c,
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Connection(c)) => c,
        _ => return false,
    };
    matches!(
        connection,
        ConnectionError::Io(_)
            | ConnectionError::Disconnected
            | ConnectionError::Canceled
            | ConnectionError::Shutdown
            | ConnectionError::Tls(_)
            | ConnectionError::SocketAddr(_)
    )
}

/// A readable description of a client error.
pub(crate) fn describe(error: &pulsar::Error) -> String {
    match server_error(error) {
        Some(kind) => format!("{error} (broker error {})", kind.as_str_name()),
        None => error.to_string(),
    }
}
