//! Bounded memory on the real broker: an exclusive subscription, to which the broker hands
//! delayed messages at once, holds at most a bounded number of them until they are due, and
//! receives the rest as room frees up, so a flood of delayed messages does not grow the
//! process without bound. Every message is still delivered, none before its time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bento_application::{
    Context, DeliverAt, HandlerError, MessageBus, PublishOptions, SubscriptionKind,
    SubscriptionSpec,
};
use bento_domain::Envelope;
use chrono::Utc;

const MESSAGES: usize = 100_000;
const PAYLOAD: usize = 1024;
/// What the process may grow by while the messages wait. Holding all of them would take more
/// than 100 MiB of payload alone; the consumer holds at most 10,000 (about 10 MiB of payload).
const GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// The peak resident set of this process so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    bento_testkit::memory::peak_rss_kib(std::process::id()).expect("a VmHWM line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_delayed_messages_are_held_in_bounded_memory() {
    let bus = Arc::new(common::bus().await);
    let topic = common::unique("held");
    let handled = Arc::new(AtomicUsize::new(0));
    let early = Arc::new(AtomicUsize::new(0));
    let due = Utc::now() + chrono::Duration::seconds(40);
    let handler = {
        let (handled, early) = (handled.clone(), early.clone());
        move |_ctx: Context| {
            if Utc::now() < due {
                early.fetch_add(1, Ordering::Relaxed);
            }
            handled.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let sub = bus
        .subscribe(
            SubscriptionSpec::topic(&topic, common::unique("holder"))
                .kind(SubscriptionKind::Exclusive)
                .concurrency(8),
            Arc::new(handler),
        )
        .await
        .expect("subscribe");
    let before = peak_rss_kib();
    let payload = vec![b'x'; PAYLOAD];
    for chunk in 0..MESSAGES / 1000 {
        let envelopes = (0..1000)
            .map(|i| {
                Envelope::new("bento.it.held", 1, "text/plain", payload.clone())
                    .with_ordering_key(format!("k{}", (chunk * 1000 + i) % 100))
            })
            .collect();
        bus.publish_batch(
            envelopes,
            PublishOptions {
                deliver: Some(DeliverAt::At(due)),
                ..PublishOptions::default()
            }
            .to_topic(&topic),
        )
        .await
        .expect("publish");
    }
    // Let the consumer take in what it will before the messages are due.
    while Utc::now() < due - chrono::Duration::seconds(2) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let growth = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "peak resident set grew by {} MiB while {MESSAGES} delayed messages waited",
        growth / 1024
    );
    assert!(
        growth < GROWTH_LIMIT_KIB,
        "grew by {} MiB, more than {} MiB",
        growth / 1024,
        GROWTH_LIMIT_KIB / 1024
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while handled.load(Ordering::Relaxed) < MESSAGES && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        handled.load(Ordering::Relaxed),
        MESSAGES,
        "every message delivered"
    );
    assert_eq!(early.load(Ordering::Relaxed), 0, "none before its time");
    sub.shutdown().await.expect("shutdown");
}
