//! The service's tests, on the test harness: an in-memory bus that records what was published,
//! handled and dead-lettered, and waits for it.

use std::time::Duration;

use bento_runtime::prelude::*;
use orders_tutorial::billing::PaymentGateway;
use orders_tutorial::events::{OrderPaid, OrderPlaced};
use orders_tutorial::place::{OrderRepository, PlaceOrder, cancel_order, place_order};
use orders_tutorial::shipping::Shipments;
use orders_tutorial::{BILLING, Deps, SHIPPING, subscribe_all};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn command(order_id: &str, amount_cents: u64) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        customer: "ada".into(),
        amount_cents,
    }
}

// ANCHOR: happy_path
#[tokio::test]
async fn a_placed_order_is_charged_then_shipped() -> TestResult {
    let harness = TestHarness::new();
    let bus = harness.bus();
    let deps = Deps {
        gateway: PaymentGateway::new(100_000, 0),
        shipments: Shipments::default(),
    };
    let _subscriptions = subscribe_all(&bus, &deps).await?;

    place_order(&bus, &OrderRepository::default(), command("o-1", 4_200)).await?;

    harness
        .wait_for(Expect::consumed::<OrderPaid>(1).by(SHIPPING))
        .await?;
    assert_eq!(
        harness.published::<OrderPaid>(),
        [OrderPaid {
            order_id: "o-1".into(),
            amount_cents: 4_200
        }]
    );
    assert!(deps.shipments.contains("o-1"));
    // The follow-up event is caused by the message billing handled.
    let placed = &harness.consumed_by(BILLING)[0].envelope;
    let paid = &harness.consumed_by(SHIPPING)[0].envelope;
    assert_eq!(
        paid.causation_id.as_deref(),
        Some(placed.id.to_string().as_str())
    );
    assert_eq!(paid.correlation_id(), placed.correlation_id());
    Ok(())
}
// ANCHOR_END: happy_path

// ANCHOR: dead_letter
#[tokio::test]
async fn a_declined_card_is_dead_lettered_at_once() -> TestResult {
    let harness = TestHarness::new();
    let bus = harness.bus();
    let deps = Deps {
        gateway: PaymentGateway::new(100_000, 0),
        shipments: Shipments::default(),
    };
    let _subscriptions = subscribe_all(&bus, &deps).await?;

    place_order(&bus, &OrderRepository::default(), command("o-2", 250_000)).await?;

    harness
        .wait_for(Expect::dead_lettered(1).by(BILLING))
        .await?;
    let dead = harness.dead_lettered();
    assert_eq!(dead[0].attempt, 1, "a permanent error is not retried");
    assert_eq!(dead[0].envelope.aggregate_id, "o-2");
    assert!(harness.published::<OrderPaid>().is_empty());
    // The dead-letter topic holds it, with the reason in its headers.
    let letters = harness
        .memory()
        .published("orders.order-placed-orders-tutorial.billing-DLQ");
    assert_eq!(letters.len(), 1);
    Ok(())
}
// ANCHOR_END: dead_letter

// ANCHOR: paused_time
/// The provider is down for 3 calls: billing is retried after 200, 400 and 800 ms of backoff,
/// which tokio's paused clock skips, and succeeds on the 4th attempt.
#[tokio::test(start_paused = true)]
async fn billing_is_retried_while_the_provider_is_down() -> TestResult {
    let harness = TestHarness::new();
    let bus = harness.bus();
    let deps = Deps {
        gateway: PaymentGateway::new(100_000, 3),
        shipments: Shipments::default(),
    };
    let _subscriptions = subscribe_all(&bus, &deps).await?;
    let started = std::time::Instant::now();

    place_order(&bus, &OrderRepository::default(), command("o-3", 4_200)).await?;

    harness
        .wait_for(
            Expect::consumed::<OrderPlaced>(1)
                .by(BILLING)
                .within(Duration::from_secs(60)),
        )
        .await?;
    assert_eq!(
        harness.deliveries_to(BILLING).len(),
        4,
        "3 retried, then consumed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the backoff took no wall time"
    );
    Ok(())
}
// ANCHOR_END: paused_time

#[tokio::test]
async fn a_cancelled_order_cannot_be_cancelled_again() -> TestResult {
    let harness = TestHarness::new();
    let bus = harness.bus();
    let orders = OrderRepository::default();
    place_order(&bus, &orders, command("o-4", 4_200)).await?;
    cancel_order(&bus, &orders, "o-4", "changed my mind").await?;
    let again = cancel_order(&bus, &orders, "o-4", "again").await;
    assert!(again.is_err(), "a second cancel is refused: {again:?}");
    harness
        .wait_for(Expect::published::<orders_tutorial::events::OrderCancelled>(1))
        .await?;
    assert_eq!(
        harness.published_envelopes().len(),
        2,
        "placed and cancelled once"
    );
    assert_eq!(orders.len(), 1);
    Ok(())
}
