//! # bento-runtime
//!
//! The one crate that knows every adapter. It reads the service's configuration with figment
//! (`bento.toml`, then `BENTO_` environment variables, nested keys split by `__`) and builds the
//! message bus the configuration names, so that switching from the in-memory bus to Pulsar or
//! Kafka is a configuration change, never a code change:
//!
//! ```no_run
//! # async fn demo() -> Result<(), bento_runtime::RuntimeError> {
//! let bento = bento_runtime::Bento::from_env().await?;
//! let bus = bento.bus(); // Bus<Json> over memory, Pulsar or Kafka, as configured
//! # Ok(()) }
//! ```
//!
//! Backends other than memory are cargo features (`pulsar`, `kafka`); a configuration naming
//! one that is not compiled in fails at startup with an error naming the feature.

mod build;
mod config;
mod error;
mod store;

pub use bento_codec::{AvroCodec, Codecs, Format, ProtobufCodec};
/// Metrics, tracing and the metrics endpoint (`[observability]`).
pub use bento_observability as observability;
pub use bento_observability::{
    ConsumerParent, MetricsConfig, ObservabilityConfig, SpanLevel, TracingConfig,
};
/// The outbox and the durable inbox (`[outbox]`, `[inbox]`), with the sqlx driver they use.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use bento_sqlx as sqlx;
pub use build::{Bento, build_message_bus};
pub use config::{
    BackendKind, CodecConfig, Config, InboxConfig, MemorySettings, MessagingConfig, OutboxConfig,
};
pub use error::RuntimeError;

/// The typed bus a service gets from the runtime; its codec is [`Codecs`] as configured in
/// `[codec]` (register Avro or Protobuf event types with `bus.codec().register(..)`).
pub type Bus = bento_application::Bus<Codecs>;

/// Everything a service usually needs, in one import.
pub mod prelude {
    pub use crate::{Bento, Bus, RuntimeError};
    pub use bento_application::layer::{self, Layer};
    pub use bento_application::{
        BusError, Context, DeadLetterPolicy, EnvelopeHandler, HandlerError, MessageBus, Outcome,
        PublishOptions, RetryPolicy, State, Subscription, SubscriptionKind, SubscriptionSpec,
        UnitOfWork, with_state,
    };
    pub use bento_domain::{AggregateRoot, DomainEvent, Envelope, EventRecorder, MessageId};
}

/// The README's code sample, compiled as a doctest so it cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
