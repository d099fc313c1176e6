//! The test harness: what it records, how it waits, and that paused time runs long backoffs
//! at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bento_application::{
    Context, DeadLetterPolicy, HandlerError, RetryPolicy, SubscriptionSpec, UnitOfWork,
};
use bento_domain::DomainEvent;
use bento_testkit::testing::{Expect, Settled, TestHarness};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct OrderPlaced {
    order_id: String,
}

impl DomainEvent for OrderPlaced {
    const EVENT_TYPE: &'static str = "harness.order-placed";
    const AGGREGATE_TYPE: &'static str = "order";
    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

fn order(id: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: id.into(),
    }
}

async fn ok(_event: OrderPlaced, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

async fn refuse(_event: OrderPlaced, _ctx: Context) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("no such customer"))
}

#[tokio::test]
async fn records_publishes_consumption_and_dead_letters() -> TestResult {
    let harness = TestHarness::new();
    let bus = harness.bus();
    // A subscription runs while its handle lives.
    let _billing = bus.subscribe("harness.billing", ok).await?;
    let _shipping = bus
        .subscribe_with(
            SubscriptionSpec::named("harness.shipping")
                .dead_letter(DeadLetterPolicy::to_topic("harness.shipping.dlq")),
            refuse,
        )
        .await?;

    bus.publish(&order("o-1")).await?;
    let mut uow = UnitOfWork::new(bus.clone());
    uow.record(order("o-2"));
    uow.commit().await?;

    harness
        .wait_for(Expect::consumed::<OrderPlaced>(2).by("harness.billing"))
        .await?;
    harness
        .wait_for(Expect::dead_lettered(2).by("harness.shipping"))
        .await?;

    assert_eq!(
        harness.published::<OrderPlaced>(),
        [order("o-1"), order("o-2")]
    );
    let mut consumed = harness.consumed::<OrderPlaced>();
    consumed.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(consumed, [order("o-1"), order("o-2")]);
    let dead = harness.dead_lettered();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.subscription == "harness.shipping"
        && matches!(&d.settled, Settled::DeadLettered { failure: "permanent", error }
            if error.contains("no such customer"))));
    // The memory bus put them on the dead-letter topic too.
    harness
        .wait_for(Expect::published::<OrderPlaced>(2))
        .await?;
    assert_eq!(harness.memory().published("harness.shipping.dlq").len(), 2);
    harness.shutdown(Duration::from_secs(1)).await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_timeout_names_what_was_expected_and_what_was_seen() -> TestResult {
    let harness = TestHarness::new();
    let bus = harness.bus();
    let _flaky = bus
        .subscribe_with(
            SubscriptionSpec::named("harness.flaky")
                .retry(RetryPolicy::exponential(10, Duration::from_secs(60))),
            |_: OrderPlaced, _: Context| async { Err(HandlerError::retryable("warehouse down")) },
        )
        .await?;
    bus.publish(&order("o-1")).await?;

    let error = harness
        .wait_for(
            Expect::consumed::<OrderPlaced>(1)
                .by("harness.flaky")
                .within(Duration::from_secs(5)),
        )
        .await
        .expect_err("nothing is consumed");
    let message = format!("{error:?}");
    assert!(
        message.starts_with(
            "waited 5s for 1 `harness.order-placed` consumed by `harness.flaky`, saw 0"
        ),
        "{message}"
    );
    assert!(message.contains("1 x `harness.order-placed`"), "{message}");
    assert!(
        message.contains(
            "`harness.flaky` <- `harness.order-placed`: 0 consumed, 1 retried, 0 dead-lettered \
             (last error: retryable failure: warehouse down)"
        ),
        "{message}"
    );
    Ok(())
}

/// A handler that fails twice with a 30 s backoff, then succeeds: under paused time the test
/// takes a moment of wall time while a minute and a half passes on tokio's clock.
#[tokio::test(start_paused = true)]
async fn paused_time_runs_long_backoffs_at_once() -> TestResult {
    let wall = std::time::Instant::now();
    let clock = tokio::time::Instant::now();
    let harness = TestHarness::new();
    let bus = harness.bus();
    let calls = Arc::new(AtomicU32::new(0));
    let handler_calls = calls.clone();
    let _slow = bus
        .subscribe_with(
            SubscriptionSpec::named("harness.slow-retry")
                .retry(RetryPolicy::exponential(3, Duration::from_secs(30)).jitter(0.0)),
            move |_: OrderPlaced, _: Context| {
                let calls = handler_calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(HandlerError::retryable("not yet"))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await?;
    bus.publish(&order("o-1")).await?;

    harness
        .wait_for(
            Expect::consumed::<OrderPlaced>(1)
                .by("harness.slow-retry")
                .within(Duration::from_secs(600)),
        )
        .await?;

    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let attempts: Vec<(u32, Settled)> = harness
        .deliveries_to("harness.slow-retry")
        .into_iter()
        .map(|d| (d.attempt, d.settled))
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(matches!(
        &attempts[0],
        (1, Settled::Retried { after: Some(after), .. }) if *after >= Duration::from_secs(30)
    ));
    assert_eq!(attempts[2], (3, Settled::Consumed));
    let virtual_elapsed = clock.elapsed();
    assert!(
        virtual_elapsed >= Duration::from_secs(60),
        "two 30 s+ backoffs passed on tokio's clock, not {virtual_elapsed:?}"
    );
    let wall_elapsed = wall.elapsed();
    assert!(
        wall_elapsed < Duration::from_secs(1),
        "paused time should make the backoffs instant; took {wall_elapsed:?} of wall time"
    );
    Ok(())
}

/// With `only_own_messages`, messages that were not published through the recorder's bus (on
/// a broker: a backlog of an earlier run) are not counted.
#[tokio::test]
async fn only_own_messages_ignores_a_backlog() -> TestResult {
    let harness = TestHarness::new();
    let outsider = harness.bus();
    let own = bento_testkit::testing::Recorder::new().only_own_messages();
    // Both recorders see this bus's subscriptions; only the harness's sees the outsider's
    // publish.
    let bus = own.attach(harness.bus());
    let _billing = bus.subscribe("harness.own-billing", ok).await?;
    outsider.publish(&order("earlier-run")).await?;
    bus.publish(&order("this-run")).await?;

    own.wait_for(Expect::consumed::<OrderPlaced>(1).by("harness.own-billing"))
        .await?;
    // The outsider's message was handled too (the harness saw both), but not counted here.
    harness
        .wait_for(Expect::consumed::<OrderPlaced>(2).by("harness.own-billing"))
        .await?;
    assert_eq!(own.consumed::<OrderPlaced>(), [order("this-run")]);
    assert_eq!(own.published::<OrderPlaced>(), [order("this-run")]);
    Ok(())
}
