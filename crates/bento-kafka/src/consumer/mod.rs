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
use std::sync::atomic::AtomicU64;

pub(crate) use handoff::{Burst, Deliveries};
pub(crate) use offsets::{Assignment, SubscriptionState};
pub(crate) use poller::Poller;
pub(crate) use position::position_new_group;
pub(crate) use settle::{Settler, format_due};

/// A topic partition; topic names are shared, not copied per record.
type Tp = (Arc<str>, i32);

/// The lease a partition is held under: changes on every assignment, [`VOID`] once revoked.
/// Deliveries keep it to tell, without a lock, whether their partition is still theirs.
type LeaseCell = Arc<AtomicU64>;
/// No lease: the partition was revoked.
const VOID: u64 = 0;
