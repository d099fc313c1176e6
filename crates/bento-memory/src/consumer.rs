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

use crate::budget::Room;
use crate::bus::Inner;
use crate::subscription::{Message, Subscription};

/// One consumer of a subscription, as the dispatcher's stream of deliveries.
pub(crate) struct Consumer {
    id: u64,
    rx: mpsc::UnboundedReceiver<Message>,
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
            subscription,
            bus,
        }
    }
}

impl Stream for Consumer {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx).map(|message| {
            message.map(
                |Message {
                     envelope,
                     attempt,
                     room,
                 }| Delivery {
                    envelope: envelope.clone(),
                    attempt,
                    settle: Box::new(MemorySettle {
                        subscription: self.subscription.clone(),
                        bus: self.bus.clone(),
                        unsettled: Some(envelope),
                        attempt,
                        room,
                    }),
                },
            )
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
        self.subscription.disconnect(self.id, leftovers);
    }
}

/// Settles one message of the in-memory bus.
struct MemorySettle {
    subscription: Arc<Subscription>,
    bus: Weak<Inner>,
    /// The message while it is still owed a settlement; redelivered if dropped unsettled.
    unsettled: Option<Arc<Envelope>>,
    attempt: u32,
    /// Given back to the subscription when the message is settled for good.
    room: Option<Room>,
}

impl MemorySettle {
    fn redeliver_later(
        subscription: &Arc<Subscription>,
        envelope: Arc<Envelope>,
        attempt: u32,
        room: Option<Room>,
        delay: Duration,
    ) {
        let subscription = subscription.clone();
        let message = Message {
            envelope,
            attempt,
            room,
        };
        if delay.is_zero() {
            subscription.deliver(message);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                subscription.deliver(message);
            });
        }
    }
}

#[async_trait]
impl Settle for MemorySettle {
    fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.unsettled = None;
        Ok(())
    }

    async fn retry(
        mut self: Box<Self>,
        envelope: &Envelope,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), BusError> {
        // The dispatcher hands back the same envelope it got; reuse our handle to it.
        let envelope = self
            .unsettled
            .take()
            .unwrap_or_else(|| Arc::new(envelope.clone()));
        let room = self.room.take();
        Self::redeliver_later(&self.subscription, envelope, next_attempt, room, delay);
        Ok(())
    }

    async fn dead_letter(
        mut self: Box<Self>,
        dead_letter: Envelope,
        topic: &str,
    ) -> Result<(), BusError> {
        let bus = self.bus.upgrade().ok_or(BusError::Closed)?;
        bus.publish_now(topic, dead_letter, true).await;
        self.unsettled = None;
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), BusError> {
        // Dropping an unsettled message hands it back.
        Ok(())
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        if let Some(envelope) = self.unsettled.take() {
            tracing::debug!(subscription = %self.subscription.name, "message given back unsettled; redelivering");
            self.subscription.deliver(Message {
                envelope,
                attempt: self.attempt + 1,
                room: self.room.take(),
            });
        }
    }
}
