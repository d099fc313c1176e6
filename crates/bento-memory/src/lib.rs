//! # bento-memory
//!
//! An in-process [`MessageBus`](bento_application::MessageBus) with the semantics of Apache
//! Pulsar, so that what works here works on a broker:
//! - topics, each with any number of durable subscriptions that all get every message;
//! - the consumers of one subscription share its messages per
//!   [`SubscriptionKind`](bento_application::SubscriptionKind): shared (compete), exclusive
//!   (one consumer only), failover (one active, the others on standby), key-shared (by key);
//! - ack, retry with backoff and redelivery count, dead-letter topics, delayed delivery;
//! - a subscription created before a publish gets the message; messages that arrive while a
//!   subscription has no consumer wait for one; unacknowledged messages of a consumer that goes
//!   away are redelivered to the others.
//!
//! Payloads are encoded bytes, exactly as on a broker, so codec mistakes show up in tests.
//! Each topic can also retain what was published to it ([`MemoryBus::published`]), which makes
//! the bus a convenient harness for a service's own tests.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod budget;
mod bus;
mod consumer;
mod subscription;

pub use bus::{MemoryBus, MemoryConfig};
