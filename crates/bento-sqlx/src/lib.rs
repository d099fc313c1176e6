//! # bento-sqlx
//!
//! Bento's transactional outbox and durable inbox, on SQLite (embedded, the default) and
//! PostgreSQL, with sqlx.
//!
//! - [`Outbox`]: a unit of work over a database transaction. The service writes through it and
//!   its aggregates' events are stored in the same transaction; nothing is published before
//!   the commit, and nothing committed is lost.
//! - [`Relay`]: publishes committed events in commit order per ordering key, skipping none,
//!   one process at a time, marking rows only after the broker's receipt.
//! - [`DurableInbox`]: a layer that runs each handler inside a transaction recording the
//!   message, so that a message delivered twice has its effects once.
//!
//! Bento's tables (`bento_outbox`, `bento_inbox`, `bento_leases`) come with their own
//! migrations, recorded in `_bento_migrations`. docs/outbox.md has the guarantees, the
//! ordering argument and what happens on each failure; the guide's chapter
//! [the unit of work and the outbox](https://github.com/bento-rs/bento/blob/main/docs/guide/src/unit-of-work.md) shows a use case on it.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

mod database;
mod error;
mod inbox;
mod outbox;
mod pool;
mod relay;
mod row;

pub use database::{Dialect, OutboxDatabase};
pub use error::SqlError;
pub use inbox::{
    DurableInbox, DurableInboxLayer, DurableInboxService, InboxConnection, InboxTransaction,
};
pub use outbox::{Backlog, Outbox, OutboxWork};
pub use relay::{Relay, RelayConfig, RelaySnapshot, RelayStats};
pub use sqlx;
