use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bento_domain::MessageId;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::{Context, Handler, HandlerError};

/// Remembers which messages were handled, over a bounded window of the most recent ones, so
/// that a message redelivered or republished to this process while it runs is handled once.
///
/// At-least-once delivery means a handler may see a message again (a crash before the ack, a
/// replay from the dead-letter topic, a producer resend). Wrap a handler in [`Idempotent`] with
/// an inbox, or add an [`crate::layer::InboxLayer`] to its subscription, and the duplicate is acknowledged without running the handler. The window is per
/// process and in memory: share one inbox between the handlers of a subscription, and size it
/// to cover the redelivery horizon you expect.
///
/// It is a deduplication window, not exactly-once effects: it is lost on restart, not shared
/// between instances, and records a message after its handler returned rather than in the
/// transaction of the handler's writes. A delivery after a restart, a delivery to another
/// instance, or a crash between the handler's writes and the ack runs the handler again.
#[derive(Clone, Debug)]
pub struct Inbox {
    state: Arc<Mutex<InboxState>>,
}

#[derive(Debug)]
struct InboxState {
    capacity: usize,
    handled: HashSet<MessageId>,
    order: VecDeque<MessageId>,
    in_flight: HashSet<MessageId>,
}

impl Inbox {
    /// An inbox that remembers the last `capacity` handled message ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(InboxState {
                capacity: capacity.max(1),
                handled: HashSet::with_capacity(capacity),
                order: VecDeque::with_capacity(capacity),
                in_flight: HashSet::new(),
            })),
        }
    }

    /// Whether `id` was handled successfully within the window.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.state.lock().handled.contains(id)
    }

    /// Claims `id` for handling: `Claim::Fresh` the first time, `Claim::Handled` if it was
    /// handled already, `Claim::InFlight` while another delivery of it is being handled.
    pub(crate) fn claim(&self, id: MessageId) -> Claim {
        let mut state = self.state.lock();
        if state.handled.contains(&id) {
            Claim::Handled
        } else if !state.in_flight.insert(id) {
            Claim::InFlight
        } else {
            Claim::Fresh
        }
    }

    fn finish(&self, id: MessageId, success: bool) {
        let mut state = self.state.lock();
        state.in_flight.remove(&id);
        if success && state.handled.insert(id) {
            state.order.push_back(id);
            if state.order.len() > state.capacity
                && let Some(oldest) = state.order.pop_front()
            {
                state.handled.remove(&oldest);
            }
        }
    }
}

pub(crate) enum Claim {
    Fresh,
    Handled,
    InFlight,
}

/// A handler that runs each message id at most once per [`Inbox`] window; duplicates are
/// acknowledged without running the inner handler.
///
/// ```
/// # use bento_application::*;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Paid { id: String }
/// async fn ship_order(event: Paid, _ctx: Context) -> Result<(), HandlerError> { Ok(()) }
/// let inbox = Inbox::with_capacity(100_000);
/// let handler = Idempotent::new(ship_order, inbox);
/// ```
#[derive(Clone, Debug)]
pub struct Idempotent<H> {
    inner: H,
    inbox: Inbox,
}

impl<H> Idempotent<H> {
    /// Wraps `inner`, remembering handled ids in `inbox`.
    pub fn new(inner: H, inbox: Inbox) -> Self {
        Self { inner, inbox }
    }
}

impl<E, H> Handler<E> for Idempotent<H>
where
    E: Send + 'static,
    H: Handler<E>,
{
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn call(&self, event: E, ctx: Context) -> Self::Future {
        let id = ctx.message_id();
        match self.inbox.claim(id) {
            Claim::Handled => {
                tracing::debug!(message_id = %id, "duplicate message acknowledged without handling");
                Box::pin(async { Ok(()) })
            }
            Claim::InFlight => Box::pin(async move {
                Err(HandlerError::retryable(format!(
                    "message {id} is already being handled; retrying later"
                )))
            }),
            Claim::Fresh => {
                let guard = FinishOnDrop::new(self.inbox.clone(), id);
                let handling = self.inner.call(event, ctx);
                Box::pin(async move {
                    // Own the whole guard here: it must live, and finish, with the handling.
                    let mut guard = guard;
                    let result = handling.await;
                    guard.success = result.is_ok();
                    result
                })
            }
        }
    }
}

/// Releases the in-flight claim even if the handler panics or its future is dropped.
pub(crate) struct FinishOnDrop {
    inbox: Inbox,
    id: MessageId,
    /// Set once the handler succeeded: only then is the id remembered as handled.
    pub(crate) success: bool,
}

impl FinishOnDrop {
    pub(crate) fn new(inbox: Inbox, id: MessageId) -> Self {
        Self {
            inbox,
            id,
            success: false,
        }
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.inbox.finish(self.id, self.success);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_bounded_and_forgets_the_oldest() {
        let inbox = Inbox::with_capacity(2);
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        for id in &ids {
            assert!(matches!(inbox.claim(*id), Claim::Fresh));
            inbox.finish(*id, true);
        }
        assert!(!inbox.contains(&ids[0]), "oldest forgotten");
        assert!(inbox.contains(&ids[1]) && inbox.contains(&ids[2]));
    }

    #[test]
    fn failures_are_not_remembered() {
        let inbox = Inbox::with_capacity(10);
        let id = MessageId::new();
        assert!(matches!(inbox.claim(id), Claim::Fresh));
        assert!(matches!(inbox.claim(id), Claim::InFlight));
        inbox.finish(id, false);
        assert!(
            matches!(inbox.claim(id), Claim::Fresh),
            "a failed message may be retried"
        );
    }
}
