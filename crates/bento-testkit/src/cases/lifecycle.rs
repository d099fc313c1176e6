//! Lifecycle cases: a subscription that comes back to a backlog, graceful shutdown, and the
//! unit of work.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bento_application::{Context, HandlerError, SubscriptionSpec, Transaction, UnitOfWork};
use bento_domain::{AggregateRoot, DomainEvent, EventRecorder};

use super::{Ping, decode, ping, setup, unique};
use crate::{Backend, Case, Collector};

/// Records a subscription comes back to.
const BACKLOG: usize = 20_000;
/// A pause between two deliveries this long counts as a stall. The flow-control stalls this
/// case catches (a paused consumer waiting for a fetch) lasted 0.5 to 1 s and came every few
/// hundred messages; a healthy consumer's longest gap is 5 to 60 ms on Kafka and up to about
/// 110 ms on Pulsar (a backlog read from the bookie).
const STALL: Duration = Duration::from_millis(250);
/// Stalls tolerated while reading [`BACKLOG`]: a loaded machine running the suite in parallel
/// (or a broker's garbage collection) may cause a few; a consumer that stalls by design
/// causes dozens (one every few hundred of the 20,000 messages), so 6 still catches it.
const MAX_STALLS: usize = 6;
/// No single pause may be longer than this: 5 s rides out a loaded 2-core CI machine or a
/// broker's pause, and is still well below a stall that waits for Pulsar's 10 s quiet probe.
const MAX_DELIVERY_GAP: Duration = Duration::from_secs(5);

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
    let sub = s.subscribe(spec.clone(), slow).await;
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

    let (rest, sub) = s.collect_unready(spec).await;
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
    let spec = SubscriptionSpec::event_type(Ping::EVENT_TYPE, unique("uow-reader"));
    let (collector, sub) = s.collect(spec).await;
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
