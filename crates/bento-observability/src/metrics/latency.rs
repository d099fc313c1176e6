//! Latency measurement: the clock, a stopwatch, and the histogram a latency is recorded in.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::proto;

/// Latency buckets, in seconds: from 50 µs (in-memory) to 30 s (a slow handler).
const LATENCY_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];
/// The same, in nanoseconds.
const LATENCY_BUCKETS_NANOS: [u64; 18] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// The clock latencies are measured with: the CPU's time-stamp counter where it is invariant
/// (a few nanoseconds a read, against tens for the OS clock), else the OS monotonic clock.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Measures one latency.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopwatch(u64);

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self(clock().raw())
    }

    /// The reading, kept as a number (an [`bento_application::Observation`]'s mark).
    pub(crate) fn mark(self) -> u64 {
        self.0
    }

    /// The stopwatch started at `mark`.
    pub(crate) fn from_mark(mark: u64) -> Self {
        Self(mark)
    }

    pub(crate) fn elapsed_nanos(self) -> u64 {
        let clock = clock();
        clock.delta_as_nanos(self.0, clock.raw())
    }
}

/// A latency histogram: the bucket an observation falls in and the sum, two relaxed atomic
/// additions an observation.
pub(crate) struct Latency {
    /// Per bucket (not cumulative), the last one past the largest bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Latency {
    pub(crate) fn observe(&self, stopwatch: Stopwatch) {
        let nanos = stopwatch.elapsed_nanos();
        let bucket = LATENCY_BUCKETS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(super) fn proto(&self) -> proto::Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        for (count, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            cumulative += count.load(Ordering::Relaxed);
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(bound);
            bucket.set_cumulative_count(cumulative);
            buckets.push(bucket);
        }
        let total = cumulative + self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let mut histogram = proto::Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(total);
        histogram.set_sample_sum(self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        histogram
    }
}
