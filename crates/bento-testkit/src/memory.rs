//! How much memory a process took, for tests that promise a bound, and the one such test every
//! broker backend runs: a flood of delayed messages held in bounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bento_application::{
    Context, DeliverAt, HandlerError, MessageBus, PublishOptions, SubscriptionSpec,
};
use bento_domain::Envelope;
use chrono::Utc;

/// The peak resident set (`VmHWM`) of process `pid` so far, in KiB; `None` where `/proc` does
/// not say (not Linux, or the process is gone).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The peak resident set of this process so far, in KiB.
fn own_peak_rss_kib() -> u64 {
    peak_rss_kib(std::process::id()).expect("/proc/self/status has a VmHWM line")
}

/// Messages of [`delayed_flood_is_held_in_bounded_memory`].
pub const FLOOD_MESSAGES: usize = 100_000;
/// Their payload size, in bytes: holding all of them would take more than 100 MiB.
pub const FLOOD_PAYLOAD: usize = 1024;

/// What a flood of delayed messages may do to the process.
#[derive(Clone, Copy, Debug)]
pub struct FloodBound {
    /// How far in the future the messages are due: long enough for all of them to be
    /// published and for the consumer to take in what it will before then.
    pub due_in: Duration,
    /// How much the peak resident set may grow while they wait, in KiB.
    pub growth_limit_kib: u64,
}

/// Subscribes `spec` (its topic is `topic`) on `bus`, publishes [`FLOOD_MESSAGES`] delayed
/// messages of [`FLOOD_PAYLOAD`] bytes to `topic` in batches of 1,000 over 100 ordering keys,
/// all due `bound.due_in` from now, and checks that the process grew by less than
/// `bound.growth_limit_kib` while they waited, that every one was delivered within 240 s of
/// being due, and none before its time. Panics (as a test does) when one of these fails.
pub async fn delayed_flood_is_held_in_bounded_memory(
    bus: Arc<dyn MessageBus>,
    topic: &str,
    spec: SubscriptionSpec,
    bound: FloodBound,
) {
    let handled = Arc::new(AtomicUsize::new(0));
    let early = Arc::new(AtomicUsize::new(0));
    let due = Utc::now() + chrono::Duration::from_std(bound.due_in).expect("a due time");
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
    let subscription = bus
        .subscribe(spec, Arc::new(handler))
        .await
        .expect("subscribe");
    let before = own_peak_rss_kib();
    publish_flood(&*bus, topic, DeliverAt::At(due)).await;
    // Let the consumer take in what it will before the messages are due.
    while Utc::now() < due - chrono::Duration::seconds(2) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let growth = own_peak_rss_kib().saturating_sub(before);
    eprintln!(
        "peak resident set grew by {} MiB while {FLOOD_MESSAGES} delayed messages waited",
        growth / 1024
    );
    assert!(
        growth < bound.growth_limit_kib,
        "grew by {} MiB, more than {} MiB",
        growth / 1024,
        bound.growth_limit_kib / 1024
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while handled.load(Ordering::Relaxed) < FLOOD_MESSAGES && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let handled = handled.load(Ordering::Relaxed);
    assert_eq!(handled, FLOOD_MESSAGES, "every message delivered");
    assert_eq!(early.load(Ordering::Relaxed), 0, "none before its time");
    subscription.shutdown().await.expect("shutdown");
}

async fn publish_flood(bus: &dyn MessageBus, topic: &str, deliver: DeliverAt) {
    let payload = vec![b'x'; FLOOD_PAYLOAD];
    for chunk in 0..FLOOD_MESSAGES / 1000 {
        let envelopes = (0..1000)
            .map(|i| {
                Envelope::new("bento.it.held", 1, "text/plain", payload.clone())
                    .with_ordering_key(format!("k{}", (chunk * 1000 + i) % 100))
            })
            .collect();
        let options = PublishOptions {
            deliver: Some(deliver),
            ..PublishOptions::default()
        };
        bus.publish_batch(envelopes, options.to_topic(topic))
            .await
            .expect("publish");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_peak() {
        let peak = super::peak_rss_kib(std::process::id()).expect("a VmHWM line");
        assert!(peak > 0);
    }
}
