//! One subscription: a consumer-group member, its offset bookkeeping, the delay/retry parking
//! lot, and the [`Settle`](bento_application::backend::Settle) that retries and dead-letters through
//! the producer.

mod handoff;
mod in_flight;
mod offsets;
mod parked;
mod payloads;
mod poller;
mod position;
mod settle;

use std::sync::Arc;

pub(crate) use handoff::{Burst, Deliveries};
pub(crate) use offsets::{Assignment, SubscriptionState};
pub(crate) use poller::{Poller, commit_and_leave};
pub(crate) use position::position_new_group;
pub(crate) use settle::{Settler, format_due};

/// A topic partition; topic names are shared, not copied per record.
type Tp = (Arc<str>, i32);
