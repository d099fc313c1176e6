//! # bento-domain
//!
//! The innermost ring of a Bento service: domain events, the aggregate helper that records them,
//! and the [`Envelope`] that carries an encoded event with its metadata. Nothing here knows about
//! brokers, codecs or async runtimes.
//!
//! How a service uses them: the guide's chapter
//! [events and aggregates](https://github.com/bento-rs/bento/blob/main/docs/guide/src/events-and-aggregates.md).

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod aggregate;
mod envelope;
mod event;

pub use aggregate::{AggregateRoot, EventRecorder, RecordedEvent};
pub use envelope::{Envelope, Headers, MessageId};
pub use event::DomainEvent;
