//! Authentication and TLS: `[messaging.pulsar.auth]` and `[messaging.pulsar.tls]`. `Debug`
//! never shows a token or a client secret.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{ConfigError, invalid};

/// Authentication with the broker: a token, or OAuth2 client credentials, or nothing.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A JWT for token authentication.
    pub token: Option<String>,
    /// A file holding the JWT (read at connect time; surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// OAuth2 client credentials (needs the `oauth2` cargo feature).
    pub oauth2: Option<OAuth2Config>,
}

impl AuthConfig {
    /// The token of `token`, or read from `token_file`, without surrounding whitespace; `None`
    /// when neither is set.
    pub(crate) fn read_token(&self) -> Result<Option<String>, ConfigError> {
        match (&self.token, &self.token_file) {
            (Some(token), _) => Ok(Some(token.trim().to_owned())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|token| Some(token.trim().to_owned()))
                .map_err(|e| {
                    invalid(
                        "auth.token_file",
                        format!("cannot read `{}`: {e}", path.display()),
                    )
                }),
            (None, None) => Ok(None),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("token_file", &self.token_file)
            .field("oauth2", &self.oauth2)
            .finish()
    }
}

/// OAuth2 client-credentials flow, as Pulsar's own clients configure it.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2Config {
    /// The authorization server (its `/.well-known/openid-configuration` is read).
    pub issuer_url: String,
    /// Client id; give it with `client_secret`, or give `credentials_url` instead.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: Option<String>,
    /// A `file://` URL of a JSON key file (`client_id`, `client_secret`), or a `data:` URL.
    pub credentials_url: Option<String>,
    /// Audience of the token, if the server needs one.
    pub audience: Option<String>,
    /// Scope of the token, if the server needs one.
    pub scope: Option<String>,
}

impl fmt::Debug for OAuth2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A data: URL embeds the secret itself; a file: URL only points at it.
        let credentials = self.credentials_url.as_ref().map(|url| {
            if url.starts_with("file:") {
                url.clone()
            } else {
                format!("{Redacted:?}")
            }
        });
        f.debug_struct("OAuth2Config")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| Redacted),
            )
            .field("credentials_url", &credentials)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS options, used with `pulsar+ssl://` service URLs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Accept any server certificate (development only).
    pub allow_insecure: bool,
    /// PEM file with the CA certificate(s) to trust, in addition to the system's.
    pub trust_cert_path: Option<PathBuf>,
    /// Check that the certificate names the host connected to.
    pub hostname_verification: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            allow_insecure: false,
            trust_cert_path: None,
            hostname_verification: true,
        }
    }
}
