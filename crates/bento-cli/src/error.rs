//! What can go wrong, as the CLI reports it.

use std::fmt;

use bento_application::BusError;
use bento_pulsar::AdminError;

/// An error the CLI prints before exiting with a non-zero status.
#[derive(Debug)]
pub enum CliError {
    /// The configuration cannot be read or is invalid.
    Config(String),
    /// A Pulsar admin call failed (carries the HTTP status and the broker's message).
    Admin(AdminError),
    /// A broker client failed.
    Broker(String),
    /// The configured backend cannot do this.
    Unsupported(String),
    /// An argument is invalid.
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Config(message) => write!(f, "invalid configuration: {message}"),
            CliError::Admin(error) => error.fmt(f),
            CliError::Broker(message) | CliError::Usage(message) => f.write_str(message),
            CliError::Unsupported(message) => write!(f, "not supported: {message}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<AdminError> for CliError {
    fn from(error: AdminError) -> Self {
        CliError::Admin(error)
    }
}

impl From<BusError> for CliError {
    fn from(error: BusError) -> Self {
        CliError::Broker(error.to_string())
    }
}

impl From<bento_runtime::RuntimeError> for CliError {
    fn from(error: bento_runtime::RuntimeError) -> Self {
        match error {
            bento_runtime::RuntimeError::Config(message) => CliError::Config(message),
            other => CliError::Broker(other.to_string()),
        }
    }
}
