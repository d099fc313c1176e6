//! Billing: charges each order placed, and publishes `OrderPaid` as a follow-up event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bento_runtime::prelude::*;

use crate::events::{OrderPaid, OrderPlaced};

/// Why the payment provider did not charge.
#[derive(Debug, PartialEq, Eq)]
pub enum PaymentError {
    /// The provider could not be reached: trying again later may work.
    Unavailable,
    /// The provider refused the charge: trying again cannot help.
    Declined(String),
}

/// The payment provider's client. This one is a stand-in: it declines amounts over its
/// limit, and is unreachable for its first `outages` calls.
#[derive(Clone, Debug)]
pub struct PaymentGateway {
    limit_cents: u64,
    outages_left: Arc<AtomicU32>,
}

impl PaymentGateway {
    /// A gateway that declines charges over `limit_cents` and fails its first `outages` calls.
    pub fn new(limit_cents: u64, outages: u32) -> Self {
        Self {
            limit_cents,
            outages_left: Arc::new(AtomicU32::new(outages)),
        }
    }

    /// Charges `amount_cents` for `order_id`.
    pub async fn charge(&self, order_id: &str, amount_cents: u64) -> Result<(), PaymentError> {
        let outage = self
            .outages_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if outage {
            return Err(PaymentError::Unavailable);
        }
        if amount_cents > self.limit_cents {
            return Err(PaymentError::Declined(format!(
                "{amount_cents} cents for {order_id} is over the card's limit"
            )));
        }
        Ok(())
    }
}

// ANCHOR: state
/// What the billing handler needs: cloned for each message, so it holds cheap handles.
#[derive(Clone, Debug)]
pub struct Billing {
    /// The payment provider.
    pub gateway: PaymentGateway,
    /// The bus, for the follow-up event.
    pub bus: Bus,
}
// ANCHOR_END: state

// ANCHOR: handler
/// Charges an order. An unreachable provider is a retryable error: the subscription's retry
/// policy tries again with backoff. A declined card is permanent: the message goes to the
/// dead-letter topic at once, where an operator can look at it and replay it.
pub async fn charge(
    State(billing): State<Billing>,
    event: OrderPlaced,
    ctx: Context,
) -> Result<(), HandlerError> {
    match billing
        .gateway
        .charge(&event.order_id, event.amount_cents)
        .await
    {
        Ok(()) => {}
        Err(PaymentError::Unavailable) => {
            return Err(HandlerError::retryable("payment provider unreachable"));
        }
        Err(PaymentError::Declined(why)) => return Err(HandlerError::permanent(why)),
    }
    // The follow-up event carries the order's correlation id, and the message handled here
    // as its cause.
    let mut uow = UnitOfWork::new(billing.bus.clone());
    uow.caused_by(&ctx).record(OrderPaid {
        order_id: event.order_id,
        amount_cents: event.amount_cents,
    });
    uow.commit().await?; // any error converted with `?` is retryable
    Ok(())
}
// ANCHOR_END: handler
