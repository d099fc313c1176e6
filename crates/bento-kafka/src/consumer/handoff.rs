//! The bounded hand-off between a subscription's pollers and the dispatcher, and the pollers
//! themselves: they run inside the stream the dispatcher reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bento_application::backend::Delivery;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
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

/// The dispatcher's side of the hand-off: the deliveries the pollers produced, and the pollers.
///
/// The pollers are not tasks of their own: reading the stream runs them, so a subscription's
/// records are received, decoded, handled and settled on one task. Split over two tasks, each
/// record's allocations were freed on another thread than the one that made them, and its
/// shared counters and locks passed between cores: the dispatcher read about 240,000 records/s
/// that way, and about 330,000 on one task (2-core machine, Kafka 4.1.1, 1 KiB JSON events).
/// While the dispatcher does not read (all its handlers busy), the pollers wait with it, as they
/// did when the hand-off was full.
pub(crate) struct Deliveries {
    rx: mpsc::Receiver<Burst>,
    /// The rest of the burst being taken.
    current: std::vec::IntoIter<Delivery>,
    pollers: FuturesUnordered<BoxFuture<'static, ()>>,
}

impl Deliveries {
    /// A bounded hand-off for pollers to feed.
    pub(crate) fn channel() -> (mpsc::Sender<Burst>, Deliveries) {
        let (tx, rx) = mpsc::channel(HANDOFF_BURSTS);
        let current = Vec::new().into_iter();
        let pollers = FuturesUnordered::new();
        (
            tx,
            Deliveries {
                rx,
                current,
                pollers,
            },
        )
    }

    /// Runs `poller` whenever the deliveries are read.
    pub(crate) fn run(&mut self, poller: impl Future<Output = ()> + Send + 'static) {
        self.pollers.push(Box::pin(poller));
    }

    /// Runs the pollers until `until` completes, with nobody reading yet: a consumer group
    /// assigns partitions only to a member that polls.
    pub(crate) async fn drive<F: Future>(&mut self, until: F) -> F::Output {
        let mut until = std::pin::pin!(until);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = until.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            self.poll_pollers(cx);
            Poll::Pending
        })
        .await
    }

    fn poll_pollers(&mut self, cx: &mut TaskContext<'_>) {
        // `Ready(Some)` is a poller that ended; `Ready(None)`, none left.
        while let Poll::Ready(Some(())) = self.pollers.poll_next_unpin(cx) {}
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery>> {
        loop {
            if let Some(delivery) = self.current.next() {
                return Poll::Ready(Some(delivery));
            }
            self.poll_pollers(cx);
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(burst)) => self.current = burst.into_iter(),
                // Every poller ended (its consumer's stream did): nothing more will come.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
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
