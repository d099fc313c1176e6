//! Creating producers: the options from the configuration, and one producer of a topic.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bento_application::backend::OpenGate;
use parking_lot::RwLock;
use pulsar::ProducerOptions;
use pulsar::proto::ServerError;

use super::{Client, DeclareError, Producers, RawProducer};
use crate::config::{Compression, PulsarConfig};
use crate::error::{describe, server_error};
use crate::namespaces::Namespaces;
use crate::schema::{Registry, TopicSchema};

impl Producers {
    pub(crate) fn new(client: Client, config: &PulsarConfig) -> Self {
        let compression = compression(config.producer.compression);
        let plain = ProducerOptions {
            compression: Some(compression),
            // Wait for room on the connection rather than fail with "slow down".
            block_queue_if_full: true,
            ..ProducerOptions::default()
        };
        let batching = config.producer.batching.then(|| ProducerOptions {
            batch_size: Some(config.producer.batch_max_messages),
            batch_byte_size: Some(config.producer.batch_max_bytes),
            batch_timeout: Some(Duration::from_millis(config.producer.batch_max_delay_ms)),
            ..plain.clone()
        });
        Self {
            client,
            batching,
            plain,
            create_timeout: config.connect_timeout(),
            // The client fails a receipt after the operation timeout (resending across a
            // reconnect meanwhile); this bound only guards against one that never resolves.
            receipt_timeout: config.operation_timeout() + config.connect_timeout(),
            topics: RwLock::new(HashMap::new()),
            declared: RwLock::new(HashMap::new()),
            copies: RwLock::new(HashMap::new()),
            own_schema: RwLock::new(HashSet::new()),
            registry: Registry::new(config),
            namespaces: Namespaces::new(config),
            gate: OpenGate::new(),
        }
    }

    /// A producer of `topic` carrying `schema`, batching or not; the tenant and namespace made
    /// first when the bus is configured to.
    pub(super) async fn build(
        &self,
        topic: &str,
        schema: Option<&TopicSchema>,
        batching: bool,
    ) -> Result<RawProducer, DeclareError> {
        self.ensure_namespace(topic)
            .await
            .map_err(DeclareError::Failed)?;
        let mut options = match (batching, &self.batching) {
            (true, Some(options)) => options.clone(),
            _ => self.plain.clone(),
        };
        options.schema = schema.map(|schema| schema.schema.clone());
        // Unique per producer instance: with broker deduplication on, a producer that reused an
        // earlier name would start again at sequence id 0 and the broker would drop its
        // messages as duplicates.
        let name = format!("bento-{}", uuid::Uuid::now_v7().simple());
        let build = self
            .client
            .producer()
            .with_topic(topic)
            .with_name(name.as_str())
            .with_options(options)
            .build();
        // Never cancelled mid-connect: see `detached`.
        match crate::detached::within(self.create_timeout, build).await {
            Some(Ok(producer)) => {
                tracing::debug!(topic, producer = %name, batching, "created producer");
                Ok(producer)
            }
            Some(Err(error)) if server_error(&error) == Some(ServerError::IncompatibleSchema) => {
                Err(DeclareError::Incompatible(describe(&error)))
            }
            Some(Err(error)) => Err(DeclareError::Failed(format!(
                "could not create a producer: {}",
                describe(&error)
            ))),
            None => Err(DeclareError::Failed(format!(
                "could not create a producer within {:?} (connect_timeout_ms)",
                self.create_timeout
            ))),
        }
    }
}

fn compression(choice: Compression) -> pulsar::compression::Compression {
    use pulsar::compression as c;
    match choice {
        Compression::None => c::Compression::None,
        Compression::Lz4 => c::Compression::Lz4(c::CompressionLz4::default()),
        Compression::Zstd => c::Compression::Zstd(c::CompressionZstd::default()),
        Compression::Zlib => c::Compression::Zlib(c::CompressionZlib::default()),
        Compression::Snappy => c::Compression::Snappy(c::CompressionSnappy::default()),
    }
}
