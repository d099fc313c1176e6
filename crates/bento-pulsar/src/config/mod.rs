//! Settings of the Pulsar backend, read from `[messaging.pulsar]` in `bento.toml` or from
//! `BENTO_MESSAGING__PULSAR__*` environment variables.
//!
//! The settings are here; `security` holds authentication and TLS, `validate` the checks.

mod security;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

pub use security::{AuthConfig, OAuth2Config, TlsConfig};

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

/// Payload compression of published messages; consumers decompress whatever they receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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
    /// How the messages of a batch are acknowledged (`consumer.batch_acknowledgement`).
    pub batch_acknowledgement: BatchAckSetting,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            receiver_queue_size: 1000,
            batch_acknowledgement: BatchAckSetting::Auto,
        }
    }
}

/// How the messages of a batch are acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BatchAckSetting {
    /// Ask the broker (admin API) whether it takes acknowledgements by batch index, at the
    /// first subscription; by index if it does, the whole batch at once otherwise (also when
    /// it cannot be asked, e.g. with OAuth2).
    #[default]
    Auto,
    /// By batch index: only for brokers with `acknowledgmentAtBatchIndexLevelEnabled=true`.
    ByIndex,
    /// The whole batch once all its messages are settled: safe on any broker, at the price of
    /// redelivering a partly handled batch after a crash.
    WholeBatch,
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
