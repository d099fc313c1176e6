//! The events the orders service publishes: facts other services build on.

use bento_runtime::prelude::*;
use serde::{Deserialize, Serialize};

// ANCHOR: order_placed
/// A customer placed an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order's id.
    pub order_id: String,
    /// Who placed it.
    pub customer: String,
    /// What it costs, in cents.
    pub amount_cents: u64,
}

impl DomainEvent for OrderPlaced {
    // The event type names the event on the wire (and, by default, its topic): other
    // services and languages route and decode by it, so it never changes with a rename.
    const EVENT_TYPE: &'static str = "orders.order-placed";
    // The aggregate the event belongs to; its id is the message key, so that the events of
    // one order are delivered in order.
    const AGGREGATE_TYPE: &'static str = "order";

    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}
// ANCHOR_END: order_placed

// ANCHOR: other_events
/// A customer cancelled an order before it was paid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// The order's id.
    pub order_id: String,
    /// Why, in the customer's words.
    pub reason: String,
}

impl DomainEvent for OrderCancelled {
    const EVENT_TYPE: &'static str = "orders.order-cancelled";
    const AGGREGATE_TYPE: &'static str = "order";

    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

/// Billing charged an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    /// The order's id.
    pub order_id: String,
    /// What was charged, in cents.
    pub amount_cents: u64,
}

impl DomainEvent for OrderPaid {
    const EVENT_TYPE: &'static str = "billing.order-paid";
    const AGGREGATE_TYPE: &'static str = "order";

    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}
// ANCHOR_END: other_events
