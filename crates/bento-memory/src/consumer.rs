use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bento_application::BusError;
use bento_application::backend::{Delivery, Settle};
use bento_domain::Envelope;
use futures::Stream;
use tokio::sync::mpsc;

use crate::bus::Inner;
use crate::subscription::{Message, Subscription};

/// One consumer of a subscription, as the dispatcher's stream of deliveries.
pub(crate) struct Consumer {
    id: u64,
    rx: mpsc::UnboundedReceiver<Message>,
    settling: Arc<Settling>,
}

/// What settling a consumer's messages needs, behind one handle per delivery: its count is
/// touched by the consumer's side alone, not by the publishers that use the subscription and
/// the bus.
struct Settling {
    subscription: Arc<Subscription>,
    bus: Weak<Inner>,
}

impl Consumer {
    pub(crate) fn new(
        id: u64,
        rx: mpsc::UnboundedReceiver<Message>,
        subscription: Arc<Subscription>,
        bus: Weak<Inner>,
    ) -> Self {
        Self {
            id,
            rx,
            settling: Arc::new(Settling { subscription, bus }),
        }
    }
}

impl Stream for Consumer {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx).map(|message| {
            message.map(|message| Delivery {
                envelope: message.envelope.clone(),
                attempt: message.attempt,
                settle: Box::new(MemorySettle {
                    settling: self.settling.clone(),
                    unsettled: Some(message),
                }),
            })
        })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Messages routed to this consumer but never received go back to the subscription.
        self.rx.close();
        let mut leftovers = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            leftovers.push(message);
        }
        self.settling.subscription.disconnect(self.id, leftovers);
    }
}

/// Settles one message of the in-memory bus.
struct MemorySettle {
    settling: Arc<Settling>,
    /// The message while it is still owed a settlement: redelivered if dropped unsettled.
    unsettled: Option<Message>,
}

impl MemorySettle {
    /// Ends the message for good, giving its room back.
    fn settle_for_good(&mut self) {
        if let Some(message) = self.unsettled.take() {
            self.settling.subscription.settled(message);
        }
    }
}

#[async_trait]
impl Settle for MemorySettle {
    fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.settle_for_good();
        Ok(())
    }

    async fn retry(
        mut self: Box<Self>,
        envelope: &Envelope,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), BusError> {
        // The dispatcher hands back the same envelope it got; reuse our handle to it (and the
        // room the message holds).
        let mut message = self
            .unsettled
            .take()
            .unwrap_or_else(|| Message::outside_budget(Arc::new(envelope.clone()), next_attempt));
        message.attempt = next_attempt;
        let subscription = &self.settling.subscription;
        if delay.is_zero() {
            subscription.deliver(message);
        } else {
            let waiting = Redelivery {
                subscription: subscription.clone(),
                message: Some(message),
            };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                waiting.deliver();
            });
        }
        Ok(())
    }

    async fn dead_letter(
        mut self: Box<Self>,
        dead_letter: Envelope,
        topic: &str,
    ) -> Result<(), BusError> {
        let bus = self.settling.bus.upgrade().ok_or(BusError::Closed)?;
        bus.publish_now(topic, dead_letter, true).await;
        self.settle_for_good();
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), BusError> {
        // Dropping an unsettled message hands it back.
        Ok(())
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        if let Some(mut message) = self.unsettled.take() {
            tracing::debug!(subscription = %self.settling.subscription.name, "message given back unsettled; redelivering");
            message.attempt += 1;
            self.settling.subscription.deliver(message);
        }
    }
}

/// A message waiting out a retry delay; if the wait is dropped (its runtime shuts down), the
/// message's room goes back to the subscription.
struct Redelivery {
    subscription: Arc<Subscription>,
    message: Option<Message>,
}

impl Redelivery {
    fn deliver(mut self) {
        if let Some(message) = self.message.take() {
            self.subscription.deliver(message);
        }
    }
}

impl Drop for Redelivery {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.subscription.settled(message);
        }
    }
}
