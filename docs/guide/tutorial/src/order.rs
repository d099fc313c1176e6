//! The order aggregate: the rules of an order, and the events it records as it changes.

use bento_runtime::prelude::*;

use crate::events::{OrderCancelled, OrderPlaced};

// ANCHOR: aggregate
/// An order. Its methods check the rules and record what happened; nothing is published
/// until a unit of work commits.
#[derive(Debug)]
pub struct Order {
    id: String,
    customer: String,
    amount_cents: u64,
    cancelled: bool,
    events: EventRecorder,
}

impl AggregateRoot for Order {
    fn events(&mut self) -> &mut EventRecorder {
        &mut self.events
    }
}
// ANCHOR_END: aggregate

/// Why an order cannot be placed or changed.
#[derive(Debug, PartialEq, Eq)]
pub enum OrderError {
    /// An order must cost something.
    NothingToPay,
    /// A cancelled order stays cancelled.
    AlreadyCancelled(String),
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderError::NothingToPay => write!(f, "an order must cost more than 0 cents"),
            OrderError::AlreadyCancelled(id) => write!(f, "order {id} is cancelled already"),
        }
    }
}

impl std::error::Error for OrderError {}

// ANCHOR: behaviour
impl Order {
    /// Places an order, recording [`OrderPlaced`].
    pub fn place(id: String, customer: String, amount_cents: u64) -> Result<Self, OrderError> {
        if amount_cents == 0 {
            return Err(OrderError::NothingToPay);
        }
        let mut order = Order {
            id: id.clone(),
            customer: customer.clone(),
            amount_cents,
            cancelled: false,
            events: EventRecorder::default(),
        };
        order.events.record(OrderPlaced {
            order_id: id,
            customer,
            amount_cents,
        });
        Ok(order)
    }

    /// Cancels the order, recording [`OrderCancelled`].
    pub fn cancel(&mut self, reason: &str) -> Result<(), OrderError> {
        if self.cancelled {
            return Err(OrderError::AlreadyCancelled(self.id.clone()));
        }
        self.cancelled = true;
        self.events.record(OrderCancelled {
            order_id: self.id.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }
}
// ANCHOR_END: behaviour

impl Order {
    /// The order's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who placed it.
    pub fn customer(&self) -> &str {
        &self.customer
    }

    /// What it costs, in cents.
    pub fn amount_cents(&self) -> u64 {
        self.amount_cents
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

// ANCHOR: unit_test
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placing_records_order_placed() {
        let mut order = Order::place("o-1".into(), "ada".into(), 4_200).expect("a valid order");
        assert_eq!(order.events().len(), 1);
        let events = order.take_events();
        assert_eq!(events[0].event_type(), "orders.order-placed");
        assert!(
            order.events().is_empty(),
            "taking the events empties the recorder"
        );
    }

    #[test]
    fn an_order_is_cancelled_once() {
        let mut order = Order::place("o-1".into(), "ada".into(), 4_200).expect("a valid order");
        order.cancel("changed my mind").expect("the first cancel");
        assert_eq!(
            order.cancel("again"),
            Err(OrderError::AlreadyCancelled("o-1".into()))
        );
        assert_eq!(order.take_events().len(), 2);
    }

    #[test]
    fn a_free_order_is_refused() {
        assert_eq!(
            Order::place("o-1".into(), "ada".into(), 0).map(|_| ()),
            Err(OrderError::NothingToPay)
        );
    }
}
// ANCHOR_END: unit_test
