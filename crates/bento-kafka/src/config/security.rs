//! `[messaging.kafka.security]`: how the connection to the brokers is protected and
//! authenticated.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::scalars::lenient_opt_string;

/// `security.protocol`: how the connection to the brokers is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// No encryption, no authentication.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl Protocol {
    pub(super) fn librdkafka(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    pub(super) fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    pub(super) fn uses_ssl(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }
}

/// `security.sasl_mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// Username and password in the clear (use with `sasl_ssl`).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub(super) fn librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[messaging.kafka.security]`.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: Protocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with a `sasl_*` protocol.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL username.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub username: Option<String>,
    /// SASL password (never shown by `Debug`).
    #[serde(deserialize_with = "lenient_opt_string")]
    pub password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates (default: the system's).
    pub ssl_ca_location: Option<PathBuf>,
    /// PEM file of this client's certificate, for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// PEM file of this client's private key, for mutual TLS.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of the private key, if it is encrypted (never shown by `Debug`).
    #[serde(deserialize_with = "lenient_opt_string")]
    pub ssl_key_password: Option<String>,
}

impl fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("SecurityConfig")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &hide(&self.password))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &hide(&self.ssl_key_password))
            .finish()
    }
}
