//! The orders service of the Bento guide: place orders, charge them, ship them.

pub mod billing;
pub mod events;
pub mod order;
pub mod place;
pub mod shipping;

use std::time::Duration;

use bento_runtime::prelude::*;

use crate::billing::{Billing, PaymentGateway};
use crate::shipping::Shipments;

/// The subscriptions' names: their identity on the broker, so they never change.
pub const BILLING: &str = "orders-tutorial.billing";
/// See [`BILLING`].
pub const SHIPPING: &str = "orders-tutorial.shipping";

/// What the handlers need, built once in `main` (or in a test).
#[derive(Clone, Debug)]
pub struct Deps {
    /// The payment provider.
    pub gateway: PaymentGateway,
    /// The shipments read model.
    pub shipments: Shipments,
}

// ANCHOR: subscribe_all
/// Wires the service's handlers on `bus`: `main` calls it with the runtime's bus, the tests
/// with the harness's. The subscriptions run while the returned handles are held.
pub async fn subscribe_all(bus: &Bus, deps: &Deps) -> Result<Vec<Subscription>, BusError> {
    let billing = Billing {
        gateway: deps.gateway.clone(),
        bus: bus.clone(),
    };
    Ok(vec![
        bus.subscribe_with(
            SubscriptionSpec::named(BILLING)
                // 5 attempts in all: after 200 ms, 400 ms, 800 ms, 1.6 s (with jitter).
                .retry(RetryPolicy::exponential(5, Duration::from_millis(200)))
                // The default: `<topic>-<subscription>-DLQ`, spelled out for the reader.
                .dead_letter(DeadLetterPolicy::default()),
            with_state(billing, billing::charge),
        )
        .await?,
        bus.subscribe(SHIPPING, with_state(deps.shipments.clone(), shipping::ship))
            .await?,
    ])
}
// ANCHOR_END: subscribe_all
