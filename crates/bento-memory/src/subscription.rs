use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use bento_application::{BusError, SubscriptionKind};
use bento_domain::Envelope;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::budget::Budget;

/// A message on its way to a consumer, with its delivery attempt.
///
/// It may hold room in its subscription's budget, which [`Subscription::settled`] gives back
/// once it is settled for good (acknowledged or dead-lettered); a retry or a redelivery keeps
/// it. The room's size follows from the envelope, and the budget is the subscription's, so
/// the message carries only a flag: it stays small (the blocks of the consumers' channels, 32
/// messages each, then stay within the allocator's per-thread cache), and a publish does not
/// touch the count of a handle shared with the consumers.
pub(crate) struct Message {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) attempt: u32,
    holds_room: bool,
}

impl Message {
    /// A message that holds no room: a copy made outside the budget.
    pub(crate) fn outside_budget(envelope: Arc<Envelope>, attempt: u32) -> Self {
        Self {
            envelope,
            attempt,
            holds_room: false,
        }
    }
}

struct ConsumerSlot {
    id: u64,
    tx: mpsc::UnboundedSender<Message>,
}

#[derive(Default)]
struct State {
    consumers: Vec<ConsumerSlot>,
    /// Messages that arrived while no consumer was connected.
    backlog: VecDeque<Message>,
    next_shared: usize,
    next_consumer_id: u64,
}

/// One durable subscription of a topic and the consumers connected to it.
pub(crate) struct Subscription {
    pub(crate) topic: String,
    pub(crate) name: String,
    pub(crate) kind: SubscriptionKind,
    state: Mutex<State>,
    /// Bytes of unsettled messages (waiting, in a handler, or waiting for a retry) this
    /// subscription may still take; publishers wait for room beyond that.
    budget: Arc<Budget>,
}

impl Subscription {
    pub(crate) fn new(topic: &str, name: &str, kind: SubscriptionKind, capacity: usize) -> Self {
        Self {
            topic: topic.to_owned(),
            name: name.to_owned(),
            kind,
            state: Mutex::new(State::default()),
            budget: Budget::new(capacity),
        }
    }

    /// The first delivery of `envelope`, holding room for it, if there is some now and no
    /// publisher waits for room.
    pub(crate) fn try_reserve(&self, envelope: &Arc<Envelope>) -> Option<Message> {
        self.budget
            .try_take(self.budget.weight(envelope.payload.len()))
            .then(|| Self::first_delivery(envelope))
    }

    /// The first delivery of `envelope`, holding room for it once settled messages gave some
    /// back.
    pub(crate) async fn reserve(&self, envelope: &Arc<Envelope>) -> Message {
        self.budget
            .take(self.budget.weight(envelope.payload.len()))
            .await;
        Self::first_delivery(envelope)
    }

    fn first_delivery(envelope: &Arc<Envelope>) -> Message {
        Message {
            envelope: envelope.clone(),
            attempt: 1,
            holds_room: true,
        }
    }

    /// Ends `message` for good (acknowledged or dead-lettered): gives back its room.
    pub(crate) fn settled(&self, message: Message) {
        if message.holds_room {
            self.budget
                .give_back(self.budget.weight(message.envelope.payload.len()));
        }
    }

    /// Whether a publisher that just delivered to it should wait for its consumers to catch
    /// up (see [`Budget`]); never for a subscription with no consumer, whose backlog only a
    /// consumer to come will read.
    pub(crate) fn ahead(&self) -> bool {
        if !self.budget.ahead() {
            return false;
        }
        if self.unattended() {
            self.budget.mark_lagging();
            return false;
        }
        true
    }

    /// Waits for its consumers to catch up with the publishers, or briefly if they do not.
    pub(crate) async fn catch_up(&self) {
        self.budget.catch_up().await;
    }

    /// Whether no consumer is connected (its messages wait for one).
    pub(crate) fn unattended(&self) -> bool {
        let state = self.state.lock();
        !state.consumers.iter().any(|slot| !slot.tx.is_closed())
    }

    /// Connects a consumer; refused for a second consumer of an exclusive subscription.
    pub(crate) fn connect(&self) -> Result<(u64, mpsc::UnboundedReceiver<Message>), BusError> {
        let mut state = self.state.lock();
        state.consumers.retain(|slot| !slot.tx.is_closed());
        if self.kind == SubscriptionKind::Exclusive && !state.consumers.is_empty() {
            return Err(BusError::Subscribe {
                topic: self.topic.clone(),
                subscription: self.name.clone(),
                source: "the subscription is exclusive and already has a consumer".into(),
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let id = state.next_consumer_id;
        state.next_consumer_id += 1;
        state.consumers.push(ConsumerSlot { id, tx });
        let backlog: Vec<Message> = state.backlog.drain(..).collect();
        for message in backlog {
            Self::route(&mut state, self.kind, message);
        }
        Ok((id, rx))
    }

    /// Disconnects a consumer and hands its undelivered messages to the others.
    pub(crate) fn disconnect(&self, id: u64, leftovers: Vec<Message>) {
        let mut state = self.state.lock();
        state.consumers.retain(|slot| slot.id != id);
        for message in leftovers {
            Self::route(&mut state, self.kind, message);
        }
    }

    /// Hands a message to the consumer the subscription kind picks, or to the backlog.
    pub(crate) fn deliver(&self, message: Message) {
        let mut state = self.state.lock();
        Self::route(&mut state, self.kind, message);
    }

    fn route(state: &mut State, kind: SubscriptionKind, mut message: Message) {
        loop {
            let count = state.consumers.len();
            if count == 0 {
                state.backlog.push_back(message);
                return;
            }
            let index = match kind {
                SubscriptionKind::Exclusive | SubscriptionKind::Failover => 0,
                SubscriptionKind::KeyShared if message.envelope.ordering_key.is_some() => {
                    let mut hasher = DefaultHasher::new();
                    message.envelope.ordering_key.hash(&mut hasher);
                    (hasher.finish() % count as u64) as usize
                }
                SubscriptionKind::Shared | SubscriptionKind::KeyShared => {
                    state.next_shared = state.next_shared.wrapping_add(1);
                    state.next_shared % count
                }
                // Kinds newer than this bus are refused at subscribe.
                _ => 0,
            };
            match state.consumers[index].tx.send(message) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    state.consumers.remove(index);
                    message = back;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Message;

    #[test]
    fn a_message_stays_small_enough_for_the_allocators_thread_cache() {
        // A consumer's channel allocates blocks of 32 messages: at 24 bytes a block stays
        // under the 1 KiB beyond which glibc's allocator leaves its per-thread cache.
        assert!(std::mem::size_of::<Message>() <= 24);
    }
}
