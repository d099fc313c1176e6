//! # bento-application
//!
//! The ports of a Bento service and the policies around them. Adapters (the in-memory bus,
//! Pulsar, Kafka, codecs) implement these traits; services are written against them.
//!
//! - [`MessageBus`]: the object-safe port every backend implements (`Arc<dyn MessageBus>`).
//! - [`Bus`]: the typed facade services use: `bus.publish(&event)`,
//!   `bus.subscribe::<UserCreated, _>(handler)`.
//! - [`Handler`]: a plain `async fn(Event, Context) -> Result<(), HandlerError>`.
//! - [`RetryPolicy`], [`DeadLetterPolicy`], [`SubscriptionSpec`]: plain data.
//! - [`dispatch`]: the engine every backend's consumer runs: routing, bounded concurrency with
//!   per-key order, retries, dead letters, panics as failures, graceful shutdown.
//! - [`UnitOfWork`]: publishes what aggregates recorded, only after the commit succeeded.
//! - [`wire`]: the header names every backend writes, so other languages can read them.

mod bus;
mod codec;
pub mod dispatch;
mod error;
mod handler;
mod inbox;
mod policy;
mod request;
mod schema;
mod subscription;
mod typed;
mod uow;
pub mod wire;

pub use bento_domain as domain;
pub use bus::{DeliverAt, MessageBus, PublishOptions};
pub use codec::{Codec, Encoded};
pub use dispatch::{Delivery, Settle};
pub use error::{BusError, CodecError, ErrorKind, HandlerError};
pub use handler::{Context, EnvelopeHandler, Handler, Router};
pub use inbox::{Idempotent, Inbox};
pub use policy::{DeadLetter, DeadLetterPolicy, FailureKind, RetryPolicy};
pub use request::Requester;
pub use schema::{SchemaDefinition, SchemaKind};
pub use subscription::{Source, Subscription, SubscriptionKind, SubscriptionSpec};
pub use typed::{Bus, TypedRouter};
pub use uow::{Transaction, UnitOfWork, UnitOfWorkError};
