//! # bento-pulsar
//!
//! Bento's [Apache Pulsar](https://pulsar.apache.org) backend: a
//! [`MessageBus`](bento_application::MessageBus) on the [`pulsar`] crate (tokio runtime).
//!
//! - Topics are `persistent://<tenant>/<namespace>/<topic>`; each event type has its own topic
//!   by default ([`TopicsConfig`] maps types elsewhere or onto one shared topic).
//! - Envelope metadata travels in message properties named by
//!   [`bento_application::wire`]; the ordering key is the message key; the occurrence time is
//!   the event time; delayed publishes use Pulsar's delayed delivery.
//! - Publishing returns once the broker stored the message. Producers are created per topic on
//!   first use, each with a unique name.
//! - Subscriptions run Bento's dispatcher. A retryable failure is republished, with a delivery
//!   time, to the subscription's retry topic `<topic>-<subscription>-RETRY` (which the
//!   subscription also reads) and only then acknowledged; a message that cannot be handled is
//!   stored on the dead-letter topic, then acknowledged. Nothing blocks the subscription, and a
//!   crash at any point leads at worst to a redelivery.
//!
//! See `docs/pulsar.md` for configuration keys, naming and what was verified on a broker.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bento_application::BusError> {
//! use std::sync::Arc;
//! use bento_pulsar::{PulsarBus, PulsarConfig};
//!
//! let config = PulsarConfig {
//!     service_url: "pulsar://127.0.0.1:6650".into(),
//!     ..PulsarConfig::default()
//! };
//! let bus: Arc<dyn bento_application::MessageBus> = Arc::new(PulsarBus::connect(config).await?);
//! # Ok(()) }
//! ```

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

pub mod admin;
mod batch_acks;
mod bus;
mod client;
mod config;
mod consumer;
mod detached;
mod diagnose;
mod error;
pub mod message_id;
mod namespaces;
#[cfg(feature = "oauth2")]
mod oauth2;
mod producer;
mod schema;
mod topics;

pub use admin::{AdminError, PulsarAdmin};
pub use batch_acks::BatchAcknowledgement;
pub use bus::PulsarBus;
pub use client::connect_client;
pub use config::{
    AuthConfig, BatchAckSetting, CONFIG_PREFIX, Compression, ConsumerConfig, OAuth2Config,
    ProducerConfig, PulsarConfig, TlsConfig, TopicsConfig,
};
pub use error::ConfigError;
pub use topics::retry_topic;
