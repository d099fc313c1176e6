//! The orders service.
//!
//! ```text
//! cargo run                  # serve until Ctrl-C or SIGTERM
//! cargo run -- demo          # place a few orders, wait until they are shipped, exit
//! BENTO_MESSAGING__BACKEND=pulsar cargo run -- demo
//! ```

use std::time::Duration;

use bento_runtime::prelude::*;
use orders_tutorial::billing::PaymentGateway;
use orders_tutorial::events::OrderPlaced;
use orders_tutorial::place::{OrderRepository, PlaceOrder, place_order};
use orders_tutorial::shipping::Shipments;
use orders_tutorial::{Deps, subscribe_all};

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // bento.toml, then BENTO_* variables: the backend, the codecs, metrics and tracing.
    let bento = Bento::from_env().await?;
    let deps = Deps {
        // Declines orders over 1,000.00; the first call finds the provider unreachable.
        gateway: PaymentGateway::new(100_000, 1),
        shipments: Shipments::default(),
    };
    let bus = bento.bus();
    bus.declare::<OrderPlaced>().await?; // a schema mismatch fails here, before any work
    let _subscriptions = subscribe_all(&bus, &deps).await?;
    let orders = OrderRepository::default();

    match std::env::args().nth(1).as_deref() {
        Some("demo") => demo(&bento, &orders, &deps.shipments).await?,
        Some(other) => return Err(format!("unknown command `{other}`: use `demo` or none").into()),
        None => {
            println!("orders service on `{}`", bus.message_bus().backend());
            tokio::signal::ctrl_c().await?;
        }
    }
    // Stops the subscriptions (in-flight handlers finish), flushes producers.
    bento.shutdown().await?;
    Ok(())
}
// ANCHOR_END: main

// ANCHOR: demo
/// Places three orders (one over the card limit), waits until the two others are shipped,
/// and prints what the metrics saw.
async fn demo(
    bento: &Bento,
    orders: &OrderRepository,
    shipments: &Shipments,
) -> Result<(), Box<dyn std::error::Error>> {
    let bus = bento.bus();
    let run = std::process::id();
    let mut expected = Vec::new();
    for (n, amount_cents) in [(1, 250_000), (2, 4_200), (3, 1_999)] {
        let order_id = format!("order-{run}-{n}");
        let command = PlaceOrder {
            order_id: order_id.clone(),
            customer: "ada".into(),
            amount_cents,
        };
        let id = place_order(&bus, orders, command).await?;
        println!("placed {order_id} ({amount_cents} cents) as message {id}");
        if amount_cents <= 100_000 {
            expected.push(order_id);
        }
    }
    shipments
        .wait_for(&expected, Duration::from_secs(60))
        .await?;
    println!("shipped {} of 3 orders", expected.len());
    if let Some(metrics) = bento.metrics() {
        println!(
            "metrics: {} handled, {} retried",
            counter_total(metrics, "bento_messages_handled_total"),
            counter_total(metrics, "bento_messages_retried_total"),
        );
    }
    Ok(())
}
// ANCHOR_END: demo

// ANCHOR: metrics
/// The sum of a counter over all its labels, read from Bento's metrics registry.
fn counter_total(metrics: &bento_runtime::observability::Metrics, name: &str) -> f64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value())
        .sum()
}
// ANCHOR_END: metrics
