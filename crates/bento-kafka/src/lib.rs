//! # bento-kafka
//!
//! Bento's Apache Kafka backend, on librdkafka (`rdkafka`):
//! - [`KafkaBus`] implements [`MessageBus`](bento_application::MessageBus): an idempotent
//!   producer (`acks=all`), the ordering key as the record key, the envelope metadata in record
//!   headers named as in [`bento_application::wire`];
//! - each subscription is a member of the consumer group named after it, feeding the shared
//!   dispatcher (bounded concurrency, per-key order); offsets are committed only up to the
//!   oldest unfinished record of each partition;
//! - retries go to per-subscription retry topics (`<topic>.<group>.retry.<n>`) whose records
//!   wait for their due time by pausing the partition; dead letters go to the policy's
//!   dead-letter topic with the original payload and headers; delayed publishes wait in
//!   `<topic>.delayed` the same way;
//! - with a schema registry (`[messaging.kafka.schema_registry]`), event schemas are registered
//!   under Confluent subjects (checked for compatibility there) and records carry the Confluent
//!   wire format (magic byte, schema id, Protobuf message indexes), which consumers take off;
//! - [`KafkaAdmin`] creates, lists, describes and deletes topics and reports consumer-group lag.
//!
//! Configuration ([`KafkaConfig`]) is read from `[messaging.kafka]`; see `docs/kafka.md`.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod admin;
mod bus;
mod config;
mod consumer;
mod context;
mod producer;
mod registry;
pub mod topics;

pub use admin::{GroupInfo, KafkaAdmin, OffsetReset, PartitionInfo, PartitionLag, TopicInfo};
pub use bus::KafkaBus;
pub use config::{
    CONFIG_PREFIX, Compatibility, Compression, ConfigError, KafkaConfig, Property, Protocol,
    SaslMechanism, SchemaRegistryConfig, SecurityConfig, SubjectNameStrategy,
};
pub use registry::{RegisteredSchema, RegistryClient, SubjectVersion};

/// Record headers the Kafka backend adds to those of [`bento_application::wire`].
pub mod headers {
    /// On delayed and retry records: when the record is due, RFC 3339 UTC. Consumers hold the
    /// record (pausing its partition) until then.
    pub const DELIVER_AT: &str = "bento-kafka-deliver-at";
    /// On retry records: the partition of the record as first received.
    pub const ORIGINAL_PARTITION: &str = "bento-kafka-original-partition";
    /// On retry records: the offset of the record as first received.
    pub const ORIGINAL_OFFSET: &str = "bento-kafka-original-offset";
    /// On dead letters: the partition of the original record.
    pub const DLQ_ORIGINAL_PARTITION: &str = "bento-dlq-original-partition";
    /// On dead letters: the offset of the original record.
    pub const DLQ_ORIGINAL_OFFSET: &str = "bento-dlq-original-offset";
}
