//! The bounded hand-off between a subscription's pollers and the dispatcher.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bento_application::backend::Delivery;
use futures::Stream;
use tokio::sync::mpsc;

/// Receive bursts that may wait between the pollers and the dispatcher (a burst is at most
/// 64 records, so at most 512 deliveries). When they are all taken the pollers stop taking
/// records from librdkafka, whose own prefetch queue then fills up to
/// `queued.max.messages.kbytes` and stops fetching: back-pressure without pausing partitions
/// (a paused partition loses what librdkafka had prefetched and must fetch it again).
///
/// Handed over a burst at a time rather than one by one: a channel operation, and at most one
/// wake-up of the dispatcher, per burst instead of per record.
const HANDOFF_BURSTS: usize = 8;

/// Deliveries handed over together.
pub(crate) type Burst = Vec<Delivery>;

/// The dispatcher's side of the hand-off: the deliveries the pollers produced.
pub(crate) struct Deliveries {
    rx: mpsc::Receiver<Burst>,
    /// The rest of the burst being taken.
    current: std::vec::IntoIter<Delivery>,
}

impl Deliveries {
    /// A bounded hand-off for pollers to feed.
    pub(crate) fn channel() -> (mpsc::Sender<Burst>, Deliveries) {
        let (tx, rx) = mpsc::channel(HANDOFF_BURSTS);
        let current = Vec::new().into_iter();
        (tx, Deliveries { rx, current })
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery>> {
        loop {
            if let Some(delivery) = self.current.next() {
                return Poll::Ready(Some(delivery));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(burst) => self.current = burst.into_iter(),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// Passes the `ready` deliveries to the dispatcher if the hand-off has room for them.
pub(super) fn hand_over(tx: &mpsc::Sender<Burst>, ready: &mut Burst) {
    if ready.is_empty() {
        return;
    }
    match tx.try_send(std::mem::take(ready)) {
        Ok(()) => {}
        // Closed: the poller sees it on its next reserve and stops.
        Err(mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back)) => {
            *ready = back;
        }
    }
}
