//! Bounded memory on the real broker: an exclusive subscription, to which the broker hands
//! delayed messages at once, holds at most a bounded number of them until they are due, and
//! receives the rest as room frees up, so a flood of delayed messages does not grow the
//! process without bound. Every message is still delivered, none before its time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bento_application::{SubscriptionKind, SubscriptionSpec};
use bento_testkit::memory::{FloodBound, delayed_flood_is_held_in_bounded_memory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_delayed_messages_are_held_in_bounded_memory() {
    let bus = Arc::new(common::bus().await);
    let topic = common::unique("held");
    let spec = SubscriptionSpec::topic(&topic, common::unique("holder"))
        .kind(SubscriptionKind::Exclusive)
        .concurrency(8);
    let bound = FloodBound {
        due_in: Duration::from_secs(40),
        // The consumer holds at most 10,000 (about 10 MiB of payload); the client's receive
        // queue and the allocator's arenas come on top (one run measured 65 MiB). Holding all
        // 100,000 grew the process by 228 MiB.
        growth_limit_kib: 96 * 1024,
    };
    delayed_flood_is_held_in_bounded_memory(bus, &topic, spec, bound).await;
}
