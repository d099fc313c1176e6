//! Counting handled messages and recording latencies, shared by every side.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::event::{WARM_UP, now_micros};

/// How long a consumer may go without a message before the run is declared stalled.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Counts handled messages and keeps the first and last time.
#[derive(Debug)]
pub struct Clock {
    seen: AtomicU64,
    target: u64,
    times: Mutex<(Option<Instant>, Option<Instant>)>,
    done: Notify,
}

impl Clock {
    /// A clock that is done after `target` messages.
    pub fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            seen: AtomicU64::new(0),
            target,
            times: Mutex::new((None, None)),
            done: Notify::new(),
        })
    }

    /// Counts one message.
    pub fn tick(&self) {
        let now = Instant::now();
        if let Ok(mut times) = self.times.lock() {
            times.0.get_or_insert(now);
            times.1 = Some(now);
        }
        if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.done.notify_one();
        }
    }

    /// Messages counted so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    /// Whether the target is reached.
    pub fn is_done(&self) -> bool {
        self.seen() >= self.target
    }

    /// Waits for the target; fails if no message arrives for [`PATIENCE`].
    pub async fn wait(&self, what: &str) -> Result<()> {
        loop {
            let before = self.seen();
            if before >= self.target {
                return Ok(());
            }
            let notified = self.done.notified();
            if tokio::time::timeout(PATIENCE, notified).await.is_err() && self.seen() == before {
                bail!(
                    "{what}: stalled at {before} of {} messages for {PATIENCE:?}",
                    self.target
                );
            }
        }
    }

    /// Messages per second from the first message to the last (after [`Clock::wait`]).
    pub fn rate(&self) -> f64 {
        let Ok(times) = self.times.lock() else {
            return 0.0;
        };
        match (times.0, times.1) {
            (Some(first), Some(last)) if last > first => {
                (self.target.saturating_sub(1)) as f64 / last.duration_since(first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// A latency histogram in microseconds (1 µs to 10 minutes, 3 significant digits).
#[derive(Debug)]
pub struct Latencies {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3)
            .expect("1 µs to 10 minutes at 3 digits is a valid histogram");
        Self {
            histogram: Mutex::new(histogram),
        }
    }

    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut histogram) = self.histogram.lock() {
            histogram.saturating_record(micros.max(1));
        }
    }

    /// Records the latency of an event sent at `sent_at_micros` (Unix time) and received now.
    pub fn record_since(&self, sent_at_micros: u64) {
        self.record(Duration::from_micros(
            now_micros().saturating_sub(sent_at_micros),
        ));
    }

    /// The latency at `quantile`, in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.histogram
            .lock()
            .map_or(0.0, |h| h.value_at_quantile(quantile) as f64 / 1e3)
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.lock().map_or(0, |h| h.len())
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a latency run's consumer does with each event: warm-up events only say the
/// subscription is live; the others are recorded and counted.
#[derive(Debug)]
pub struct LatencyProbe {
    /// Set by the first event of any kind.
    pub live: AtomicBool,
    /// End-to-end latencies, publish call to handler.
    pub end_to_end: Latencies,
    /// Measured events handled.
    pub clock: Arc<Clock>,
}

impl LatencyProbe {
    /// A probe for `total` measured events.
    pub fn new(total: u64) -> Arc<Self> {
        Arc::new(Self {
            live: AtomicBool::new(false),
            end_to_end: Latencies::new(),
            clock: Clock::new(total),
        })
    }

    /// Called by the consumer for each event.
    pub fn handle(&self, seq: u64, sent_at_micros: u64) {
        self.live.store(true, Ordering::Release);
        if seq < WARM_UP {
            self.end_to_end.record_since(sent_at_micros);
            self.clock.tick();
        }
    }

    /// Whether the subscription has received anything yet.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

/// Calls `send` with warm-up sequence numbers every 50 ms until `probe` is live (a consumer
/// group joined, a subscription positioned), so latency runs measure the steady state.
pub async fn warm_up<F, Fut>(probe: &LatencyProbe, mut send: F) -> Result<()>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut warm_up = WarmUp::new(probe);
    while let Some(seq) = warm_up.next_seq().await? {
        send(seq).await?;
    }
    Ok(())
}

/// [`warm_up`] as a loop of its own, for a sender the loop body borrows mutably:
/// `while let Some(seq) = warm_up.next_seq().await? { send seq }`.
#[derive(Debug)]
pub struct WarmUp<'a> {
    probe: &'a LatencyProbe,
    deadline: Instant,
    seq: u64,
}

impl<'a> WarmUp<'a> {
    /// Warm-up events for `probe`, for at most [`PATIENCE`].
    pub fn new(probe: &'a LatencyProbe) -> Self {
        Self {
            probe,
            deadline: Instant::now() + PATIENCE,
            seq: WARM_UP,
        }
    }

    /// The next warm-up sequence number to send (50 ms after the one before), `None` once the
    /// probe is live; an error once [`PATIENCE`] has passed without it.
    pub async fn next_seq(&mut self) -> Result<Option<u64>> {
        if self.seq > WARM_UP {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.probe.is_live() {
            return Ok(None);
        }
        if Instant::now() > self.deadline {
            bail!("no warm-up event reached the consumer within {PATIENCE:?}");
        }
        self.seq += 1;
        Ok(Some(self.seq - 1))
    }
}

/// A ticker at `rate` per second; a late tick fires at once (a burst) so the rate holds.
pub fn ticker(rate: u64) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    tick
}
