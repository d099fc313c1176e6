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
//! let bus = bento.bus(); // a Bus<Codecs> over memory, Pulsar or Kafka, as configured
//! # Ok(()) }
//! ```
//!
//! Backends other than memory are cargo features (`pulsar`, `kafka`); a configuration naming
//! one that is not compiled in fails at startup with an error naming the feature.
//!
//! [`Bento::asyncapi`] is the service's AsyncAPI document; with `BENTO_ASYNCAPI=1` the service
//! is built offline to print it (see [`asyncapi`]).
//!
//! [`prelude`] has what a service needs in one import. With the `testing` feature,
//! [`testing`] is the test harness: an in-memory service that records what was published,
//! consumed and dead-lettered and waits for it, under tokio's paused time too (see
//! `docs/testing.md`).
//!
//! ## The guide
//!
//! The guide (`docs/guide` in the repository, built with `cargo xtask docs`) builds a service
//! with this crate from `cargo new` to production, one chapter per subject:
//! [events and aggregates](https://github.com/bento-rs/bento/blob/main/docs/guide/src/events-and-aggregates.md),
//! [the unit of work and the outbox](https://github.com/bento-rs/bento/blob/main/docs/guide/src/unit-of-work.md),
//! [handlers, state and routing](https://github.com/bento-rs/bento/blob/main/docs/guide/src/handlers.md),
//! [retries, dead letters and replay](https://github.com/bento-rs/bento/blob/main/docs/guide/src/retries.md),
//! [testing](https://github.com/bento-rs/bento/blob/main/docs/guide/src/testing.md),
//! [configuration and backends](https://github.com/bento-rs/bento/blob/main/docs/guide/src/configuration.md),
//! [observability](https://github.com/bento-rs/bento/blob/main/docs/guide/src/observability.md),
//! [operating it](https://github.com/bento-rs/bento/blob/main/docs/guide/src/operating.md) and
//! [upgrading schemas](https://github.com/bento-rs/bento/blob/main/docs/guide/src/upgrading-schemas.md).

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

pub mod asyncapi;
mod build;
mod config;
mod error;
mod store;

pub use bento_codec::{AvroCodec, Codecs, Format, Json, ProtobufCodec};
pub use bento_memory::{MemoryBus, MemoryConfig};
/// Metrics, tracing and the metrics endpoint (`[observability]`).
pub use bento_observability as observability;
pub use bento_observability::{
    ConsumerParent, MetricsConfig, ObservabilityConfig, SpanLevel, TracingConfig,
};
/// The outbox and the durable inbox (`[outbox]`, `[inbox]`), with the sqlx driver they use.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use bento_sqlx as sqlx;
/// The test harness and the recorder (`testing` feature): see [`bento_testkit::testing`].
#[cfg(feature = "testing")]
pub use bento_testkit::testing;
pub use build::{Bento, build_message_bus};
pub use config::{
    BackendKind, CodecConfig, Config, CrashGuardConfig, EventTypeCodec, InboxConfig,
    MemorySettings, MessagingConfig, OutboxConfig, SchemaSetting,
};
pub use error::RuntimeError;

/// The typed bus, [`bento_application::Bus`] itself: `Bus` alone is the bus a service gets
/// from the runtime ([`Bento::bus`]), whose codec is [`Codecs`] as configured in `[codec]`
/// (register Avro or Protobuf event types with `bus.codec().register(..)`); `Bus::new(port,
/// Json)` builds one with another codec, a `Bus<Json>`.
pub type Bus<C = Codecs> = bento_application::Bus<C>;

/// Everything a service usually needs, in one import: the runtime and its bus, events and
/// aggregates, handlers and their policies, the unit of work, layers, and (with the `testing`
/// feature) the test harness.
pub mod prelude {
    pub use crate::{Bento, Bus, Codecs, RuntimeError};
    pub use bento_application::layer::{self, Layer};
    pub use bento_application::{
        BoxError, BusError, Context, DeadLetterPolicy, DeliveryObserver, EnvelopeHandler, Handler,
        HandlerError, Idempotent, Inbox, MessageBus, Observation, Outcome, PublishOptions,
        Requester, RetryPolicy, Router, State, Subscription, SubscriptionKind, SubscriptionSpec,
        Transaction, UnitOfWork, UnitOfWorkError, with_state,
    };
    pub use bento_domain::{AggregateRoot, DomainEvent, Envelope, EventRecorder, MessageId};

    #[cfg(feature = "testing")]
    pub use crate::testing::{Expect, Recorder, TestHarness};
}

/// The README's code sample, compiled as a doctest so it cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// docs/testing.md and docs/memory.md, compiled (and run) as doctests.
#[doc = include_str!("../../../docs/testing.md")]
#[doc = include_str!("../../../docs/memory.md")]
#[cfg(all(doctest, feature = "testing"))]
pub struct TestingDocs;

/// The guide's chapters (docs/guide/src), compiled and run as doctests. Their listings of the
/// tutorial's files are `ignore` here: the tutorial crate's own build and tests check those.
#[doc = include_str!("../../../docs/guide/src/getting-started.md")]
#[doc = include_str!("../../../docs/guide/src/events-and-aggregates.md")]
#[doc = include_str!("../../../docs/guide/src/handlers.md")]
#[doc = include_str!("../../../docs/guide/src/retries.md")]
#[doc = include_str!("../../../docs/guide/src/testing.md")]
#[doc = include_str!("../../../docs/guide/src/configuration.md")]
#[doc = include_str!("../../../docs/guide/src/observability.md")]
#[doc = include_str!("../../../docs/guide/src/operating.md")]
#[doc = include_str!("../../../docs/guide/src/upgrading-schemas.md")]
#[cfg(all(doctest, feature = "testing"))]
pub struct GuideDocs;

/// docs/envelope.md, compiled and run as doctests.
#[doc = include_str!("../../../docs/envelope.md")]
#[cfg(doctest)]
pub struct EnvelopeDocs;

/// docs/handlers.md, compiled and run as doctests.
#[doc = include_str!("../../../docs/handlers.md")]
#[cfg(all(doctest, feature = "testing"))]
pub struct HandlersDocs;

/// docs/middleware.md, compiled and run as doctests.
#[doc = include_str!("../../../docs/middleware.md")]
#[cfg(doctest)]
pub struct MiddlewareDocs;

/// docs/delivery.md's code (the crash guard), compiled as a doctest.
#[doc = include_str!("../../../docs/delivery.md")]
#[cfg(doctest)]
pub struct DeliveryDocs;

/// docs/observability.md's code, compiled (and run where it binds no port, installs no global
/// subscriber and needs no broker) as doctests.
#[doc = include_str!("../../../docs/observability.md")]
#[cfg(all(doctest, feature = "pulsar"))]
pub struct ObservabilityDocs;

/// docs/asyncapi.md's code, compiled and run as a doctest.
#[doc = include_str!("../../../docs/asyncapi.md")]
#[cfg(doctest)]
pub struct AsyncApiDocs;

/// docs/codecs.md, compiled and run as doctests.
#[doc = include_str!("../../../docs/codecs.md")]
#[cfg(doctest)]
pub struct CodecsDocs;

/// docs/outbox.md, compiled (and run where it needs no server) as doctests.
#[doc = include_str!("../../../docs/outbox.md")]
#[cfg(all(doctest, feature = "sqlite", feature = "postgres"))]
pub struct OutboxDocs;

/// docs/pulsar.md's code, compiled as a doctest.
#[doc = include_str!("../../../docs/pulsar.md")]
#[cfg(all(doctest, feature = "pulsar"))]
pub struct PulsarDocs;

/// docs/kafka.md's code, compiled as a doctest.
#[doc = include_str!("../../../docs/kafka.md")]
#[cfg(all(doctest, feature = "kafka"))]
pub struct KafkaDocs;

/// The guide's chapter on the unit of work and the outbox, whose listings use SQLite.
#[doc = include_str!("../../../docs/guide/src/unit-of-work.md")]
#[cfg(all(doctest, feature = "testing", feature = "sqlite"))]
pub struct GuideOutboxDocs;
