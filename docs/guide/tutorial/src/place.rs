//! The use cases: place an order, cancel one. Each is one unit of work: the order is saved and
//! its events published after, or nothing happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bento_runtime::prelude::*;

use crate::order::{Order, OrderError};

/// Where orders are kept. In memory here; a service keeps them in its database (see the
/// chapter on the outbox for a transaction that holds the orders and their events).
#[derive(Clone, Debug, Default)]
pub struct OrderRepository {
    orders: Arc<Mutex<HashMap<String, Order>>>,
}

impl OrderRepository {
    /// Stores `order`, replacing the one with its id.
    pub fn save(&self, order: Order) {
        if let Ok(mut orders) = self.orders.lock() {
            orders.insert(order.id().to_owned(), order);
        }
    }

    /// Takes the order `id` out to change it (put it back with [`OrderRepository::save`]).
    pub fn take(&self, id: &str) -> Option<Order> {
        self.orders.lock().ok()?.remove(id)
    }

    /// How many orders are stored.
    pub fn len(&self) -> usize {
        self.orders
            .lock()
            .map(|orders| orders.len())
            .unwrap_or_default()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The command of the `PlaceOrder` use case.
#[derive(Clone, Debug)]
pub struct PlaceOrder {
    /// The order's id, chosen by the caller so that a retried command is the same order.
    pub order_id: String,
    /// Who places it.
    pub customer: String,
    /// What it costs, in cents.
    pub amount_cents: u64,
}

/// Why a use case failed.
#[derive(Debug)]
pub enum UseCaseError {
    /// The order's rules refused the command; nothing was saved or published.
    Refused(OrderError),
    /// No order has that id.
    NotFound(String),
    /// Saving or publishing failed (the error says which).
    UnitOfWork(UnitOfWorkError),
}

impl std::fmt::Display for UseCaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UseCaseError::Refused(error) => write!(f, "refused: {error}"),
            UseCaseError::NotFound(id) => write!(f, "no order {id}"),
            UseCaseError::UnitOfWork(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for UseCaseError {}

// ANCHOR: place_order
/// Places an order: the aggregate checks the rules and records `OrderPlaced`, the repository
/// saves it, and the unit of work publishes the event once everything else succeeded.
pub async fn place_order(
    bus: &Bus,
    orders: &OrderRepository,
    command: PlaceOrder,
) -> Result<MessageId, UseCaseError> {
    let mut order = Order::place(command.order_id, command.customer, command.amount_cents)
        .map_err(UseCaseError::Refused)?;
    let mut uow = UnitOfWork::new(bus.clone());
    uow.collect(&mut order); // takes the recorded events out of the aggregate
    orders.save(order);
    let published = uow.commit().await.map_err(UseCaseError::UnitOfWork)?;
    Ok(published[0])
}
// ANCHOR_END: place_order

// ANCHOR: cancel_order
/// Cancels an order.
pub async fn cancel_order(
    bus: &Bus,
    orders: &OrderRepository,
    order_id: &str,
    reason: &str,
) -> Result<(), UseCaseError> {
    let mut order = orders
        .take(order_id)
        .ok_or_else(|| UseCaseError::NotFound(order_id.to_owned()))?;
    let cancelled = order.cancel(reason);
    let mut uow = UnitOfWork::new(bus.clone());
    uow.collect(&mut order);
    orders.save(order);
    cancelled.map_err(UseCaseError::Refused)?;
    uow.commit().await.map_err(UseCaseError::UnitOfWork)?;
    Ok(())
}
// ANCHOR_END: cancel_order
