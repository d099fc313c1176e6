//! The conformance cases. Each takes a [`Backend`], builds a bus and uses topics and
//! subscriptions named uniquely for this run, so cases can run in parallel against one broker.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bento_application::{
    Bus, Context, DeadLetterPolicy, HandlerError, PublishOptions, RetryPolicy, SubscriptionSpec,
    Transaction, UnitOfWork, wire,
};
use bento_codec::Json;
use bento_domain::{AggregateRoot, DomainEvent, Envelope, EventRecorder};
use serde::{Deserialize, Serialize};

use crate::{Backend, Case, Collector};

/// The event every case sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    /// Unique per message.
    pub id: String,
    /// Ordering key.
    pub key: String,
    /// Sequence number within its key.
    pub seq: u32,
}

impl DomainEvent for Ping {
    const EVENT_TYPE: &'static str = "bento.conformance.ping";
    const VERSION: u32 = 2;
    const AGGREGATE_TYPE: &'static str = "pinger";
    fn aggregate_id(&self) -> String {
        self.key.clone()
    }
}

pub(crate) fn ping(key: &str, seq: u32) -> Ping {
    Ping {
        id: format!("{key}-{seq}"),
        key: key.to_owned(),
        seq,
    }
}

/// A topic or subscription name unique to this run.
pub fn unique(what: &str) -> String {
    format!("bento-conformance-{what}-{}", uuid::Uuid::now_v7().simple())
}

pub(crate) struct Setup {
    pub(crate) bus: Bus<Json>,
    pub(crate) topic: String,
    pub(crate) patience: Duration,
    pub(crate) settle: Duration,
}

pub(crate) async fn setup(backend: &dyn Backend, case: Case, name: &str) -> Option<Setup> {
    if let Some(reason) = backend.unsupported(case) {
        println!("conformance case {case:?} not supported by this backend: {reason}");
        return None;
    }
    Some(Setup {
        bus: Bus::new(backend.bus().await, Json),
        topic: unique(name),
        patience: backend.patience(),
        settle: backend.settle_time(),
    })
}

impl Setup {
    pub(crate) fn spec(&self, subscription: &str) -> SubscriptionSpec {
        SubscriptionSpec::topic(&self.topic, unique(subscription))
    }

    pub(crate) async fn publish(&self, event: &Ping) {
        self.bus
            .publish_with(event, PublishOptions::default().to_topic(&self.topic))
            .await
            .unwrap_or_else(|e| panic!("publishing to {} failed: {e}", self.topic));
    }

    /// Publishes `events` in batches of `size` (one `publish_batch` each).
    async fn publish_batches(&self, events: &[Ping], size: usize) {
        for chunk in events.chunks(size) {
            let envelopes = chunk
                .iter()
                .map(|e| self.bus.envelope(e).expect("encode"))
                .collect();
            self.bus
                .message_bus()
                .publish_batch(envelopes, PublishOptions::default().to_topic(&self.topic))
                .await
                .unwrap_or_else(|e| panic!("publishing a batch to {} failed: {e}", self.topic));
        }
    }

    async fn publish_envelope(&self, envelope: Envelope) {
        self.bus
            .message_bus()
            .publish(envelope, PublishOptions::default().to_topic(&self.topic))
            .await
            .unwrap_or_else(|e| panic!("publishing to {} failed: {e}", self.topic));
    }

    /// Subscribes a collector to the dead-letter topic of `spec`.
    pub(crate) async fn watch_dead_letters(
        &self,
        spec: &SubscriptionSpec,
    ) -> (Collector, bento_application::Subscription) {
        let dlq = spec
            .dead_letter
            .topic
            .clone()
            .unwrap_or_else(|| panic!("conformance cases set explicit dead-letter topics"));
        let collector = Collector::new();
        let sub = self
            .bus
            .subscribe_envelopes(
                SubscriptionSpec::topic(dlq, unique("dlq-reader")),
                collector.handler(),
            )
            .await
            .unwrap_or_else(|e| panic!("subscribing to the dead-letter topic failed: {e}"));
        (collector, sub)
    }

    pub(crate) async fn ready(&self) {
        if !self.settle.is_zero() {
            tokio::time::sleep(self.settle).await;
        }
    }
}

pub(crate) fn decode(envelope: &Envelope) -> Ping {
    serde_json::from_slice(&envelope.payload)
        .unwrap_or_else(|e| panic!("payload is not a Ping: {e}"))
}

pub(crate) fn header<'a>(envelope: &'a Envelope, name: &str) -> &'a str {
    envelope
        .headers
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("header {name} missing from {envelope:?}"))
}

/// Records a subscription comes back to.
const BACKLOG: usize = 20_000;
/// A pause between two deliveries this long counts as a stall. The flow-control stalls this
/// case catches (a paused consumer waiting for a fetch) lasted 0.5 to 1 s and came every few
/// hundred messages; a healthy consumer's longest gap is 5 to 60 ms on Kafka and up to about
/// 110 ms on Pulsar (a backlog read from the bookie).
const STALL: Duration = Duration::from_millis(250);
/// Stalls tolerated while reading [`BACKLOG`]: a loaded machine running the suite in parallel
/// (or a broker's garbage collection) may cause one or two; a consumer that stalls by design
/// causes dozens.
const MAX_STALLS: usize = 3;
/// No single pause may be longer than this.
const MAX_DELIVERY_GAP: Duration = Duration::from_secs(2);

/// A subscription restarted behind a backlog of [`BACKLOG`] messages reads it with at most
/// [`MAX_STALLS`] pauses longer than [`STALL`] between two deliveries, none longer than
/// [`MAX_DELIVERY_GAP`] (from the first delivery on, so joining a group does not count), with
/// every message handled once.
pub async fn backlog_without_stalls(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::BacklogWithoutStalls, "backlog").await else {
        return;
    };
    let spec = s.spec("backlog").concurrency(8);
    let first = s
        .bus
        .subscribe_with(spec.clone(), |_: Ping, _: Context| async {
            Ok::<(), HandlerError>(())
        })
        .await
        .expect("subscribe");
    s.ready().await;
    first.shutdown().await.expect("shutdown");
    let events: Vec<Ping> = (0..BACKLOG as u32)
        .map(|i| ping(&format!("key-{}", i % 100), i / 100))
        .collect();
    s.publish_batches(&events, 1_000).await;

    // (time of the last delivery, longest gap so far, when it ended, deliveries, stalls)
    type Gaps = (Option<Instant>, Duration, usize, usize, usize);
    let gaps: Arc<std::sync::Mutex<Gaps>> = Arc::default();
    let seen: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    let done = Collector::new();
    let handler = {
        let (gaps, seen, done) = (gaps.clone(), seen.clone(), done.clone());
        move |event: Ping, ctx: Context| {
            let now = Instant::now();
            if let Ok(mut g) = gaps.lock() {
                if let Some(last) = g.0 {
                    let gap = now.duration_since(last);
                    if gap > STALL {
                        g.4 += 1;
                    }
                    if gap > g.1 {
                        g.1 = gap;
                        g.2 = g.3;
                    }
                }
                g.0 = Some(now);
                g.3 += 1;
            }
            if let Ok(mut seen) = seen.lock() {
                seen.insert(event.id);
            }
            done.record(&ctx);
            std::future::ready(Ok::<(), HandlerError>(()))
        }
    };
    let sub = s
        .bus
        .subscribe_with(spec, handler)
        .await
        .expect("resubscribe");
    done.wait_for(BACKLOG, s.patience * 6).await;
    sub.shutdown().await.expect("shutdown");
    let (_, longest, at, count, stalls) = gaps.lock().map(|g| *g).unwrap_or_default();
    assert_eq!(count, BACKLOG, "every backlog message handled once");
    assert_eq!(
        seen.lock().map(|s| s.len()).unwrap_or_default(),
        BACKLOG,
        "no message handled twice, none missing"
    );
    assert!(
        stalls <= MAX_STALLS && longest <= MAX_DELIVERY_GAP,
        "the consumer stalled {stalls} times (pauses over {STALL:?}) while reading a backlog; \
         the longest pause was {longest:?}, after delivery {at} of {BACKLOG}"
    );
}

/// Every envelope field survives the trip through the backend.
pub async fn round_trip(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::RoundTrip, "round-trip").await else {
        return;
    };
    let collector = Collector::new();
    let sub = s
        .bus
        .subscribe_envelopes(s.spec("rt"), collector.handler())
        .await
        .expect("subscribe");
    s.ready().await;

    let sent = s
        .bus
        .envelope(&ping("k1", 1))
        .expect("encode")
        .with_correlation_id("corr-42")
        .with_causation_id("cause-41")
        .with_tenant("acme")
        .with_header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .with_header("x-user", "value with spaces");
    s.publish_envelope(sent.clone()).await;

    let got = collector.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(got.id, sent.id);
    assert_eq!(got.event_type, "bento.conformance.ping");
    assert_eq!(got.version, 2);
    let skew = (got.occurred_at - sent.occurred_at)
        .num_microseconds()
        .map(i64::abs);
    assert!(
        skew.is_some_and(|us| us < 1000),
        "occurred_at changed: {} vs {}",
        got.occurred_at,
        sent.occurred_at
    );
    assert_eq!(got.aggregate_type, "pinger");
    assert_eq!(got.aggregate_id, "k1");
    assert_eq!(got.ordering_key.as_deref(), Some("k1"));
    assert_eq!(got.correlation_id(), "corr-42");
    assert_eq!(got.causation_id.as_deref(), Some("cause-41"));
    assert_eq!(got.tenant.as_deref(), Some("acme"));
    assert_eq!(got.content_type, "application/json");
    assert_eq!(
        got.headers.get("traceparent"),
        sent.headers.get("traceparent")
    );
    assert_eq!(
        got.headers.get("x-user").map(String::as_str),
        Some("value with spaces")
    );
    assert_eq!(got.payload, sent.payload);
    assert_eq!(decode(&got), ping("k1", 1));
    sub.shutdown().await.expect("shutdown");
}

/// Two subscriptions of one topic each receive every message.
pub async fn fan_out(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::FanOut, "fan-out").await else {
        return;
    };
    let (a, b) = (Collector::new(), Collector::new());
    let sub_a = s
        .bus
        .subscribe_envelopes(s.spec("a"), a.handler())
        .await
        .expect("subscribe a");
    let sub_b = s
        .bus
        .subscribe_envelopes(s.spec("b"), b.handler())
        .await
        .expect("subscribe b");
    s.ready().await;
    for seq in 0..20 {
        s.publish(&ping("k", seq)).await;
    }
    for collector in [&a, &b] {
        let seen = collector.wait_for(20, s.patience).await;
        let ids: HashSet<String> = seen.iter().map(|c| decode(&c.envelope).id).collect();
        assert_eq!(
            ids.len(),
            20,
            "each subscription gets all 20 distinct messages"
        );
    }
    sub_a.shutdown().await.expect("shutdown");
    sub_b.shutdown().await.expect("shutdown");
}

/// Two consumers of one shared subscription split the messages; each message is handled once.
pub async fn competing_consumers(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::CompetingConsumers, "competing").await else {
        return;
    };
    let spec = s.spec("workers");
    let (a, b) = (Collector::new(), Collector::new());
    let sub_a = s
        .bus
        .subscribe_envelopes(spec.clone(), a.handler())
        .await
        .expect("subscribe a");
    let sub_b = s
        .bus
        .subscribe_envelopes(spec, b.handler())
        .await
        .expect("subscribe b");
    s.ready().await;
    let total = 200;
    for seq in 0..total {
        s.publish(&ping(&format!("k{seq}"), seq)).await;
    }
    let deadline = Instant::now() + s.patience;
    while a.len() + b.len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give duplicates, if any, a moment to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ids: Vec<String> = a
        .seen()
        .iter()
        .chain(b.seen().iter())
        .map(|c| decode(&c.envelope).id)
        .collect();
    let received = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total as usize, "every message handled");
    assert_eq!(received, total as usize, "no message handled twice");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both consumers got a share: {} / {}",
        a.len(),
        b.len()
    );
    sub_a.shutdown().await.expect("shutdown");
    sub_b.shutdown().await.expect("shutdown");
}

/// 1,000 messages over 10 keys, concurrency 8: each key's messages are handled one at a time,
/// in publish order, while different keys run in parallel.
pub async fn per_key_order(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::PerKeyOrder, "per-key-order").await else {
        return;
    };
    let order: Arc<std::sync::Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
    let busy_keys: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    let overlap = Arc::new(AtomicUsize::new(0));
    let max_parallel = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let done = Collector::new();
    let handler = {
        let (order, busy_keys, overlap, max_parallel, running, done) = (
            order.clone(),
            busy_keys.clone(),
            overlap.clone(),
            max_parallel.clone(),
            running.clone(),
            done.clone(),
        );
        move |event: Ping, ctx: Context| {
            let (order, busy_keys, overlap, max_parallel, running, done) = (
                order.clone(),
                busy_keys.clone(),
                overlap.clone(),
                max_parallel.clone(),
                running.clone(),
                done.clone(),
            );
            async move {
                if !busy_keys
                    .lock()
                    .map(|mut k| k.insert(event.key.clone()))
                    .unwrap_or(false)
                {
                    overlap.fetch_add(1, Ordering::SeqCst);
                }
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_parallel.fetch_max(now, Ordering::SeqCst);
                if event.seq.is_multiple_of(7) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    tokio::task::yield_now().await;
                }
                if let Ok(mut order) = order.lock() {
                    order.entry(event.key.clone()).or_default().push(event.seq);
                }
                running.fetch_sub(1, Ordering::SeqCst);
                if let Ok(mut keys) = busy_keys.lock() {
                    keys.remove(&event.key);
                }
                done.record(&ctx);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = s
        .bus
        .subscribe_with(s.spec("ordered").concurrency(8), handler)
        .await
        .expect("subscribe");
    s.ready().await;
    let events: Vec<Ping> = (0..1000)
        .map(|i| ping(&format!("key-{}", i % 10), i / 10))
        .collect();
    s.publish_batches(&events, 100).await;
    done.wait_for(1000, s.patience * 3).await;
    assert_eq!(
        overlap.load(Ordering::SeqCst),
        0,
        "two messages of one key ran at once"
    );
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    assert_eq!(order.len(), 10);
    for (key, seqs) in order {
        assert_eq!(seqs, (0..100).collect::<Vec<u32>>(), "order of {key}");
    }
    assert!(
        max_parallel.load(Ordering::SeqCst) > 1,
        "different keys ran in parallel"
    );
    assert!(
        max_parallel.load(Ordering::SeqCst) <= 8,
        "bound of 8 respected"
    );
    sub.shutdown().await.expect("shutdown");
}

/// Never more handlers at once than the bound, and the bound is used.
pub async fn concurrency_bound(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::ConcurrencyBound, "bound").await else {
        return;
    };
    let running = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let done = Collector::new();
    let handler = {
        let (running, max_seen, done) = (running.clone(), max_seen.clone(), done.clone());
        move |_: Ping, ctx: Context| {
            let (running, max_seen, done) = (running.clone(), max_seen.clone(), done.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.record(&ctx);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = s
        .bus
        .subscribe_with(s.spec("bounded").concurrency(4), handler)
        .await
        .expect("subscribe");
    s.ready().await;
    for seq in 0..40 {
        s.publish(&ping(&format!("k{seq}"), seq)).await;
    }
    done.wait_for(40, s.patience).await;
    let max = max_seen.load(Ordering::SeqCst);
    assert!(max <= 4, "bound exceeded: {max} handlers at once");
    assert!(max >= 2, "bound never used: at most {max} at once");
    sub.shutdown().await.expect("shutdown");
}

pub(crate) fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(attempts, Duration::from_millis(50))
        .max_backoff(Duration::from_millis(400))
}

/// A retryable failure is retried with backoff until the handler succeeds; no dead letter.
pub async fn retry_then_success(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::RetryThenSuccess, "retry").await else {
        return;
    };
    let spec = s
        .spec("flaky")
        .retry(quick_retry(5))
        .dead_letter(DeadLetterPolicy::to_topic(unique("retry-dlq")));
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let attempts = Collector::new();
    let handler = {
        let attempts = attempts.clone();
        move |_: Ping, ctx: Context| {
            attempts.record(&ctx);
            async move {
                if ctx.attempt() < 3 {
                    Err(HandlerError::retryable(format!(
                        "flaky on attempt {}",
                        ctx.attempt()
                    )))
                } else {
                    Ok(())
                }
            }
        }
    };
    let sub = s
        .bus
        .subscribe_with(spec, handler)
        .await
        .expect("subscribe");
    s.ready().await;
    s.publish(&ping("k", 1)).await;
    let seen = attempts.wait_for(3, s.patience).await;
    let numbers: Vec<u32> = seen.iter().map(|c| c.attempt).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(30),
        "retry waited for its backoff"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.len(), 3, "no attempt after success");
    assert!(dead.is_empty(), "nothing dead-lettered");
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}

async fn expect_dead_letter(
    s: &Setup,
    spec: SubscriptionSpec,
    handler: impl bento_application::Handler<Ping>,
    failure: &str,
    attempts: u32,
    reason_contains: &str,
) -> Envelope {
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let subscription = spec.name.clone();
    let sub = s
        .bus
        .subscribe_with(spec, handler)
        .await
        .expect("subscribe");
    s.ready().await;
    let event = ping("doomed", 1);
    s.publish(&event).await;
    let letter = dead.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(decode(&letter), event, "original payload kept");
    assert_eq!(letter.event_type, Ping::EVENT_TYPE);
    assert_eq!(header(&letter, wire::DLQ_FAILURE), failure);
    assert_eq!(header(&letter, wire::DLQ_ATTEMPTS), attempts.to_string());
    assert!(
        header(&letter, wire::DLQ_REASON).contains(reason_contains),
        "reason: {}",
        header(&letter, wire::DLQ_REASON)
    );
    assert!(header(&letter, wire::DLQ_ORIGINAL_TOPIC).ends_with(&s.topic));
    assert_eq!(header(&letter, wire::DLQ_SUBSCRIPTION), subscription);
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
    letter
}

/// A handler that keeps failing is dead-lettered after the last attempt, with the cause.
pub async fn retries_exhausted_dead_letter(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::RetriesExhausted, "exhausted").await else {
        return;
    };
    let spec = s
        .spec("hopeless")
        .retry(quick_retry(3))
        .dead_letter(DeadLetterPolicy::to_topic(unique("exhausted-dlq")));
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        move |_: Ping, _: Context| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(HandlerError::retryable("database unavailable")) }
        }
    };
    expect_dead_letter(
        &s,
        spec,
        handler,
        "retries-exhausted",
        3,
        "database unavailable",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A permanent failure is dead-lettered at once.
pub async fn permanent_failure_dead_letter(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::PermanentFailure, "permanent").await else {
        return;
    };
    let spec = s
        .spec("strict")
        .retry(quick_retry(5))
        .dead_letter(DeadLetterPolicy::to_topic(unique("permanent-dlq")));
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        move |_: Ping, _: Context| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(HandlerError::permanent("invalid email address")) }
        }
    };
    expect_dead_letter(&s, spec, handler, "permanent", 1, "invalid email address").await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no retry of a permanent failure"
    );
}

/// An undecodable payload is dead-lettered and the consumer goes on with the next message.
pub async fn undecodable_dead_letter(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::Undecodable, "undecodable").await else {
        return;
    };
    let spec = s
        .spec("decoder")
        .dead_letter(DeadLetterPolicy::to_topic(unique("undecodable-dlq")));
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let good = Collector::new();
    let handler = {
        let good = good.clone();
        move |_: Ping, ctx: Context| {
            good.record(&ctx);
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let sub = s
        .bus
        .subscribe_with(spec, handler)
        .await
        .expect("subscribe");
    s.ready().await;
    let garbage = Envelope::new(
        Ping::EVENT_TYPE,
        Ping::VERSION,
        "application/json",
        &b"\x00not json{"[..],
    )
    .with_ordering_key("bad");
    let garbage_id = garbage.id;
    s.publish_envelope(garbage).await;
    s.publish(&ping("fine", 1)).await;
    let letter = dead.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(letter.id, garbage_id);
    assert_eq!(&letter.payload[..], b"\x00not json{");
    assert_eq!(header(&letter, wire::DLQ_FAILURE), "undecodable");
    assert!(header(&letter, wire::DLQ_REASON).contains(Ping::EVENT_TYPE));
    let handled = good.wait_for(1, s.patience).await;
    assert_eq!(decode(&handled[0].envelope), ping("fine", 1));
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}

/// A panicking handler counts as a failed one; the consumer survives and goes on.
pub async fn panicking_handler(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::PanickingHandler, "panic").await else {
        return;
    };
    let spec = s
        .spec("panicky")
        .retry(quick_retry(2))
        .dead_letter(DeadLetterPolicy::to_topic(unique("panic-dlq")));
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let good = Collector::new();
    let handler = {
        let good = good.clone();
        move |event: Ping, ctx: Context| {
            let good = good.clone();
            async move {
                if event.key == "explode" {
                    panic!("boom in handler");
                }
                good.record(&ctx);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = s
        .bus
        .subscribe_with(spec, handler)
        .await
        .expect("subscribe");
    s.ready().await;
    s.publish(&ping("explode", 1)).await;
    s.publish(&ping("calm", 1)).await;
    let letter = dead.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(decode(&letter).key, "explode");
    assert_eq!(
        header(&letter, wire::DLQ_ATTEMPTS),
        "2",
        "a panic is retried like any failure"
    );
    assert!(header(&letter, wire::DLQ_REASON).contains("boom in handler"));
    good.wait_for(1, s.patience).await;
    s.publish(&ping("calm", 2)).await;
    good.wait_for(2, s.patience).await;
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}

/// A delayed message is not delivered before its time.
pub async fn delayed_delivery(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::DelayedDelivery, "delayed").await else {
        return;
    };
    let collector = Collector::new();
    let sub = s
        .bus
        .subscribe_envelopes(s.spec("patient"), collector.handler())
        .await
        .expect("subscribe");
    s.ready().await;
    let delay = Duration::from_millis(1500);
    let sent_at = Instant::now();
    s.bus
        .publish_with(
            &ping("later", 1),
            PublishOptions::deliver_after(delay).to_topic(&s.topic),
        )
        .await
        .expect("publish delayed");
    s.publish(&ping("now", 1)).await;
    let seen = collector.wait_for(2, s.patience + delay).await;
    let first = decode(&seen[0].envelope);
    assert_eq!(first.key, "now", "the undelayed message comes first");
    let later = seen
        .iter()
        .find(|c| decode(&c.envelope).key == "later")
        .expect("delayed message arrives");
    let waited = later.at - sent_at;
    assert!(
        waited >= delay,
        "delivered after {waited:?}, before the {delay:?} asked for"
    );
    sub.shutdown().await.expect("shutdown");
}

/// Shutdown waits for in-flight handlers; what was not handled is delivered to the next
/// consumer of the subscription; nothing is lost.
pub async fn graceful_shutdown(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::GracefulShutdown, "shutdown").await else {
        return;
    };
    let spec = s.spec("stoppable").concurrency(4);
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Collector::new();
    let slow = {
        let (started, finished) = (started.clone(), finished.clone());
        move |_: Ping, ctx: Context| {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.record(&ctx);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = s
        .bus
        .subscribe_with(spec.clone(), slow)
        .await
        .expect("subscribe");
    s.ready().await;
    let total = 20;
    for seq in 0..total {
        s.publish(&ping(&format!("k{seq}"), seq)).await;
    }
    let deadline = Instant::now() + s.patience;
    while started.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sub.shutdown().await.expect("shutdown");
    let started_before = started.load(Ordering::SeqCst);
    assert!(started_before > 0, "some handlers were running at shutdown");
    assert_eq!(
        finished.len(),
        started_before,
        "every started handler finished before shutdown returned"
    );
    assert!(
        finished.len() < total as usize,
        "shutdown happened mid-stream"
    );

    let rest = Collector::new();
    let sub = s
        .bus
        .subscribe_envelopes(spec, rest.handler())
        .await
        .expect("resubscribe");
    let deadline = Instant::now() + s.patience * 2;
    let handled = |f: &Collector, r: &Collector| -> HashSet<String> {
        f.seen()
            .iter()
            .chain(r.seen().iter())
            .map(|c| decode(&c.envelope).id)
            .collect()
    };
    while handled(&finished, &rest).len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        handled(&finished, &rest).len(),
        total as usize,
        "every message handled by one consumer or the next"
    );
    sub.shutdown().await.expect("shutdown");
}

struct Pinger {
    events: EventRecorder,
}

impl AggregateRoot for Pinger {
    fn events(&mut self) -> &mut EventRecorder {
        &mut self.events
    }
}

struct FakeTransaction {
    fail: bool,
}

#[async_trait]
impl Transaction for FakeTransaction {
    async fn commit(self: Box<Self>) -> Result<(), bento_application::BoxError> {
        if self.fail {
            Err("constraint violated".into())
        } else {
            Ok(())
        }
    }
    async fn rollback(self: Box<Self>) -> Result<(), bento_application::BoxError> {
        Ok(())
    }
}

/// The unit of work publishes recorded events after a successful commit, and never after a
/// rollback, a drop or a failed commit.
pub async fn unit_of_work(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::UnitOfWork, "uow").await else {
        return;
    };
    // The unit of work publishes to the event type's own topic; a fresh subscription sees only
    // this run's messages, told apart by a run id in the key.
    let run = unique("uow");
    let collector = Collector::new();
    let spec = SubscriptionSpec::event_type(Ping::EVENT_TYPE, unique("uow-reader"));
    let sub = s
        .bus
        .subscribe_envelopes(spec, collector.handler())
        .await
        .expect("subscribe");
    s.ready().await;
    let record = |label: &str| {
        let mut aggregate = Pinger {
            events: EventRecorder::default(),
        };
        aggregate.events.record(ping(&format!("{run}-{label}"), 1));
        aggregate.events.record(ping(&format!("{run}-{label}"), 2));
        aggregate
    };

    let mut rolled_back =
        UnitOfWork::with_transaction(s.bus.clone(), FakeTransaction { fail: false });
    rolled_back.collect(&mut record("rolled-back"));
    rolled_back.rollback().await.expect("rollback");

    let mut dropped = UnitOfWork::new(s.bus.clone());
    dropped.collect(&mut record("dropped"));
    drop(dropped);

    let mut failed = UnitOfWork::with_transaction(s.bus.clone(), FakeTransaction { fail: true });
    failed.collect(&mut record("failed"));
    assert!(
        failed.commit().await.is_err(),
        "a failed commit is reported"
    );

    let mut committed =
        UnitOfWork::with_transaction(s.bus.clone(), FakeTransaction { fail: false });
    let mut aggregate = record("committed");
    committed.collect(&mut aggregate);
    assert!(
        aggregate.events.is_empty(),
        "the unit of work took the events"
    );
    let ids = committed.commit().await.expect("commit");
    assert_eq!(ids.len(), 2);

    let mine = |c: &Collector| -> Vec<Ping> {
        c.seen()
            .iter()
            .map(|c| decode(&c.envelope))
            .filter(|p| p.key.starts_with(&run))
            .collect()
    };
    let deadline = Instant::now() + s.patience;
    while mine(&collector).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = mine(&collector);
    let keys: Vec<(String, u32)> = got
        .iter()
        .map(|p| (p.key.replace(&run, ""), p.seq))
        .collect();
    assert_eq!(
        keys,
        vec![("-committed".to_owned(), 1), ("-committed".to_owned(), 2)],
        "only the committed work was published, in order"
    );
    sub.shutdown().await.expect("shutdown");
}
