//! Bounded memory on the real broker: a subscription reading 100,000 delayed records holds at
//! most 10,000 of them until they are due and reads the rest as room frees up, so a flood of
//! delayed messages does not grow the process without bound. Every record is still delivered,
//! none before its time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bento_application::SubscriptionSpec;
use bento_testkit::memory::{FloodBound, delayed_flood_is_held_in_bounded_memory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_delayed_records_are_held_in_bounded_memory() {
    common::share_broker();
    let mut config = common::config();
    config
        .consumer
        .insert("queued.max.messages.kbytes".into(), "16384".into());
    let bus = Arc::new(common::connect(config).await);
    let topic = common::unique("held");
    let spec = SubscriptionSpec::topic(&topic, common::unique("holder")).concurrency(8);
    let bound = FloodBound {
        due_in: Duration::from_secs(45),
        // At most 10,000 held (about 10 MiB of payload) plus librdkafka's prefetch queue,
        // capped above at 16 MiB.
        growth_limit_kib: 64 * 1024,
    };
    delayed_flood_is_held_in_bounded_memory(bus, &topic, spec, bound).await;
}
