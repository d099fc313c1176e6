//! The bounded hand-off between a subscription's pollers and the dispatcher.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bento_application::backend::Delivery;
use futures::Stream;
use tokio::sync::mpsc;

/// Deliveries that may wait between the pollers and the dispatcher. When they are all taken
/// the pollers stop taking records from librdkafka, whose own prefetch queue then fills up to
/// `queued.max.messages.kbytes` and stops fetching: back-pressure without pausing partitions
/// (a paused partition loses what librdkafka had prefetched and must fetch it again).
const HANDOFF_CAPACITY: usize = 512;

/// The dispatcher's side of the hand-off: the deliveries the pollers produced.
pub(crate) struct Deliveries {
    rx: mpsc::Receiver<Delivery>,
}

impl Deliveries {
    /// A bounded hand-off for pollers to feed.
    pub(crate) fn channel() -> (mpsc::Sender<Delivery>, Deliveries) {
        let (tx, rx) = mpsc::channel(HANDOFF_CAPACITY);
        (tx, Deliveries { rx })
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}

/// Passes `ready` deliveries to the dispatcher while the hand-off has room.
pub(super) fn hand_over(tx: &mpsc::Sender<Delivery>, ready: &mut VecDeque<Delivery>) {
    while let Some(delivery) = ready.pop_front() {
        match tx.try_send(delivery) {
            Ok(()) => {}
            // Closed: the poller sees it on its next reserve and stops.
            Err(
                mpsc::error::TrySendError::Full(delivery)
                | mpsc::error::TrySendError::Closed(delivery),
            ) => {
                ready.push_front(delivery);
                return;
            }
        }
    }
}
