//! `[messaging.kafka]`: the settings of the Kafka backend.
//!
//! The settings themselves are here; `security` holds the `[messaging.kafka.security]`
//! table, `scalars` the lenient parsing of values, `validate` the checks and `client` the
//! librdkafka properties the settings turn into.

mod client;
mod registry;
mod scalars;
mod security;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use registry::{Compatibility, SchemaRegistryConfig, SubjectNameStrategy};
pub use scalars::Property;
use scalars::lenient_string;
pub use security::{Protocol, SaslMechanism, SecurityConfig};
pub use validate::ConfigError;

/// Where the configuration lives in `bento.toml`; every validation error starts with it.
pub const CONFIG_PREFIX: &str = "messaging.kafka";

/// Settings of the Kafka backend, `[messaging.kafka]` in `bento.toml` (or
/// `BENTO_MESSAGING__KAFKA__<KEY>` in the environment).
///
/// Every field has a default, so an empty table connects to `localhost:9092` in plaintext.
/// `Debug` never shows the SASL password or the SSL key password.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of bootstrap brokers.
    #[serde(deserialize_with = "lenient_string")]
    pub bootstrap_servers: String,
    /// Client id sent to the brokers (shows up in broker logs and quotas).
    #[serde(deserialize_with = "lenient_string")]
    pub client_id: String,
    /// How to authenticate and encrypt.
    pub security: SecurityConfig,
    /// How long `connect` (the first metadata fetch) and admin calls may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long a publish may take until the broker acknowledged it, retries included, in
    /// milliseconds (librdkafka's `message.timeout.ms`).
    pub delivery_timeout_ms: u64,
    /// How long `subscribe` waits for the consumer group to hand this consumer its
    /// partitions, in milliseconds.
    pub subscribe_timeout_ms: u64,
    /// How often finished offsets are committed, in milliseconds (they are also committed on
    /// rebalance and shutdown).
    pub commit_interval_ms: u64,
    /// Compression of produced batches.
    pub compression: Compression,
    /// Event type to topic, for event types that do not go to the topic of their own name.
    pub topics: BTreeMap<String, String>,
    /// Partitions of topics Bento creates (event topics, delay, retry and dead-letter topics).
    pub partitions: u32,
    /// Replication factor of topics Bento creates; unset means the broker's default.
    pub replication_factor: Option<u16>,
    /// Create missing topics with the admin API (needs the `CREATE` ACL); when off, every
    /// topic (retry and delay topics included) must exist beforehand.
    pub create_topics: bool,
    /// Extra librdkafka producer properties, passed through (`"linger.ms" = "5"`).
    pub producer: BTreeMap<String, Property>,
    /// Extra librdkafka consumer properties, passed through (`"fetch.max.bytes" = "1048576"`).
    pub consumer: BTreeMap<String, Property>,
    /// The Confluent-compatible schema registry (`[messaging.kafka.schema_registry]`); none by
    /// default.
    pub schema_registry: Option<SchemaRegistryConfig>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".to_owned(),
            client_id: "bento".to_owned(),
            security: SecurityConfig::default(),
            connect_timeout_ms: 10_000,
            delivery_timeout_ms: 30_000,
            subscribe_timeout_ms: 30_000,
            commit_interval_ms: 500,
            compression: Compression::default(),
            topics: BTreeMap::new(),
            partitions: 4,
            replication_factor: None,
            create_topics: true,
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
            schema_registry: None,
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("security", &self.security)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("delivery_timeout_ms", &self.delivery_timeout_ms)
            .field("subscribe_timeout_ms", &self.subscribe_timeout_ms)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("compression", &self.compression)
            .field("topics", &self.topics)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("create_topics", &self.create_topics)
            .field("producer", &Redacted(&self.producer))
            .field("consumer", &Redacted(&self.consumer))
            .field("schema_registry", &self.schema_registry)
            .finish()
    }
}

/// Shows a property map with the values of secret-looking keys hidden.
struct Redacted<'a>(&'a BTreeMap<String, Property>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let secret = ["password", "secret", "token", "key.pem"]
                    .iter()
                    .any(|s| k.contains(s));
                (k, if secret { "<redacted>" } else { v.0.as_str() })
            }))
            .finish()
    }
}

/// `compression`: codec of produced batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    fn librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl KafkaConfig {
    /// A default configuration pointing at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            ..Self::default()
        }
    }

    /// Time allowed for the first metadata fetch and admin calls.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Time allowed for a publish.
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms)
    }

    /// Time `subscribe` waits for the partition assignment.
    pub fn subscribe_timeout(&self) -> Duration {
        Duration::from_millis(self.subscribe_timeout_ms)
    }

    /// Interval of the offset commits.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(KafkaConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_full_key() {
        let config = KafkaConfig::new(" ");
        let error = config.validate().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("messaging.kafka.bootstrap_servers: must not be empty")
        );
        let config = KafkaConfig::new("broker-without-port");
        assert!(
            config
                .validate()
                .is_err_and(|e| e.to_string().contains("not a host:port"))
        );
    }

    #[test]
    fn controlled_properties_are_refused() {
        let mut config = KafkaConfig::default();
        config
            .consumer
            .insert("enable.auto.commit".into(), "true".into());
        let error = config.validate().err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with("messaging.kafka.consumer.\"enable.auto.commit\": Bento sets"),
            "{error}"
        );
        let mut config = KafkaConfig::default();
        config
            .producer
            .insert("enable.idempotence".into(), "false".into());
        assert!(config.validate().is_err());
        let mut config = KafkaConfig::default();
        config.producer.insert("linger.ms".into(), "5".into());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn sasl_needs_mechanism_and_credentials() {
        let mut config = KafkaConfig::default();
        config.security.protocol = Protocol::SaslSsl;
        assert!(
            config
                .validate()
                .is_err_and(|e| e.relative_key() == "security.sasl_mechanism")
        );
        config.security.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        assert!(
            config
                .validate()
                .is_err_and(|e| e.relative_key() == "security.username")
        );
        config.security.username = Some("svc".into());
        config.security.password = Some("hunter2".into());
        assert_eq!(config.validate(), Ok(()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_keys() {
        let config: KafkaConfig = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": "k1:9092,k2:9092",
            "compression": "zstd",
            "security": {"protocol": "sasl_plaintext", "sasl_mechanism": "SCRAM-SHA-256",
                          "username": "u", "password": 1234},
            "producer": {"linger.ms": 5, "batch.size": "65536"},
            "topics": {"users.user-created": "users"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.security.password.as_deref(), Some("1234"));
        assert_eq!(
            config.producer.get("linger.ms"),
            Some(&Property("5".into()))
        );
        assert_eq!(config.partitions, 4);
        assert_eq!(config.validate(), Ok(()));
        let unknown = serde_json::from_value::<KafkaConfig>(serde_json::json!({"bootstrap": "x"}));
        assert!(unknown.is_err());
    }

    #[test]
    fn invalid_topic_mapping_is_refused() {
        let mut config = KafkaConfig::default();
        config.topics.insert("a".into(), "bad topic".into());
        assert!(
            config
                .validate()
                .is_err_and(|e| e.to_string().starts_with("messaging.kafka.topics.\"a\""))
        );
    }
}
