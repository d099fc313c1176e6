//! What observability costs on the in-memory bus: the workload of
//! `crates/bento-memory/benches/memory_bus.rs` (typed publish -> JSON -> bus -> dispatcher ->
//! JSON -> typed handler -> ack, at concurrency 1 and 8, one by one and in batches of 500),
//! run bare and through an [`ObservedBus`] in the same process, one after the other:
//!
//! - `bare`: the memory bus alone;
//! - `observed`: metrics and tracing on, no span exporter (no subscriber wants the spans): the
//!   runtime's default;
//! - `observed-spans`: the same with an OpenTelemetry subscriber recording every span (no
//!   exporter behind it): what span creation itself costs when traces are exported.
//!
//! `cargo bench -p bento-observability --bench overhead`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bento_application::{Bus, Context, HandlerError, MessageBus, SubscriptionSpec};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_memory::MemoryBus;
use bento_observability::{Metrics, MetricsOptions, ObservedBus, TraceOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    id: u64,
    key: String,
}

impl DomainEvent for Tick {
    const EVENT_TYPE: &'static str = "bench.tick";
    const AGGREGATE_TYPE: &'static str = "ticker";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

const EVENTS_PER_ITERATION: u64 = 100_000;
const BATCH: usize = 500;

struct Rig {
    bus: Bus<Json>,
    handled: Arc<AtomicU64>,
    done: Arc<Notify>,
    events: Arc<Vec<Tick>>,
}

async fn rig(bus: Arc<dyn MessageBus>, concurrency: usize) -> Rig {
    let bus = Bus::new(bus, Json);
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let handler = {
        let (handled, done) = (handled.clone(), done.clone());
        move |tick: Tick, _ctx: Context| {
            let n = handled.fetch_add(1, Ordering::Relaxed) + 1;
            if n % EVENTS_PER_ITERATION == 0 {
                done.notify_one();
            }
            std::hint::black_box(tick);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let spec = SubscriptionSpec::event_type(Tick::EVENT_TYPE, "bench").concurrency(concurrency);
    // Kept running for the whole benchmark.
    std::mem::forget(bus.subscribe_with::<Tick, _>(spec, handler).await);
    let events = Arc::new(
        (0..BATCH as u64)
            .map(|id| Tick {
                id,
                key: format!("key-{}", id % 64),
            })
            .collect(),
    );
    Rig {
        bus,
        handled,
        done,
        events,
    }
}

fn observed(metrics: &Metrics) -> Arc<dyn MessageBus> {
    Arc::new(
        ObservedBus::builder(Arc::new(MemoryBus::default()))
            .metrics(metrics)
            .tracing(TraceOptions::default())
            .build(),
    )
}

fn run(runtime: &Runtime, rig: &Rig, mode: &'static str, iterations: u64) -> Duration {
    // The publisher runs as a task on the runtime's two workers, like a service's own code.
    let (bus, done, events) = (rig.bus.clone(), rig.done.clone(), rig.events.clone());
    let elapsed = runtime.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iterations {
                let notified = done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let mut sent = 0;
                while sent < EVENTS_PER_ITERATION {
                    if mode == "publish_all" {
                        bus.publish_all(&events).await.ok();
                    } else {
                        for event in events.iter() {
                            bus.publish(event).await.ok();
                        }
                    }
                    sent += BATCH as u64;
                }
                notified.await;
            }
            start.elapsed()
        })
        .await
    });
    assert_eq!(
        rig.handled.load(Ordering::Relaxed) % EVENTS_PER_ITERATION,
        0
    );
    elapsed.unwrap_or_else(|e| panic!("publisher task failed: {e}"))
}

fn bench(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("tokio runtime: {error}"),
    };
    let metrics = match Metrics::new(MetricsOptions::default()) {
        Ok(metrics) => metrics,
        Err(error) => panic!("metrics: {error}"),
    };
    let mut group = c.benchmark_group("observability_overhead");
    group.throughput(Throughput::Elements(EVENTS_PER_ITERATION));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    let measure = |group: &mut criterion::BenchmarkGroup<'_, _>, variant: &str| {
        for concurrency in [1usize, 8] {
            let bus = match variant {
                "bare" => Arc::new(MemoryBus::default()) as Arc<dyn MessageBus>,
                _ => observed(&metrics),
            };
            let rig = runtime.block_on(rig(bus, concurrency));
            for mode in ["publish_all", "publish"] {
                group.bench_function(
                    BenchmarkId::new(
                        format!("{variant}/{mode}"),
                        format!("concurrency-{concurrency}"),
                    ),
                    |b| b.iter_custom(|iterations| run(&runtime, &rig, mode, iterations)),
                );
            }
        }
    };
    measure(&mut group, "bare");
    measure(&mut group, "observed");

    // Now a subscriber that records every span (process-wide: the workers are other threads).
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(bento_observability::telemetry::otel_layer(&provider));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        measure(&mut group, "observed-spans");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
