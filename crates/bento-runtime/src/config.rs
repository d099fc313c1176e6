use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use bento_codec::{Codecs, Format};
use bento_observability::ObservabilityConfig;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// Environment variable naming the configuration file (default `bento.toml`).
pub const CONFIG_PATH_VAR: &str = "BENTO_CONFIG";
/// The file read when [`CONFIG_PATH_VAR`] is unset; a missing file means "all defaults".
pub const DEFAULT_CONFIG_PATH: &str = "bento.toml";

/// Top-level sections; `BENTO_` variables outside them (like `BENTO_CONFIG`) are not config.
const SECTIONS: [&str; 5] = [
    "messaging__",
    "codec__",
    "observability__",
    "outbox__",
    "inbox__",
];

/// A Bento service's configuration. Unknown keys are rejected, so a typo fails at startup.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The message bus.
    pub messaging: MessagingConfig,
    /// How events are encoded.
    pub codec: CodecConfig,
    /// Metrics, tracing, logs and the metrics/health endpoint (`[observability]`).
    pub observability: ObservabilityConfig,
    /// The transactional outbox (`[outbox]`); absent: the service has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxConfig>,
    /// The durable inbox (`[inbox]`); absent: the service has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox: Option<InboxConfig>,
    /// Counting the deaths of the process while a message was in a handler (`[crash_guard]`);
    /// absent: not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_guard: Option<CrashGuardConfig>,
    /// Where the values came from, so that backend sections are read with their sources and
    /// errors name the file or variable.
    #[serde(skip)]
    sources: Option<Figment>,
}

/// `[crash_guard]`: a message found in a handler when the process died `max_crashes` times is
/// dead-lettered instead of handled again (`bento_application::layer::CrashGuardLayer`, see
/// docs/delivery.md). Installed around every subscription of the service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrashGuardConfig {
    /// The journal's directory, created if missing: one per running instance of the service,
    /// on a volume that outlives the process.
    pub directory: std::path::PathBuf,
    /// Deaths after which a message is dead-lettered (3).
    #[serde(default = "default_max_crashes")]
    pub max_crashes: u32,
}

fn default_max_crashes() -> u32 {
    3
}

/// `[codec]`: the wire format of events.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodecConfig {
    /// Preferred format: `json` (default), `avro` or `protobuf`. Event types registered with a
    /// codec of that format use it; all others are JSON.
    pub default: Format,
    /// Per event type: its format, overriding `default` (`"users.user-created" = "avro"`), or a
    /// table with `format` and `schema` (`"audit.line" = { schema = "none" }`).
    pub event_types: BTreeMap<String, EventTypeCodec>,
}

/// How one event type is encoded: `"avro"`, or `{ format = "avro", schema = "none" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum EventTypeCodec {
    /// The format alone; the event type has a schema.
    Format(Format),
    /// Format and schema.
    Settings {
        /// The format; absent: `codec.default`.
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<Format>,
        /// Whether the event type has a schema in the broker's registry.
        schema: SchemaSetting,
    },
}

/// The table form of [`EventTypeCodec`], read with its own errors (unknown keys named).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTypeSettings {
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    schema: SchemaSetting,
}

impl<'de> Deserialize<'de> for EventTypeCodec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = EventTypeCodec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a format (json, avro, protobuf) or a table with `format` and `schema`")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                value.parse().map(EventTypeCodec::Format).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let settings = EventTypeSettings::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(EventTypeCodec::Settings {
                    format: settings.format,
                    schema: settings.schema,
                })
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// `schema` of an event type in `[codec.event_types]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SchemaSetting {
    /// Its codec's schema, registered on the first publish where the broker has a registry
    /// (Pulsar); for JSON the one derived from the serde type.
    #[default]
    Auto,
    /// No schema: published as plain bytes of its format.
    None,
}

impl From<Format> for EventTypeCodec {
    fn from(format: Format) -> Self {
        EventTypeCodec::Format(format)
    }
}

impl CodecConfig {
    /// The service's codecs as configured; register Avro and Protobuf types on it.
    pub fn codecs(&self) -> Codecs {
        let mut codecs = Codecs::new(self.default);
        for (event_type, codec) in &self.event_types {
            let (format, schema) = match *codec {
                EventTypeCodec::Format(format) => (Some(format), SchemaSetting::Auto),
                EventTypeCodec::Settings { format, schema } => (format, schema),
            };
            if let Some(format) = format {
                codecs = codecs.with_format(event_type, format);
            }
            if schema == SchemaSetting::None {
                codecs = codecs.without_schema(event_type);
            }
        }
        codecs
    }
}

/// Which backend carries the messages, and each backend's settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingConfig {
    /// `memory` (default), `pulsar` or `kafka`.
    pub backend: BackendKind,
    /// Settings of the in-memory bus.
    pub memory: MemorySettings,
    /// Settings of the Pulsar backend (`[messaging.pulsar]`); read only when it is compiled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<figment::value::Dict>,
    /// Settings of the Kafka backend (`[messaging.kafka]`); read only when it is compiled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<figment::value::Dict>,
}

/// The message bus implementations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendKind {
    /// In-process; the default.
    #[default]
    Memory,
    /// Apache Pulsar.
    Pulsar,
    /// Apache Kafka.
    Kafka,
}

impl BackendKind {
    /// The name used in configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Pulsar => "pulsar",
            BackendKind::Kafka => "kafka",
        }
    }
}

/// `[outbox]`: events stored with the business data and relayed to the bus after the commit
/// (docs/outbox.md). Needs the `sqlite` or `postgres` cargo feature.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user@host:port/db`.
    pub database_url: String,
    /// Create or update Bento's tables at start-up.
    pub migrate: bool,
    /// Run the relay in this process (several processes may; one publishes at a time).
    pub relay: bool,
    /// Rows the relay publishes per round.
    pub batch_size: usize,
    /// How often the relay looks for rows nothing told it about, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long published rows are kept, in seconds.
    pub retention_secs: u64,
    /// On SQLite, how long the relay's lease lasts without renewal, in milliseconds.
    pub lease_ttl_ms: u64,
    /// The longest pause of the relay between attempts while the broker or the database
    /// fails, in milliseconds.
    pub max_backoff_ms: u64,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://bento.db".to_string(),
            migrate: true,
            relay: true,
            batch_size: 500,
            poll_interval_ms: 500,
            retention_secs: 3600,
            lease_ttl_ms: 10_000,
            max_backoff_ms: 10_000,
            max_connections: 10,
        }
    }
}

/// `[inbox]`: handlers run inside a transaction that records their message, so a message
/// delivered twice has its effects once (docs/outbox.md). Needs the `sqlite` or `postgres`
/// cargo feature.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// The database; absent: the outbox's (handlers then write where the service's data is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Create or update Bento's tables at start-up (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrate: Option<bool>,
    /// How long a handled message is remembered, in seconds (default 7 days): keep it longer
    /// than any redelivery or replay can take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
}

/// `[messaging.memory]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// Messages each topic retains for inspection (`MemoryBus::published`); 0 = none.
    pub retain_per_topic: usize,
    /// Bytes of unsettled messages one subscription holds before publishers wait (64 MiB).
    pub max_bytes_per_subscription: usize,
    /// Delayed messages held before delayed publishes wait (10,000).
    pub max_delayed_messages: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        let defaults = bento_memory::MemoryConfig::default();
        Self {
            retain_per_topic: defaults.retain_per_topic,
            max_bytes_per_subscription: defaults.max_bytes_per_subscription,
            max_delayed_messages: defaults.max_delayed_messages,
        }
    }
}

impl Config {
    /// Reads the file named by `BENTO_CONFIG` (default `bento.toml`, optional), then `BENTO_`
    /// environment variables, which win.
    pub fn load() -> Result<Self, RuntimeError> {
        let path = std::env::var_os(CONFIG_PATH_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        if std::env::var_os(CONFIG_PATH_VAR).is_some() && !path.exists() {
            return Err(RuntimeError::Config(format!(
                "{CONFIG_PATH_VAR} names {}, which does not exist",
                path.display()
            )));
        }
        Self::from_figment(Self::figment(&path))
    }

    /// The layered sources: defaults, then the TOML file at `path` (if it exists), then the
    /// environment.
    pub fn figment(path: &Path) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(
                Env::prefixed("BENTO_")
                    .filter(|key| {
                        let key = key.as_str().to_ascii_lowercase();
                        SECTIONS.iter().any(|section| key.starts_with(section))
                    })
                    .split("__"),
            )
    }

    /// Extracts and validates a configuration from any figment.
    pub fn from_figment(figment: Figment) -> Result<Self, RuntimeError> {
        let mut config: Config = figment.extract()?;
        config.sources = Some(figment);
        Ok(config)
    }

    /// Parses the `[messaging.<backend>]` section into the adapter's own settings type, e.g.
    /// `bento_pulsar::PulsarConfig` (not yet validated); an absent section gives its defaults.
    ///
    /// Errors are [`RuntimeError::Config`] naming each offending key in full
    /// (`messaging.pulsar.service_urll`) and where its value came from (the file, or the exact
    /// `BENTO_` variable).
    ///
    /// ```
    /// use bento_runtime::{BackendKind, Config};
    /// use figment::Figment;
    /// use figment::providers::{Format, Toml};
    ///
    /// // An adapter's settings type, e.g. `bento_pulsar::PulsarConfig`.
    /// #[derive(Default, serde::Deserialize)]
    /// #[serde(default)]
    /// struct PulsarSettings {
    ///     service_url: String,
    /// }
    ///
    /// let toml = "[messaging.pulsar]\nservice_url = \"pulsar://broker:6650\"";
    /// let config = Config::from_figment(Figment::from(Toml::string(toml)))?;
    /// let settings: PulsarSettings = config.backend_settings(BackendKind::Pulsar)?;
    /// assert_eq!(settings.service_url, "pulsar://broker:6650");
    /// # Ok::<(), bento_runtime::RuntimeError>(())
    /// ```
    pub fn backend_settings<T: serde::de::DeserializeOwned>(
        &self,
        backend: BackendKind,
    ) -> Result<T, RuntimeError> {
        let key = format!("messaging.{}", backend.as_str());
        match &self.sources {
            Some(figment) if figment.contains(&key) => {
                figment.focus(&key).extract().map_err(|error| {
                    let prefix = ["messaging", backend.as_str()];
                    RuntimeError::from_errors(error.into_iter().map(|mut e| {
                        e.path = prefix.iter().map(|s| s.to_string()).chain(e.path).collect();
                        e
                    }))
                })
            }
            _ => {
                let table = match backend {
                    BackendKind::Pulsar => &self.messaging.pulsar,
                    BackendKind::Kafka => &self.messaging.kafka,
                    BackendKind::Memory => &None,
                };
                let table = table.clone().unwrap_or_default();
                let nested = Figment::from(Serialized::defaults(table));
                nested
                    .extract()
                    .map_err(|error| RuntimeError::Config(format!("[{key}]: {error}")))
            }
        }
    }
}

#[cfg(test)]
// figment's Jail fixes the closure's error type, which clippy finds large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_memory() {
        figment::Jail::expect_with(|_jail| {
            let config = Config::from_figment(Config::figment(Path::new("missing.toml")))
                .map_err(|e| e.to_string())?;
            assert_eq!(config.messaging.backend, BackendKind::Memory);
            Ok(())
        });
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bento.toml",
                "[messaging]\nbackend = \"kafka\"\n[messaging.memory]\nretain_per_topic = 5\n",
            )?;
            jail.set_env("BENTO_MESSAGING__BACKEND", "pulsar");
            jail.set_env("BENTO_TEST_PULSAR_URL", "ignored, not a config key");
            jail.set_env("BENTO_CODEC__DEFAULT", "avro");
            let config = Config::from_figment(Config::figment(Path::new("bento.toml")))
                .map_err(|e| e.to_string())?;
            assert_eq!(config.messaging.backend, BackendKind::Pulsar);
            assert_eq!(config.messaging.memory.retain_per_topic, 5);
            assert_eq!(config.codec.default, Format::Avro);
            Ok(())
        });
    }

    #[test]
    fn event_types_take_a_format_or_a_table_with_schema_none() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bento.toml",
                "[codec.event_types]\n\
                 \"users.user-created\" = \"avro\"\n\
                 \"audit.line\" = { schema = \"none\" }\n\
                 \"shipping.shipped\" = { format = \"protobuf\", schema = \"none\" }\n",
            )?;
            let config = Config::from_figment(Config::figment(Path::new("bento.toml")))
                .map_err(|e| e.to_string())?;
            let codecs = config.codec.codecs();
            assert_eq!(codecs.selected("users.user-created"), Format::Avro);
            assert!(!codecs.is_without_schema("users.user-created"));
            assert_eq!(codecs.selected("audit.line"), Format::Json);
            assert!(codecs.is_without_schema("audit.line"));
            assert_eq!(codecs.selected("shipping.shipped"), Format::Protobuf);
            assert!(codecs.is_without_schema("shipping.shipped"));
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bento.toml",
                "[codec.event_types]\n\"a.b\" = { schema = \"never\" }\n",
            )?;
            let error = Config::from_figment(Config::figment(Path::new("bento.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("a.b") && error.contains("never"), "{error}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bento.toml",
                "[codec.event_types]\n\"c.d\" = { schemas = \"none\" }\n",
            )?;
            let error = Config::from_figment(Config::figment(Path::new("bento.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.contains("c.d") && error.contains("schemas"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn observability_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bento.toml",
                "[observability.tracing]\nconsumer_parent = \"link\"\n",
            )?;
            jail.set_env("BENTO_OBSERVABILITY__METRICS__ADDRESS", "0.0.0.0:9464");
            let config = Config::from_figment(Config::figment(Path::new("bento.toml")))
                .map_err(|e| e.to_string())?;
            let observability = &config.observability;
            assert_eq!(
                observability.metrics.address.as_deref(),
                Some("0.0.0.0:9464")
            );
            assert!(observability.metrics.enabled);
            assert_eq!(
                observability.tracing.consumer_parent,
                bento_observability::ConsumerParent::Link
            );
            assert_eq!(observability.tracing.otlp_endpoint, None);
            Ok(())
        });
    }

    #[test]
    fn outbox_and_inbox_sections() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bento.toml",
                "[outbox]\ndatabase_url = \"sqlite://orders.db\"\nbatch_size = 100\n[inbox]\n",
            )?;
            jail.set_env("BENTO_OUTBOX__DATABASE_URL", "postgres://app@db/orders");
            let config = Config::from_figment(Config::figment(Path::new("bento.toml")))
                .map_err(|e| e.to_string())?;
            let outbox = config.outbox.clone().unwrap_or_default();
            assert_eq!(outbox.database_url, "postgres://app@db/orders");
            assert_eq!(outbox.batch_size, 100);
            assert!(outbox.relay && outbox.migrate);
            assert!(
                config
                    .inbox
                    .is_some_and(|inbox| inbox.database_url.is_none())
            );
            jail.create_file("typo.toml", "[outbox]\ndatabase_ulr = \"x\"\n")?;
            let error = Config::from_figment(Config::figment(Path::new("typo.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("database_ulr"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BENTO_MESSAGING__BACKEND", "rabbitmq");
            let error = Config::from_figment(Config::figment(Path::new("none.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("messaging.backend"), "{error}");
            assert!(error.contains("rabbitmq"), "{error}");
            assert!(error.contains("BENTO_MESSAGING__BACKEND"), "{error}");

            jail.create_file("typo.toml", "[messaging]\nbackedn = \"memory\"\n")?;
            let error = Config::from_figment(Config::figment(Path::new("typo.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("backedn"), "{error}");
            Ok(())
        });
    }
}
