//! [`PulsarAdmin`]: a client of Pulsar's admin REST API (v2), for tools and tests that manage
//! tenants, namespaces, topics, subscriptions and schemas.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bento_pulsar::admin::AdminError> {
//! use bento_pulsar::PulsarConfig;
//! use bento_pulsar::admin::{Position, PulsarAdmin, ResetTo};
//!
//! let admin = PulsarAdmin::new(&PulsarConfig::default())?; // admin_url, token, TLS, timeouts
//! admin.create_tenant("acme", &[]).await?;                  // all clusters
//! admin.create_namespace("acme/orders").await?;
//! admin.create_topic("acme/orders/created", 0).await?;      // not partitioned
//! admin.create_subscription("acme/orders/created", "audit", Position::Earliest).await?;
//! let stats = admin.topic_stats("acme/orders/created").await?;
//! println!("backlog: {}", stats.subscriptions["audit"].msg_backlog);
//! admin.reset_cursor("acme/orders/created", "audit", ResetTo::Earliest).await?;
//! # Ok(()) }
//! ```
//!
//! Topic names are read as the bus reads them: a plain name lives in the configured tenant and
//! namespace, `tenant/ns/topic` is persistent, and a full `persistent://` or
//! `non-persistent://` name is kept. Every failure is an [`AdminError`] naming the call; one the
//! broker refused carries its HTTP status and message.

mod error;
mod names;
mod namespaces;
mod schemas;
mod subscriptions;
mod tenants;
mod topics;
mod types;

use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::AdminError;
pub use names::{NamespaceName, TopicDomain, TopicName};
pub use types::{
    ConsumerStats, NamespacePolicies, Position, PublisherStats, ResetTo, Retention,
    SchemaCompatibility, SchemaInfo, SchemaUpload, SubscriptionStats, TenantInfo, TopicStats,
};

use crate::config::{CONFIG_PREFIX, PulsarConfig};
use error::{broker_message, chain};
use names::encode;

const API: &str = "/admin/v2";

/// A client of the Pulsar admin REST API. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct PulsarAdmin {
    http: reqwest::Client,
    /// The admin URL without a trailing `/`, e.g. `http://127.0.0.1:8080`.
    base: String,
    /// Where plain topic names live.
    default_namespace: NamespaceName,
}

impl std::fmt::Debug for PulsarAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token lives in the client's default headers, marked sensitive; never shown.
        f.debug_struct("PulsarAdmin")
            .field("url", &without_credentials(&self.base))
            .field("default_namespace", &self.default_namespace.to_string())
            .finish_non_exhaustive()
    }
}

fn config_error(key: &str, reason: impl Into<String>) -> AdminError {
    AdminError::invalid(format!("{CONFIG_PREFIX}.{key}"), reason)
}

impl PulsarAdmin {
    /// A client for `config.admin_url`, with the configuration's token (`auth.token` or
    /// `auth.token_file`, sent as a bearer token), TLS options (for `https://`), tenant and
    /// namespace (for plain topic names) and timeouts (`connect_timeout_ms` to connect,
    /// `operation_timeout_ms` per call). Nothing is sent yet.
    ///
    /// `auth.oauth2` is not supported by this client and is refused with an error.
    pub fn new(config: &PulsarConfig) -> Result<Self, AdminError> {
        let url = config.admin_url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(config_error(
                "admin_url",
                format!(
                    "must start with http:// or https:// (got `{}`)",
                    without_credentials(url)
                ),
            ));
        }
        let default_namespace = NamespaceName {
            tenant: config.tenant.clone(),
            namespace: config.namespace.clone(),
        };
        let mut builder = reqwest::Client::builder()
            .default_headers(auth_headers(config)?)
            .connect_timeout(config.connect_timeout())
            .timeout(config.operation_timeout())
            .user_agent(concat!("bento-pulsar-admin/", env!("CARGO_PKG_VERSION")));
        builder = with_tls(builder, config)?;
        let http = builder.build().map_err(|e| {
            config_error(
                "admin_url",
                format!("cannot build an HTTP client: {}", chain(&e)),
            )
        })?;
        Ok(Self {
            http,
            base: url.to_owned(),
            default_namespace,
        })
    }

    /// A client for the admin API at `url` (e.g. `http://127.0.0.1:8080`), without
    /// authentication, with the default timeouts and `public/default` for plain topic names.
    pub fn from_url(url: &str) -> Result<Self, AdminError> {
        Self::new(&PulsarConfig {
            admin_url: url.to_owned(),
            ..PulsarConfig::default()
        })
    }

    /// The admin URL this client calls.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The full name of `topic` as this client reads it (see the module documentation).
    pub fn topic_name(&self, topic: &str) -> Result<TopicName, AdminError> {
        TopicName::parse(topic, &self.default_namespace)
    }

    /// Sends one call; the body of a success, or an [`AdminError`] naming the call.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<Vec<u8>, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let connection = |error: reqwest::Error| {
            let reason = if error.is_timeout() {
                format!("no answer in time: {}", chain(&error))
            } else {
                chain(&error)
            };
            AdminError::Connection {
                method: method.to_string(),
                url: without_credentials(&url),
                reason: reason.replace(&url, &without_credentials(&url)),
            }
        };
        let response = request.send().await.map_err(connection)?;
        let status = response.status();
        let body = response.bytes().await.map_err(connection)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(AdminError::Status {
                method: method.to_string(),
                path,
                status: status.as_u16(),
                message: broker_message(status.as_u16(), &body),
            })
        }
    }

    /// GETs `path` and reads its JSON body.
    async fn get_json<T: DeserializeOwned>(&self, path: String) -> Result<T, AdminError> {
        let body = self.send(Method::GET, path.clone(), None::<&()>).await?;
        decode(&path, &body)
    }

    /// GETs `path` and reads its JSON body; an empty body or `null` (a policy not set) is
    /// `None`.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        path: String,
    ) -> Result<Option<T>, AdminError> {
        let body = self.send(Method::GET, path.clone(), None::<&()>).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode(&path, &body)
    }
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        let shown: String = String::from_utf8_lossy(body).chars().take(200).collect();
        AdminError::Decode {
            method: "GET".into(),
            path: path.to_owned(),
            reason: format!("{e} (body: {shown})"),
        }
    })
}

/// `url` without a `user:password@` part, for messages.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn segment(name: &str, what: &str) -> Result<String, AdminError> {
    if name.trim().is_empty() || name.contains('/') {
        return Err(AdminError::invalid(
            format!("{what} `{name}`"),
            "must be a non-empty name without `/`",
        ));
    }
    Ok(encode(name))
}

fn ns(namespace: &str) -> Result<NamespaceName, AdminError> {
    NamespaceName::parse(namespace)
}

fn token(config: &PulsarConfig) -> Result<Option<String>, AdminError> {
    let auth = &config.auth;
    if auth.oauth2.is_some() {
        return Err(config_error(
            "auth.oauth2",
            "is not supported by the admin client; give it a token (auth.token or auth.token_file)",
        ));
    }
    auth.read_token()
        .map_err(|e| AdminError::invalid(e.key(), e.message()))
}

/// The bearer token of `auth.token` or `auth.token_file`, as a default header, if configured.
fn auth_headers(config: &PulsarConfig) -> Result<HeaderMap, AdminError> {
    let mut headers = HeaderMap::new();
    if let Some(token) = token(config)? {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            config_error(
                "auth.token",
                "contains characters not allowed in an HTTP header",
            )
        })?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// `builder` trusting the certificates of `tls.trust_cert_path` and checking host names as
/// `tls.hostname_verification` and `tls.allow_insecure` say.
fn with_tls(
    mut builder: reqwest::ClientBuilder,
    config: &PulsarConfig,
) -> Result<reqwest::ClientBuilder, AdminError> {
    let tls = &config.tls;
    if tls.allow_insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let mut trusted = Vec::new();
    if let Some(path) = &tls.trust_cert_path {
        let pem = std::fs::read(path).map_err(|e| {
            config_error(
                "tls.trust_cert_path",
                format!("cannot read `{}`: {e}", path.display()),
            )
        })?;
        trusted = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            config_error(
                "tls.trust_cert_path",
                format!(
                    "`{}` holds no readable PEM certificate: {e}",
                    path.display()
                ),
            )
        })?;
    }
    if !tls.hostname_verification && !tls.allow_insecure {
        // The TLS library checks names against the trusted certificates only, then.
        if trusted.is_empty() {
            return Err(config_error(
                "tls.hostname_verification",
                "false needs tls.trust_cert_path for the admin client (the certificates \
                 to trust without checking the host name)",
            ));
        }
        builder = builder
            .tls_certs_only(trusted)
            .tls_danger_accept_invalid_hostnames(true);
    } else {
        for certificate in trusted {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        assert_eq!(
            without_credentials("https://admin:s3cret@pulsar:8443/admin/v2/tenants"),
            "https://pulsar:8443/admin/v2/tenants"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:8080/admin/v2/x@y"),
            "http://127.0.0.1:8080/admin/v2/x@y"
        );
    }

    #[test]
    fn bad_urls_and_names_are_refused_before_sending() {
        let error = PulsarAdmin::from_url("pulsar://127.0.0.1:6650").err();
        assert!(
            error
                .as_ref()
                .is_some_and(|e| e.to_string().starts_with("messaging.pulsar.admin_url:")),
            "{error:?}"
        );
        assert!(segment("a/b", "tenant").is_err());
        assert!(segment(" ", "tenant").is_err());
    }

    #[test]
    fn debug_never_shows_the_token() -> Result<(), AdminError> {
        let admin = PulsarAdmin::new(&PulsarConfig {
            auth: crate::AuthConfig {
                token: Some("secret-token-value".into()),
                ..crate::AuthConfig::default()
            },
            ..PulsarConfig::default()
        })?;
        let shown = format!("{admin:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(shown.contains("127.0.0.1:8080"), "{shown}");
        Ok(())
    }
}
