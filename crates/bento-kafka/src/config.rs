//! `[messaging.kafka]`: the settings of the Kafka backend.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::topics;

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

/// `security.protocol`: how the connection to the brokers is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
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
    fn librdkafka(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    fn uses_ssl(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }
}

/// `security.sasl_mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
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
    fn librdkafka(self) -> &'static str {
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

/// `compression`: codec of produced batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
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

/// A passed-through librdkafka property value; TOML strings, integers, floats and booleans
/// are all accepted (`"linger.ms" = 5` and `"linger.ms" = "5"` mean the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property(pub String);

impl From<&str> for Property {
    fn from(value: &str) -> Self {
        Property(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Property {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor).map(Property)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// Environment variables arrive parsed (`BENTO_..._PASSWORD=1234` is a number); take any
/// scalar as a string.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(ScalarVisitor)
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct OptVisitor;
    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, number or boolean")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(ScalarVisitor).map(Some)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }
    deserializer.deserialize_option(OptVisitor)
}

/// A configuration mistake, naming the full key (`messaging.kafka.bootstrap_servers: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key below `messaging.kafka`, e.g. `security.username`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CONFIG_PREFIX}.{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// librdkafka properties Bento sets itself, with the reason, refused in `producer` / `consumer`.
const CONTROLLED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `bootstrap_servers` instead"),
    ("metadata.broker.list", "set `bootstrap_servers` instead"),
    ("client.id", "set `client_id` instead"),
    ("group.id", "the consumer group is the subscription name"),
    ("group.instance.id", "Bento manages group membership"),
    (
        "enable.auto.commit",
        "Bento commits offsets itself, only for finished messages",
    ),
    (
        "enable.auto.offset.store",
        "Bento stores offsets itself, only for finished messages",
    ),
    (
        "auto.offset.reset",
        "Bento positions new consumer groups itself",
    ),
    (
        "partition.assignment.strategy",
        "Bento uses cooperative-sticky assignment",
    ),
    (
        "group.protocol",
        "Bento uses the classic group protocol with cooperative-sticky assignment",
    ),
    (
        "enable.idempotence",
        "Bento's producer is always idempotent",
    ),
    (
        "acks",
        "Bento's producer always waits for all in-sync replicas",
    ),
    (
        "request.required.acks",
        "Bento's producer always waits for all in-sync replicas",
    ),
    ("transactional.id", "Bento does not use Kafka transactions"),
    ("message.timeout.ms", "set `delivery_timeout_ms` instead"),
    ("delivery.timeout.ms", "set `delivery_timeout_ms` instead"),
    ("compression.type", "set `compression` instead"),
    ("compression.codec", "set `compression` instead"),
    ("security.protocol", "set `security.protocol` instead"),
    ("sasl.mechanism", "set `security.sasl_mechanism` instead"),
    ("sasl.mechanisms", "set `security.sasl_mechanism` instead"),
    ("sasl.username", "set `security.username` instead"),
    ("sasl.password", "set `security.password` instead"),
    ("ssl.ca.location", "set `security.ssl_ca_location` instead"),
    (
        "ssl.certificate.location",
        "set `security.ssl_certificate_location` instead",
    ),
    (
        "ssl.key.location",
        "set `security.ssl_key_location` instead",
    ),
    (
        "ssl.key.password",
        "set `security.ssl_key_password` instead",
    ),
    (
        "enable.partition.eof",
        "Bento's consumer does not handle end-of-partition events",
    ),
];

impl KafkaConfig {
    /// A default configuration pointing at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            ..Self::default()
        }
    }

    /// Checks the configuration; the error names the full key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let servers: Vec<&str> = self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(ConfigError::new("bootstrap_servers", "must not be empty"));
        }
        for server in servers {
            let port = server
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
                _ => {
                    return Err(ConfigError::new(
                        "bootstrap_servers",
                        format!("`{server}` is not a host:port pair"),
                    ));
                }
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::new("client_id", "must not be empty"));
        }
        for (key, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("delivery_timeout_ms", self.delivery_timeout_ms),
            ("subscribe_timeout_ms", self.subscribe_timeout_ms),
            ("commit_interval_ms", self.commit_interval_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
            if value > i32::MAX as u64 {
                return Err(ConfigError::new(
                    key,
                    format!("must be at most {}", i32::MAX),
                ));
            }
        }
        if self.partitions == 0 {
            return Err(ConfigError::new("partitions", "must be at least 1"));
        }
        if self.partitions > 100_000 {
            return Err(ConfigError::new("partitions", "must be at most 100000"));
        }
        if self.replication_factor == Some(0) {
            return Err(ConfigError::new("replication_factor", "must be at least 1"));
        }
        for (event_type, topic) in &self.topics {
            if let Err(why) = topics::check_name(topic) {
                return Err(ConfigError::new(format!("topics.\"{event_type}\""), why));
            }
        }
        self.security.validate()?;
        for (section, map) in [("producer", &self.producer), ("consumer", &self.consumer)] {
            for key in map.keys() {
                if let Some((_, why)) = CONTROLLED.iter().find(|(k, _)| k == key) {
                    return Err(ConfigError::new(
                        format!("{section}.\"{key}\""),
                        format!("Bento sets this property itself ({why}); remove it"),
                    ));
                }
            }
        }
        Ok(())
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

    /// Properties shared by every client: brokers, id, security, timeouts.
    pub(crate) fn common(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_servers.trim())
            .set("client.id", &self.client_id)
            .set(
                "socket.connection.setup.timeout.ms",
                self.connect_timeout_ms.to_string(),
            )
            .set("security.protocol", self.security.protocol.librdkafka());
        let s = &self.security;
        if let Some(mechanism) = s.sasl_mechanism {
            config.set("sasl.mechanism", mechanism.librdkafka());
        }
        if let Some(username) = &s.username {
            config.set("sasl.username", username);
        }
        if let Some(password) = &s.password {
            config.set("sasl.password", password);
        }
        let paths = [
            ("ssl.ca.location", &s.ssl_ca_location),
            ("ssl.certificate.location", &s.ssl_certificate_location),
            ("ssl.key.location", &s.ssl_key_location),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                config.set(key, path.display().to_string());
            }
        }
        if let Some(password) = &s.ssl_key_password {
            config.set("ssl.key.password", password);
        }
        config
    }

    /// The idempotent producer's properties.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.common();
        // Send as soon as the broker connection is free rather than waiting 5 ms (librdkafka's
        // default) for more records: an awaited `publish` from a request handler returns in
        // about a round trip instead of the linger time, and `publish_batch` still fills
        // batches from the records queued while earlier requests are in flight (measured:
        // same `publish_all` rate, 7x the rate of awaited publishes from 16 tasks). A value
        // in `producer` wins.
        config.set("linger.ms", "0");
        for (key, value) in &self.producer {
            config.set(key, &value.0);
        }
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("compression.type", self.compression.librdkafka());
        if !self.producer.contains_key("partitioner") {
            // The Java client's partitioner: a key lands on the same partition whichever
            // client wrote it.
            config.set("partitioner", "murmur2_random");
        }
        config
    }

    /// A consumer's properties for consumer group `group`.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.common();
        // librdkafka stops fetching a partition whose prefetched records exceed
        // `queued.max.messages.kbytes` and, by default, looks again only a second later: a
        // consumer working through a backlog larger than that ran dry and idled for up to
        // `fetch.wait.max.ms` behind a long-poll of its other partitions. 10 ms keeps the queue
        // topped up at the cost of a cheap check. A value in `consumer` wins.
        config.set("fetch.queue.backoff.ms", "10");
        for (key, value) in &self.consumer {
            config.set(key, &value.0);
        }
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false");
        config
    }
}

impl SecurityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let sasl = self.protocol.uses_sasl();
        match (sasl, self.sasl_mechanism) {
            (true, None) => {
                return Err(ConfigError::new(
                    "security.sasl_mechanism",
                    "is required with a sasl_* protocol (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                ));
            }
            (false, Some(_)) => {
                return Err(ConfigError::new(
                    "security.sasl_mechanism",
                    "is set, but security.protocol is not sasl_plaintext or sasl_ssl",
                ));
            }
            _ => {}
        }
        if sasl {
            if self.username.as_deref().is_none_or(|u| u.is_empty()) {
                return Err(ConfigError::new(
                    "security.username",
                    "is required with a sasl_* protocol",
                ));
            }
            if self.password.is_none() {
                return Err(ConfigError::new(
                    "security.password",
                    "is required with a sasl_* protocol",
                ));
            }
        }
        let paths = [
            ("security.ssl_ca_location", &self.ssl_ca_location),
            (
                "security.ssl_certificate_location",
                &self.ssl_certificate_location,
            ),
            ("security.ssl_key_location", &self.ssl_key_location),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                if !self.protocol.uses_ssl() {
                    return Err(ConfigError::new(
                        key,
                        "is set, but security.protocol is not ssl or sasl_ssl",
                    ));
                }
                if !path.is_file() {
                    return Err(ConfigError::new(
                        key,
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(ConfigError::new(
                "security.ssl_key_location",
                "the client certificate and key go together: set both or neither",
            ));
        }
        Ok(())
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
                .is_err_and(|e| e.key == "security.sasl_mechanism")
        );
        config.security.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        assert!(
            config
                .validate()
                .is_err_and(|e| e.key == "security.username")
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
