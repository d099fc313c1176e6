//! Settings of the Pulsar backend, read from `[messaging.pulsar]` in `bento.toml` or from
//! `BENTO_MESSAGING__PULSAR__*` environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::topics;

/// Where [`PulsarConfig`] sits in the service configuration; error messages name keys under it.
pub const CONFIG_PREFIX: &str = "messaging.pulsar";

/// Settings of the Pulsar backend.
///
/// Every field has a default that works against a local standalone broker, so an empty
/// `[messaging.pulsar]` table is valid. Unknown keys are refused, so that a typo does not
/// silently fall back to a default.
///
/// ```
/// use bento_pulsar::PulsarConfig;
///
/// let config = PulsarConfig {
///     service_url: "pulsar://broker:6650".into(),
///     ..PulsarConfig::default()
/// };
/// config.validate().expect("valid");
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PulsarConfig {
    /// Binary protocol URL: `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub service_url: String,
    /// Admin REST URL (`http://host:8080`), for tools that manage tenants, namespaces and
    /// subscriptions; the bus calls it for consumer lag and, with
    /// [`PulsarConfig::create_namespaces`], to create namespaces.
    pub admin_url: String,
    /// Pulsar tenant of topics given by plain name.
    pub tenant: String,
    /// Pulsar namespace (within the tenant) of topics given by plain name.
    pub namespace: String,
    /// How event types map to topics.
    pub topics: TopicsConfig,
    /// Publish an envelope whose `tenant` is set to that Pulsar tenant instead of
    /// [`PulsarConfig::tenant`] (same namespace and topic name). Off by default: the tenant and
    /// its namespace must exist on the cluster before anything is published there (or
    /// [`PulsarConfig::create_namespaces`] be on).
    pub tenant_from_envelope: bool,
    /// Create a topic's tenant (on all clusters) and namespace through the admin API
    /// ([`PulsarConfig::admin_url`]) the first time the bus publishes or subscribes to a topic
    /// of theirs, if they do not exist. Off by default: creating tenants usually takes the
    /// cluster's superuser, and a typo in a tenant name should fail rather than create one.
    pub create_namespaces: bool,
    /// Authentication; none by default.
    pub auth: AuthConfig,
    /// TLS options for `pulsar+ssl://` URLs.
    pub tls: TlsConfig,
    /// How long connecting, and creating a producer or a consumer, may take before the bus
    /// reports an error, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long the broker may take to confirm a publish (or other request), in milliseconds.
    pub operation_timeout_ms: u64,
    /// Producer tuning.
    pub producer: ProducerConfig,
    /// Consumer tuning.
    pub consumer: ConsumerConfig,
}

impl Default for PulsarConfig {
    fn default() -> Self {
        Self {
            service_url: "pulsar://127.0.0.1:6650".into(),
            admin_url: "http://127.0.0.1:8080".into(),
            tenant: "public".into(),
            namespace: "default".into(),
            topics: TopicsConfig::default(),
            tenant_from_envelope: false,
            create_namespaces: false,
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            connect_timeout_ms: 10_000,
            operation_timeout_ms: 30_000,
            producer: ProducerConfig::default(),
            consumer: ConsumerConfig::default(),
        }
    }
}

impl fmt::Debug for PulsarConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PulsarConfig")
            .field("service_url", &self.service_url)
            .field("admin_url", &self.admin_url)
            .field("tenant", &self.tenant)
            .field("namespace", &self.namespace)
            .field("topics", &self.topics)
            .field("tenant_from_envelope", &self.tenant_from_envelope)
            .field("create_namespaces", &self.create_namespaces)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("producer", &self.producer)
            .field("consumer", &self.consumer)
            .finish()
    }
}

/// How event types map to topics.
///
/// By default each event type has a topic of its own, named like the type. `event_types` names
/// a different topic for some types; `shared` puts every other type on one topic, where
/// subscribers tell the types apart by the `bento-event-type` property.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Event type → topic (plain name, or a full `persistent://tenant/namespace/topic`).
    pub event_types: BTreeMap<String, String>,
    /// One topic for every event type not in `event_types`.
    pub shared: Option<String>,
}

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
                    ConfigError::new(
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

/// Payload compression of published messages; consumers decompress whatever they receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
    /// zlib.
    Zlib,
    /// Snappy.
    Snappy,
}

/// Producer tuning.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Group messages sent close together into one broker entry. Off by default: `publish`
    /// waits for the broker's receipt, so a lone publish would wait for the batch to fill or
    /// time out; see `docs/pulsar.md` for what batching changes for key-shared subscriptions.
    pub batching: bool,
    /// Most messages in one batch.
    pub batch_max_messages: u32,
    /// Most payload bytes in one batch.
    pub batch_max_bytes: usize,
    /// Longest a message waits for its batch to fill, in milliseconds.
    pub batch_max_delay_ms: u64,
    /// Payload compression.
    pub compression: Compression,
    /// Messages that may wait to be written to one broker connection; publishing waits when
    /// they are all taken.
    pub max_pending_messages: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batching: false,
            batch_max_messages: 1000,
            batch_max_bytes: 128 * 1024,
            batch_max_delay_ms: 10,
            compression: Compression::None,
            max_pending_messages: 1000,
        }
    }
}

/// Consumer tuning.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Messages the broker may push to one consumer ahead of the handlers (flow permits).
    pub receiver_queue_size: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            receiver_queue_size: 1000,
        }
    }
}

impl PulsarConfig {
    /// [`PulsarConfig::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`PulsarConfig::operation_timeout_ms`] as a duration.
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }

    /// Checks every setting; the error names the offending key in full, e.g.
    /// `messaging.pulsar.service_url: must start with pulsar:// or pulsar+ssl://`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.service_url;
        let Some(rest) = url
            .strip_prefix("pulsar://")
            .or_else(|| url.strip_prefix("pulsar+ssl://"))
        else {
            return Err(ConfigError::new(
                "service_url",
                format!("must start with pulsar:// or pulsar+ssl:// (got `{url}`)"),
            ));
        };
        if rest.trim_end_matches('/').is_empty() {
            return Err(ConfigError::new("service_url", "names no host"));
        }
        if !(self.admin_url.starts_with("http://") || self.admin_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "admin_url",
                format!(
                    "must start with http:// or https:// (got `{}`)",
                    self.admin_url
                ),
            ));
        }
        topics::check_segment(&self.tenant).map_err(|why| ConfigError::new("tenant", why))?;
        topics::check_segment(&self.namespace).map_err(|why| ConfigError::new("namespace", why))?;
        for (event_type, topic) in &self.topics.event_types {
            topics::check_topic(topic).map_err(|why| {
                ConfigError::new(format!("topics.event_types.\"{event_type}\""), why)
            })?;
        }
        if let Some(shared) = &self.topics.shared {
            topics::check_topic(shared).map_err(|why| ConfigError::new("topics.shared", why))?;
        }
        self.validate_auth()?;
        more_than_zero("connect_timeout_ms", self.connect_timeout_ms)?;
        more_than_zero("operation_timeout_ms", self.operation_timeout_ms)?;
        let producer = &self.producer;
        if producer.batching {
            if producer.batch_max_messages < 2 {
                return Err(ConfigError::new(
                    "producer.batch_max_messages",
                    "must be at least 2 when batching is on",
                ));
            }
            more_than_zero("producer.batch_max_bytes", producer.batch_max_bytes)?;
            if producer.batch_max_delay_ms == 0 {
                return Err(ConfigError::new(
                    "producer.batch_max_delay_ms",
                    "must be more than 0 when batching is on (a lone message would wait forever)",
                ));
            }
        }
        more_than_zero(
            "producer.max_pending_messages",
            producer.max_pending_messages,
        )?;
        more_than_zero(
            "consumer.receiver_queue_size",
            self.consumer.receiver_queue_size,
        )?;
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let methods = [
            auth.token.is_some(),
            auth.token_file.is_some(),
            auth.oauth2.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError::new(
                "auth",
                "set only one of token, token_file and oauth2",
            ));
        }
        if auth.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::new("auth.token", "is empty"));
        }
        if let Some(oauth2) = &auth.oauth2 {
            if !cfg!(feature = "oauth2") {
                return Err(ConfigError::new(
                    "auth.oauth2",
                    "needs bento-pulsar built with its `oauth2` cargo feature",
                ));
            }
            if !(oauth2.issuer_url.starts_with("http://")
                || oauth2.issuer_url.starts_with("https://"))
            {
                return Err(ConfigError::new(
                    "auth.oauth2.issuer_url",
                    "must be an http:// or https:// URL",
                ));
            }
            match (
                &oauth2.client_id,
                &oauth2.client_secret,
                &oauth2.credentials_url,
            ) {
                (Some(_), Some(_), None) => {}
                (None, None, Some(url)) if url.starts_with("file:") || url.starts_with("data:") => {
                }
                (None, None, Some(_)) => {
                    return Err(ConfigError::new(
                        "auth.oauth2.credentials_url",
                        "must be a file: or data: URL",
                    ));
                }
                _ => {
                    return Err(ConfigError::new(
                        "auth.oauth2",
                        "set client_id and client_secret, or credentials_url alone",
                    ));
                }
            }
            // Creating namespaces goes through the admin REST API, whose client takes a token
            // only: refused here rather than failing at the first publish.
            if self.create_namespaces {
                return Err(ConfigError::new(
                    "create_namespaces",
                    "needs the admin API, which Bento's admin client cannot call with \
                     auth.oauth2 (it takes auth.token or auth.token_file); create the tenant and \
                     namespace beforehand and turn create_namespaces off",
                ));
            }
        }
        Ok(())
    }
}

/// Refuses a zero `value` for `key`.
fn more_than_zero<T: Default + PartialEq>(key: &str, value: T) -> Result<(), ConfigError> {
    if value == T::default() {
        Err(ConfigError::new(key, "must be more than 0"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_point_at_a_local_broker() {
        let config = PulsarConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.service_url, "pulsar://127.0.0.1:6650");
        assert_eq!(config.tenant, "public");
        assert_eq!(config.namespace, "default");
    }

    #[test]
    fn errors_name_the_full_key() {
        let config = PulsarConfig {
            service_url: "http://broker:6650".into(),
            ..PulsarConfig::default()
        };
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with(
                "messaging.pulsar.service_url: must start with pulsar:// or pulsar+ssl://"
            ),
            "{error}"
        );

        let mut config = PulsarConfig::default();
        config.producer.batching = true;
        config.producer.batch_max_delay_ms = 0;
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("messaging.pulsar.producer.batch_max_delay_ms:"),
            "{error}"
        );

        let config = PulsarConfig {
            operation_timeout_ms: 0,
            ..PulsarConfig::default()
        };
        assert_eq!(
            config.validate().err().map(|e| e.to_string()).as_deref(),
            Some("messaging.pulsar.operation_timeout_ms: must be more than 0")
        );

        let mut config = PulsarConfig::default();
        config.topics.event_types.insert("a".into(), "x/y".into());
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("messaging.pulsar.topics.event_types.\"a\":"),
            "{error}"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = PulsarConfig {
            auth: AuthConfig {
                token: Some("eyJhbGciOiJIUzI1NiJ9.secret-token".into()),
                ..AuthConfig::default()
            },
            ..PulsarConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");

        let oauth2 = OAuth2Config {
            issuer_url: "https://auth.example.com".into(),
            client_id: Some("bento".into()),
            client_secret: Some("hunter2".into()),
            ..OAuth2Config::default()
        };
        let shown = format!("{oauth2:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("bento"), "{shown}");
        let inline = OAuth2Config {
            credentials_url: Some("data:application/json,{\"client_secret\":\"hunter2\"}".into()),
            ..oauth2
        };
        assert!(!format!("{inline:?}").contains("hunter2"));
    }

    #[cfg(feature = "oauth2")]
    #[test]
    fn oauth2_with_namespace_creation_is_refused_naming_the_key() {
        let mut config = PulsarConfig::default();
        config.auth.oauth2 = Some(OAuth2Config {
            issuer_url: "https://auth.example.com".into(),
            client_id: Some("bento".into()),
            client_secret: Some("hunter2".into()),
            ..OAuth2Config::default()
        });
        assert_eq!(config.validate(), Ok(()), "OAuth2 alone is fine");
        config.create_namespaces = true;
        let error = config
            .validate()
            .err()
            .unwrap_or_else(|| panic!("OAuth2 with create_namespaces accepted"));
        assert_eq!(error.key(), "messaging.pulsar.create_namespaces");
        assert!(error.message().contains("auth.oauth2"), "{error}");
    }

    #[test]
    fn a_partial_table_fills_in_defaults_and_unknown_keys_are_refused() {
        let config: PulsarConfig = serde_json::from_str(
            r#"{"service_url": "pulsar+ssl://broker:6651",
                "producer": {"batching": true, "compression": "zstd"},
                "topics": {"event_types": {"users.user-created": "users"}}}"#,
        )
        .unwrap_or_else(|e| panic!("valid table refused: {e}"));
        assert_eq!(config.service_url, "pulsar+ssl://broker:6651");
        assert_eq!(config.producer.compression, Compression::Zstd);
        assert!(config.producer.batching);
        assert_eq!(config.producer.batch_max_messages, 1000, "defaults kept");
        assert_eq!(config.tenant, "public");
        assert_eq!(
            config
                .topics
                .event_types
                .get("users.user-created")
                .map(String::as_str),
            Some("users")
        );
        assert_eq!(config.validate(), Ok(()));

        let typo = serde_json::from_str::<PulsarConfig>(r#"{"service_urll": "pulsar://x:6650"}"#);
        assert!(typo.is_err_and(|e| e.to_string().contains("service_urll")));
        let nested = serde_json::from_str::<PulsarConfig>(r#"{"producer": {"compresion": "lz4"}}"#);
        assert!(nested.is_err_and(|e| e.to_string().contains("compresion")));
        let unknown =
            serde_json::from_str::<PulsarConfig>(r#"{"producer": {"compression": "brotli"}}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("brotli")));
    }

    #[test]
    fn only_one_auth_method() {
        let config = PulsarConfig {
            auth: AuthConfig {
                token: Some("t".into()),
                token_file: Some("/run/secrets/pulsar".into()),
                oauth2: None,
            },
            ..PulsarConfig::default()
        };
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("messaging.pulsar.auth:"), "{error}");
    }
}
