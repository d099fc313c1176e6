//! # bento-application
//!
//! (A service uses these through `bento_runtime::prelude`; the guide,
//! [from `cargo new` to production](https://github.com/bento-rs/bento/blob/main/docs/guide/src/SUMMARY.md), shows how: its chapters on
//! [the unit of work](https://github.com/bento-rs/bento/blob/main/docs/guide/src/unit-of-work.md), [handlers](https://github.com/bento-rs/bento/blob/main/docs/guide/src/handlers.md) and
//! [retries and dead letters](https://github.com/bento-rs/bento/blob/main/docs/guide/src/retries.md) cover this crate.)
//!
//! The ports of a Bento service and the policies around them. Adapters (the in-memory bus,
//! Pulsar, Kafka, codecs) implement these traits; services are written against them.
//!
//! - [`MessageBus`]: the object-safe port every backend implements (`Arc<dyn MessageBus>`).
//! - [`Bus`]: the typed facade services use: `bus.publish(&event)`,
//!   `bus.subscribe("welcome-email", handler)`.
//! - [`Handler`]: a plain `async fn(Event, Context) -> Result<(), HandlerError>`.
//! - [`Outcome`]: how a delivery ends (ack, retry after a delay, dead letter), the value every
//!   layer of a handler stack returns.
//! - [`layer`]: behaviour around handlers, tower style: retry (its policy a trait), panic
//!   catching, timeouts, deduplication, rate limits; users add their own.
//! - [`RetryPolicy`], [`DeadLetterPolicy`], [`SubscriptionSpec`]: plain data.
//! - [`backend`]: for backend authors only: the dispatcher every backend's consumer runs
//!   (bounded concurrency with per-key order, settling the outcome of the handler stack,
//!   graceful shutdown) and the pieces every backend shares.
//! - [`UnitOfWork`]: publishes what aggregates recorded, only after the commit succeeded.
//! - [`wire`]: the header names every backend writes, so other languages can read them.
//! - [`Contract`]: what a service declared through its bus (what it sends, what it reads), for
//!   machine-readable contracts such as AsyncAPI.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

pub mod backend;
mod bus;
mod codec;
mod contract;
mod declarations;
mod error;
mod extensions;
mod handler;
mod inbox;
pub mod layer;
mod names;
mod observer;
mod outcome;
mod policy;
mod publish;
mod registry;
mod request;
mod schema;
mod subscriber;
mod subscription;
mod typed;
mod uow;
pub mod wire;

pub use bento_domain as domain;
pub use bus::{ConsumerLag, DeliverAt, HealthCheck, MessageBus, PublishOptions, SchemaRegistry};
pub use codec::{Codec, Encoded};
pub use contract::{Contract, MessageContract, ReceiveContract, SendContract};
pub use error::{BoxError, BusError, CodecError, ErrorKind, HandlerError};
pub use extensions::Extensions;
pub use handler::{Context, EnvelopeHandler, Handler, Router};
pub use inbox::{Idempotent, Inbox};
pub use layer::{Layer, Layers};
pub use observer::{DeliveryObserver, Observation};
pub use outcome::Outcome;
pub use policy::{DeadLetter, DeadLetterPolicy, FailureKind, RetryPolicy};
pub use publish::{BoxPublisher, Publication, PublishLayers, Publisher};
pub use request::Requester;
pub use schema::{SchemaDefinition, SchemaKind};
pub use subscriber::{HandlesEvent, Routes, State, Subscriber, WithState, with_state};
pub use subscription::{
    DEFAULT_SHUTDOWN_GRACE, SettleFailureHook, Source, Subscription, SubscriptionKind,
    SubscriptionSpec,
};
pub use typed::{Bus, TypedRouter};
pub use uow::{RecordedEvents, Transaction, UnitOfWork, UnitOfWorkError};
