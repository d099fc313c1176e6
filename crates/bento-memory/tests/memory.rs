//! Bounded memory: the in-memory bus holds at most `max_delayed_messages` delayed messages and
//! makes delayed publishes wait beyond that, so a flood of delayed messages does not grow the
//! process without bound. Every message is still delivered, none before its time. (Alone in
//! its test binary: it measures the process's peak resident set.)

use std::sync::Arc;
use std::time::Duration;

use bento_application::{SubscriptionKind, SubscriptionSpec};
use bento_memory::{MemoryBus, MemoryConfig};
use bento_testkit::memory::{FloodBound, delayed_flood_is_held_in_bounded_memory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_delayed_messages_are_held_in_bounded_memory() {
    let bus = Arc::new(MemoryBus::new(MemoryConfig {
        max_bytes_per_subscription: 16 * 1024 * 1024,
        max_delayed_messages: 10_000,
        ..MemoryConfig::default()
    }));
    let spec = SubscriptionSpec::topic("held", "holder")
        .kind(SubscriptionKind::Exclusive)
        .concurrency(8);
    let bound = FloodBound {
        due_in: Duration::from_secs(5),
        // 10,000 delayed messages (about 10 MiB of payload) and 16 MiB of a subscription's
        // unsettled ones: without the bounds, the 100,000 took over 100 MiB.
        growth_limit_kib: 64 * 1024,
    };
    delayed_flood_is_held_in_bounded_memory(bus, "held", spec, bound).await;
}
