//! `[messaging.kafka.schema_registry]`: the Confluent-compatible schema registry the Kafka
//! backend registers event schemas with, and whose wire format its records then carry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::scalars::lenient_string;
use super::validate::{ConfigError, invalid};

/// Settings of the schema registry (`[messaging.kafka.schema_registry]` in `bento.toml`, or
/// `BENTO_MESSAGING__KAFKA__SCHEMA_REGISTRY__<KEY>`). Without this table nothing is registered
/// and records carry the codec's bytes alone, as before.
///
/// `Debug` never shows the password.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// Base URL of the registry's Confluent API, e.g. `http://localhost:8081` for Confluent's
    /// registry or `http://localhost:8081/apis/ccompat/v7` for Apicurio's.
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    /// How an event type's subject is named.
    pub subject_name_strategy: SubjectNameStrategy,
    /// The compatibility level Bento sets on each subject it registers a schema under, before
    /// registering it; unset leaves the subject's level to the registry (its default, or what
    /// an operator set).
    pub compatibility: Option<Compatibility>,
    /// How long one request to the registry may take, in milliseconds.
    pub timeout_ms: u64,
    /// User name for HTTP basic authentication; none when empty.
    #[serde(deserialize_with = "lenient_string")]
    pub username: String,
    /// Password for HTTP basic authentication.
    #[serde(deserialize_with = "lenient_string")]
    pub password: String,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            subject_name_strategy: SubjectNameStrategy::default(),
            compatibility: None,
            timeout_ms: 10_000,
            username: String::new(),
            password: String::new(),
        }
    }
}

impl fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &self.url)
            .field("subject_name_strategy", &self.subject_name_strategy)
            .field("compatibility", &self.compatibility)
            .field("timeout_ms", &self.timeout_ms)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl SchemaRegistryConfig {
    /// A default configuration for the registry at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Time allowed for one request.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks the settings; errors name the key below `messaging.kafka`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(invalid(
                "schema_registry.url",
                "must be set when [messaging.kafka.schema_registry] is present (e.g. \
                 \"http://localhost:8081\")",
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "schema_registry.url",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("schema_registry.timeout_ms", "must be above 0"));
        }
        if self.username.is_empty() && !self.password.is_empty() {
            return Err(invalid(
                "schema_registry.username",
                "is empty while schema_registry.password is set",
            ));
        }
        Ok(())
    }
}

/// `subject_name_strategy`: the subject an event type's schema is registered under, as
/// Confluent's serializers name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubjectNameStrategy {
    /// `<topic>-value` (Confluent's `TopicNameStrategy`): one schema, and its versions, per
    /// topic.
    #[default]
    Topic,
    /// The record's full name (`RecordNameStrategy`): one subject per event type, whatever
    /// topic it goes to; several event types can then share a topic.
    Record,
    /// `<topic>-<record full name>` (`TopicRecordNameStrategy`).
    TopicRecord,
}

impl SubjectNameStrategy {
    /// The subject of `record` (the record's or message's full name) on `topic`.
    pub fn subject(self, topic: &str, record: &str) -> String {
        match self {
            SubjectNameStrategy::Topic => format!("{topic}-value"),
            SubjectNameStrategy::Record => record.to_owned(),
            SubjectNameStrategy::TopicRecord => format!("{topic}-{record}"),
        }
    }

    /// Confluent's name of the strategy, for messages.
    pub fn confluent_name(self) -> &'static str {
        match self {
            SubjectNameStrategy::Topic => "TopicNameStrategy",
            SubjectNameStrategy::Record => "RecordNameStrategy",
            SubjectNameStrategy::TopicRecord => "TopicRecordNameStrategy",
        }
    }
}

/// `compatibility`: a subject's compatibility level, as the registry's API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Compatibility {
    /// No check.
    None,
    /// Readers of the new schema read data of the previous one.
    Backward,
    /// ... of all previous ones.
    BackwardTransitive,
    /// Readers of the previous schema read data of the new one.
    Forward,
    /// ... every previous schema.
    ForwardTransitive,
    /// Backward and forward.
    Full,
    /// Backward and forward, with all previous ones.
    FullTransitive,
}

impl Compatibility {
    /// The level as the registry's API writes it (`BACKWARD`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_confluents_strategies() {
        let record = "acme.users.UserCreated";
        assert_eq!(
            SubjectNameStrategy::Topic.subject("users", record),
            "users-value"
        );
        assert_eq!(SubjectNameStrategy::Record.subject("users", record), record);
        assert_eq!(
            SubjectNameStrategy::TopicRecord.subject("users", record),
            "users-acme.users.UserCreated"
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let message = |config: SchemaRegistryConfig| {
            config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(message(SchemaRegistryConfig::default()).contains("schema_registry.url"));
        assert!(message(SchemaRegistryConfig::new("localhost:8081")).contains("not an http"));
        let no_time = SchemaRegistryConfig {
            timeout_ms: 0,
            ..SchemaRegistryConfig::new("http://localhost:8081")
        };
        assert!(message(no_time).contains("schema_registry.timeout_ms"));
        assert_eq!(
            SchemaRegistryConfig::new("http://localhost:8081").validate(),
            Ok(())
        );
    }

    #[test]
    fn the_password_stays_out_of_debug() {
        let config = SchemaRegistryConfig {
            username: "bento".into(),
            password: "s3cret".into(),
            ..SchemaRegistryConfig::new("http://localhost:8081")
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
