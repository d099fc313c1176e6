//! Deduplication: a message id already handled is acknowledged without running the handler.

use std::time::Duration;

use futures::future::BoxFuture;
use tower_layer::Layer;

use crate::inbox::{Claim, FinishOnDrop};
use crate::{Context, EnvelopeHandler, HandlerError, Inbox, Outcome};

/// How long a delivery waits before trying again while another delivery of the same message
/// is being handled.
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(500);

/// Runs each message id at most once per [`Inbox`] window: a duplicate is acknowledged
/// without calling the handler inside, and a delivery of a message another delivery is still
/// handling comes back shortly after. Put it among a subscription's layers, so it records the
/// final outcome: only an acknowledged message counts as handled.
#[derive(Clone, Debug)]
pub struct InboxLayer {
    inbox: Inbox,
}

impl InboxLayer {
    /// Remembers handled ids in `inbox` (share one inbox among the layers that should
    /// deduplicate together).
    pub fn new(inbox: Inbox) -> Self {
        Self { inbox }
    }
}

impl<S> Layer<S> for InboxLayer {
    type Service = InboxService<S>;

    fn layer(&self, inner: S) -> InboxService<S> {
        InboxService {
            inner,
            inbox: self.inbox.clone(),
        }
    }
}

/// The handler an [`InboxLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct InboxService<S> {
    inner: S,
    inbox: Inbox,
}

impl<S: EnvelopeHandler> EnvelopeHandler for InboxService<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let id = ctx.message_id();
        match self.inbox.claim(id) {
            Claim::Handled => {
                tracing::debug!(message_id = %id, "duplicate message acknowledged without handling");
                Box::pin(std::future::ready(Outcome::Ack))
            }
            Claim::InFlight => Box::pin(std::future::ready(Outcome::Retry {
                error: HandlerError::retryable(format!("message {id} is already being handled")),
                after: Some(IN_FLIGHT_RETRY),
            })),
            Claim::Fresh => {
                let guard = FinishOnDrop::new(self.inbox.clone(), id);
                let handling = self.inner.handle(ctx);
                Box::pin(async move {
                    // Own the whole guard here: it must live, and finish, with the handling.
                    let mut guard = guard;
                    let outcome = handling.await;
                    guard.success = matches!(outcome, Outcome::Ack);
                    outcome
                })
            }
        }
    }
}
