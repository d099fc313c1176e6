//! How subscriptions start and stop through the typed bus: one name per intent, stopping on
//! drop, bounded shutdowns, and the whole service's subscriptions stopped at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bento_application::{Bus, BusError, Context, HandlerError, SubscriptionSpec};
use bento_codec::Json;
use bento_domain::DomainEvent;
use bento_memory::MemoryBus;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    n: u32,
}

impl DomainEvent for Tick {
    const EVENT_TYPE: &'static str = "lifecycle.tick";
    const AGGREGATE_TYPE: &'static str = "clock";
    fn aggregate_id(&self) -> String {
        self.n.to_string()
    }
}

fn bus() -> Bus<Json> {
    Bus::new(Arc::new(MemoryBus::default()), Json)
}

fn counting(
    count: &Arc<AtomicU32>,
) -> impl Fn(Tick, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let count = count.clone();
    move |_: Tick, _ctx: Context| {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

async fn wait_for(count: &AtomicU32, expected: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count.load(Ordering::SeqCst) < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} handled",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_second_subscription_with_one_name_is_refused_unless_both_compete() {
    let bus = bus();
    let count = Arc::new(AtomicU32::new(0));
    let first = bus
        .subscribe("billing", counting(&count))
        .await
        .expect("subscribe");
    let error = bus
        .subscribe("billing", counting(&count))
        .await
        .expect_err("the same name twice splits the messages");
    assert!(
        matches!(&error, BusError::Subscribe { subscription, .. } if subscription == "billing"),
        "{error}"
    );
    assert!(
        error.to_string().contains("SubscriptionSpec::competing"),
        "{error}"
    );
    // A clone of the bus shares what runs.
    assert!(
        bus.clone()
            .subscribe("billing", counting(&count))
            .await
            .is_err()
    );
    first.shutdown().await.expect("shutdown");
    // Once stopped, the name is free again.
    let again = bus
        .subscribe("billing", counting(&count))
        .await
        .expect("subscribe again");
    again.shutdown().await.expect("shutdown");

    let a = bus
        .subscribe_with(
            SubscriptionSpec::named("workers").competing(),
            counting(&count),
        )
        .await
        .expect("first competing consumer");
    let b = bus
        .subscribe_with(
            SubscriptionSpec::named("workers").competing(),
            counting(&count),
        )
        .await
        .expect("second competing consumer");
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dropping_a_subscription_stops_it() {
    let bus = bus();
    let count = Arc::new(AtomicU32::new(0));
    let sub = bus
        .subscribe("dropped", counting(&count))
        .await
        .expect("subscribe");
    bus.publish(&Tick { n: 1 }).await.expect("publish");
    wait_for(&count, 1).await;
    drop(sub);
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.publish(&Tick { n: 2 }).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a dropped subscription still handled a message"
    );
}

#[tokio::test]
async fn a_shutdown_gives_up_on_a_stuck_handler_after_its_grace() {
    let bus = bus();
    let sub = bus
        .subscribe("stuck", |_: Tick, _ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await
        .expect("subscribe");
    bus.publish(&Tick { n: 1 }).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    sub.shutdown_within(Duration::from_millis(200))
        .await
        .expect("shutdown");
    // Far above the 200 ms grace (a loaded machine), far below the handler's hour.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stopping_a_bus_stops_its_subscriptions_after_in_flight_handlers_finish() {
    let bus = bus();
    let finished = Arc::new(AtomicU32::new(0));
    let handler = {
        let finished = finished.clone();
        move |_: Tick, _ctx: Context| {
            let finished = finished.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let _kept = bus.subscribe("slow", handler).await.expect("subscribe");
    bus.publish(&Tick { n: 1 }).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.shutdown_subscriptions(Duration::from_secs(5))
        .await
        .expect("stopped in time");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the in-flight handler was cut short"
    );
    bus.publish(&Tick { n: 2 }).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "a stopped subscription handled a message"
    );

    let stuck = bus
        .subscribe("stuck", |_: Tick, _ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await
        .expect("subscribe");
    bus.publish(&Tick { n: 3 }).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = bus
        .shutdown_subscriptions(Duration::from_millis(100))
        .await
        .expect_err("a stuck handler outlives the grace");
    assert!(matches!(error, BusError::Timeout { .. }), "{error}");
    drop(stuck);
}
