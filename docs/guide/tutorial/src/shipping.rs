//! Shipping: ships each order paid, and keeps the list of shipments.

use std::collections::BTreeSet;
use std::time::Duration;

use bento_runtime::prelude::*;
use tokio::sync::watch;

use crate::events::OrderPaid;

/// The orders shipped so far: a read model the service's API would serve. Clones share it.
#[derive(Clone, Debug)]
pub struct Shipments {
    shipped: watch::Sender<BTreeSet<String>>,
}

impl Default for Shipments {
    fn default() -> Self {
        Self {
            shipped: watch::Sender::new(BTreeSet::new()),
        }
    }
}

impl Shipments {
    /// Records that `order_id` was shipped; returns whether it was new.
    pub fn ship(&self, order_id: &str) -> bool {
        self.shipped
            .send_if_modified(|shipped| shipped.insert(order_id.to_owned()))
    }

    /// Whether `order_id` was shipped.
    pub fn contains(&self, order_id: &str) -> bool {
        self.shipped.borrow().contains(order_id)
    }

    /// Waits until every order of `order_ids` was shipped, or `patience` passed.
    pub async fn wait_for(&self, order_ids: &[String], patience: Duration) -> Result<(), String> {
        let mut changes = self.shipped.subscribe();
        let all_shipped =
            |shipped: &BTreeSet<String>| order_ids.iter().all(|id| shipped.contains(id));
        match tokio::time::timeout(patience, changes.wait_for(all_shipped)).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let shipped = self.shipped.borrow();
                let missing: Vec<&String> = order_ids
                    .iter()
                    .filter(|id| !shipped.contains(*id))
                    .collect();
                Err(format!("not shipped after {patience:?}: {missing:?}"))
            }
        }
    }
}

// ANCHOR: handler
/// Ships a paid order. Shipping twice is harmless here (a set); a handler whose effect must not
/// repeat uses the durable inbox (see the chapter on the outbox).
pub async fn ship(
    State(shipments): State<Shipments>,
    event: OrderPaid,
    _ctx: Context,
) -> Result<(), HandlerError> {
    shipments.ship(&event.order_id);
    Ok(())
}
// ANCHOR_END: handler
