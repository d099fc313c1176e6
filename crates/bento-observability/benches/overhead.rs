//! What observability costs on the in-memory bus: the workload of `bento_testkit::workload`
//! (typed publish -> JSON -> bus -> dispatcher -> JSON -> typed handler -> ack, 100,000 events
//! a round, at concurrency 1 and 8, one by one and in batches of 500; the in-memory bus's own
//! benchmark runs it too), run bare and through an [`ObservedBus`] in the same process:
//!
//! - `bare`: the memory bus alone;
//! - `observed`: metrics and tracing on, no span exporter (no subscriber wants the spans): the
//!   runtime's default;
//! - the same under a subscriber logging at INFO (Bento's per-message spans are DEBUG, so off);
//! - `observed+spans`: the same with an OpenTelemetry layer recording every span (no exporter
//!   behind it): what span creation itself costs when traces are exported.
//!
//! The variants run in alternating rounds (bare, observed, observed, bare, ...), so that a change
//! of load on a shared machine hits both alike; the report gives each variant's median
//! throughput and the median of the per-round ratios.
//!
//! `cargo bench -p bento-observability --bench overhead` (`BENTO_BENCH_ROUNDS` rounds, default
//! 20; `BENTO_BENCH_SPANS=0` skips the span variant).

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::fmt::Write as _;

use bento_application::{Context, DeliveryObserver, HandlerError, MessageBus, SubscriptionSpec};
use bento_domain::DomainEvent;
use bento_memory::MemoryBus;
use bento_observability::{Metrics, MetricsOptions, ObservedBus, TraceOptions};
use bento_testkit::workload::{EVENTS_PER_ROUND, PublishMode, Tick, Workload};
use tokio::runtime::Runtime;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

fn observed(metrics: &Metrics) -> Arc<dyn MessageBus> {
    observed_over(Arc::new(MemoryBus::default()), metrics)
}

fn observed_over(bus: Arc<dyn MessageBus>, metrics: &Metrics) -> Arc<dyn MessageBus> {
    Arc::new(
        ObservedBus::builder(bus)
            .metrics(metrics)
            .tracing(TraceOptions::default())
            .lag_interval(None)
            .build(),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs `rounds` alternating rounds of the bare bus and `other`, after a warm-up of each.
fn compare(
    runtime: &Runtime,
    mode: PublishMode,
    concurrency: usize,
    other: Arc<dyn MessageBus>,
    rounds: usize,
) -> (f64, f64, f64) {
    let bare = runtime.block_on(Workload::start(Arc::new(MemoryBus::default()), concurrency));
    let other = runtime.block_on(Workload::start(other, concurrency));
    for _ in 0..2 {
        bare.run(runtime, mode, 1);
        other.run(runtime, mode, 1);
    }
    let throughput = |d: Duration| EVENTS_PER_ROUND as f64 / d.as_secs_f64();
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (x, y) = if i % 2 == 0 {
            let x = bare.run(runtime, mode, 1);
            (x, other.run(runtime, mode, 1))
        } else {
            let y = other.run(runtime, mode, 1);
            (bare.run(runtime, mode, 1), y)
        };
        a.push(throughput(x));
        b.push(throughput(y));
        ratios.push(throughput(y) / throughput(x));
    }
    (median(a), median(b), median(ratios))
}

/// A backend that stores nothing and hands its subscribers' handler stacks back: isolates the
/// cost of the layers from the bus's own work.
#[derive(Default)]
struct Null {
    stacks: std::sync::Mutex<Vec<Stack>>,
}

/// What a dispatcher would run for a subscription: its observer, and its layers around the
/// handler.
type Stack = (
    Option<Arc<dyn DeliveryObserver>>,
    Arc<dyn bento_application::EnvelopeHandler>,
);

#[async_trait::async_trait]
impl MessageBus for Null {
    fn backend(&self) -> &'static str {
        "null"
    }
    async fn publish(
        &self,
        envelope: bento_domain::Envelope,
        _options: bento_application::PublishOptions,
    ) -> Result<(), bento_application::BusError> {
        std::hint::black_box(envelope);
        Ok(())
    }
    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn bento_application::EnvelopeHandler>,
    ) -> Result<bento_application::Subscription, bento_application::BusError> {
        // What a dispatcher would run: the spec's layers around the handler, the observer
        // around them.
        let handler = spec.layers.wrap(handler);
        if let Ok(mut stacks) = self.stacks.lock() {
            stacks.push((spec.observer, handler));
        }
        Err(bento_application::BusError::backend(
            "null",
            "subscribing",
            "null bus: handler kept",
        ))
    }
    fn topic_for(&self, event_type: &str) -> String {
        event_type.to_owned()
    }
}

/// Nanoseconds per publish and per delivery that the layers add, single-threaded, without the
/// bus's own work: (publish through the observed bus) - (publish to the backend), and
/// (handle through the observing handler) - (handle with the handler alone).
fn layer_cost(runtime: &Runtime, metrics: &Metrics) -> (f64, f64) {
    const N: u32 = 200_000;
    let null = Arc::new(Null::default());
    let observed = observed_over(null.clone(), metrics);
    let inner: Arc<dyn bento_application::EnvelopeHandler> =
        Arc::new(|_ctx: Context| std::future::ready(Ok::<(), HandlerError>(())));
    let spec = SubscriptionSpec::event_type(Tick::EVENT_TYPE, "layer-cost");
    runtime.block_on(async {
        let _ = observed.subscribe(spec, inner.clone()).await;
    });
    let (observer, wrapped) = null
        .stacks
        .lock()
        .ok()
        .and_then(|stacks| stacks.first().cloned())
        .unwrap_or_else(|| panic!("the observed bus did not subscribe"));
    let envelope = bento_domain::Envelope::new(Tick::EVENT_TYPE, 1, "application/json", "{}");
    let ctx = Context::new(
        Arc::new(envelope.clone()),
        1,
        Tick::EVENT_TYPE.into(),
        "layer-cost".into(),
    );
    runtime.block_on(async {
        let per = |d: Duration| d.as_nanos() as f64 / f64::from(N);
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..N {
                let _ = null.publish(envelope.clone(), Default::default()).await;
            }
            let bare = per(start.elapsed());
            let start = Instant::now();
            for _ in 0..N {
                let _ = observed.publish(envelope.clone(), Default::default()).await;
            }
            let publish = per(start.elapsed()) - bare;
            let start = Instant::now();
            for _ in 0..N {
                let _ = inner.handle(ctx.clone()).await;
            }
            let bare = per(start.elapsed());
            let start = Instant::now();
            for _ in 0..N {
                // As the dispatcher calls an observer: before the stack, and with its outcome.
                let ctx = ctx.clone();
                match &observer {
                    Some(observer) => {
                        let observation = observer.started(&ctx);
                        let outcome = wrapped.handle(ctx).await;
                        observer.finished(&envelope, observation, Some(&outcome));
                    }
                    None => {
                        let _ = wrapped.handle(ctx).await;
                    }
                }
            }
            let handle = per(start.elapsed()) - bare;
            best = (best.0.min(publish), best.1.min(handle));
        }
        best
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = std::env::var("BENTO_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 1 } else { 20 });
    let spans = std::env::var("BENTO_BENCH_SPANS").map_or(true, |v| v != "0");
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
    let configs = [
        (PublishMode::Batches, 1usize),
        (PublishMode::OneByOne, 1),
        (PublishMode::Batches, 8),
        (PublishMode::OneByOne, 8),
    ];
    let mut report = String::new();
    let (publish, handle) = layer_cost(&runtime, &metrics);
    let _ = writeln!(
        report,
        "Layer cost alone (single thread, no bus work): {publish:.0} ns per publish, \
         {handle:.0} ns per delivery\n"
    );
    eprintln!("layer cost: {publish:.0} ns per publish, {handle:.0} ns per delivery");
    let phase = |report: &mut String, title: &str, column: &str, rounds: usize| {
        let _ = writeln!(
            report,
            "{title} ({rounds} alternating rounds of {EVENTS_PER_ROUND} events; medians, \
             events/s):\n\n| workload | bare | {column} | {column} / bare |\n|---|---|---|---|"
        );
        for (mode, concurrency) in configs {
            let (bare, other, ratio) =
                compare(&runtime, mode, concurrency, observed(&metrics), rounds);
            let _ = writeln!(
                report,
                "| {}, concurrency {concurrency} | {bare:.0} | {other:.0} | {:.1}% ({:+.1}%) |",
                mode.name(),
                ratio * 100.0,
                (ratio - 1.0) * 100.0
            );
            eprintln!(
                "{column} {} c{concurrency}: bare {bare:.0}/s, {other:.0}/s",
                mode.name()
            );
        }
        let _ = writeln!(report);
    };
    phase(&mut report, "No subscriber", "observed", rounds);

    // Process-wide subscribers from here on (the workers are other threads): logs at INFO to a
    // sink, which leaves Bento's DEBUG spans off, then the same plus an OpenTelemetry layer
    // that records every span (no exporter behind it).
    let (otel, switch) =
        tracing_subscriber::reload::Layer::new(None::<Box<dyn Layer<Registry> + Send + Sync>>);
    let subscriber = tracing_subscriber::registry().with(otel).with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(LevelFilter::INFO),
    );
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        panic!("a global subscriber is already set");
    }
    phase(&mut report, "Logging at INFO", "observed", rounds);
    if spans {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer: Box<dyn Layer<Registry> + Send + Sync> =
            Box::new(bento_observability::telemetry::otel_layer(&provider));
        if let Err(error) = switch.reload(Some(layer)) {
            panic!("cannot add the OpenTelemetry layer: {error}");
        }
        phase(
            &mut report,
            "Every span recorded",
            "observed+spans",
            rounds.div_ceil(4).max(1),
        );
    }
    println!("\n{report}");
}
