//! Checking a configuration: each mistake is reported with the full key at fault.

use super::{CONFIG_PREFIX, KafkaConfig, SecurityConfig};
use crate::topics;

pub use bento_application::backend::ConfigError;

/// A setting of [`KafkaConfig`] (below `messaging.kafka`) is invalid.
pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(CONFIG_PREFIX, key, message)
}

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
    /// Checks the configuration; the error names the full key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let servers: Vec<&str> = self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(invalid("bootstrap_servers", "must not be empty"));
        }
        for server in servers {
            let port = server
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
                _ => {
                    return Err(invalid(
                        "bootstrap_servers",
                        format!("`{server}` is not a host:port pair"),
                    ));
                }
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(invalid("client_id", "must not be empty"));
        }
        for (key, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("delivery_timeout_ms", self.delivery_timeout_ms),
            ("subscribe_timeout_ms", self.subscribe_timeout_ms),
            ("commit_interval_ms", self.commit_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
            if value > i32::MAX as u64 {
                return Err(invalid(key, format!("must be at most {}", i32::MAX)));
            }
        }
        if self.partitions == 0 {
            return Err(invalid("partitions", "must be at least 1"));
        }
        if self.partitions > 100_000 {
            return Err(invalid("partitions", "must be at most 100000"));
        }
        if self.replication_factor == Some(0) {
            return Err(invalid("replication_factor", "must be at least 1"));
        }
        for (event_type, topic) in &self.topics {
            if let Err(why) = topics::check_name(topic) {
                return Err(invalid(format!("topics.\"{event_type}\""), why));
            }
        }
        self.security.validate()?;
        if let Some(registry) = &self.schema_registry {
            registry.validate()?;
        }
        for (section, map) in [("producer", &self.producer), ("consumer", &self.consumer)] {
            for key in map.keys() {
                if let Some((_, why)) = CONTROLLED.iter().find(|(k, _)| k == key) {
                    return Err(invalid(
                        format!("{section}.\"{key}\""),
                        format!("Bento sets this property itself ({why}); remove it"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl SecurityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let sasl = self.protocol.uses_sasl();
        match (sasl, self.sasl_mechanism) {
            (true, None) => {
                return Err(invalid(
                    "security.sasl_mechanism",
                    "is required with a sasl_* protocol (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "security.sasl_mechanism",
                    "is set, but security.protocol is not sasl_plaintext or sasl_ssl",
                ));
            }
            _ => {}
        }
        if sasl {
            if self.username.as_deref().is_none_or(|u| u.is_empty()) {
                return Err(invalid(
                    "security.username",
                    "is required with a sasl_* protocol",
                ));
            }
            if self.password.is_none() {
                return Err(invalid(
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
                    return Err(invalid(
                        key,
                        "is set, but security.protocol is not ssl or sasl_ssl",
                    ));
                }
                if !path.is_file() {
                    return Err(invalid(
                        key,
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(invalid(
                "security.ssl_key_location",
                "the client certificate and key go together: set both or neither",
            ));
        }
        Ok(())
    }
}
