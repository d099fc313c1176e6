//! The dispatch loops driven by a stream that never makes them wait.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Settles nothing: the messages of these tests live only in the stream.
struct Forget;

#[async_trait]
impl Settle for Forget {
    fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }

    async fn retry(
        self: Box<Self>,
        _envelope: &Envelope,
        _next_attempt: u32,
        _delay: Duration,
    ) -> Result<(), BusError> {
        Ok(())
    }

    async fn dead_letter(
        self: Box<Self>,
        _dead_letter: Envelope,
        _topic: &str,
    ) -> Result<(), BusError> {
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
}

/// Counts what it handles.
struct Count(Arc<AtomicUsize>);

impl EnvelopeHandler for Count {
    fn handle(&self, _ctx: Context) -> BoxFuture<'static, Outcome> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Outcome::Ack))
    }
}

/// A stream of `count` messages over eight ordering keys, each ready at once.
fn always_ready(count: usize) -> impl Stream<Item = Delivery> + Send + Unpin + 'static {
    let mut seq = 0u64;
    futures::stream::repeat_with(move || {
        seq += 1;
        let mut envelope = wire::from_headers(Vec::<(&str, &str)>::new(), Default::default());
        envelope.ordering_key = Some(format!("k{}", seq % 8));
        Delivery {
            envelope: Arc::new(envelope),
            attempt: 1,
            settle: Box::new(Forget),
        }
    })
    .take(count)
}

/// The stream never makes the dispatcher wait, so its task never yields to see the stop
/// future (as a backend's channel would, every so often): the stop must be seen between
/// messages, not only when the stream runs dry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_is_seen_while_messages_keep_coming() {
    const MESSAGES: usize = 2_000_000;
    for concurrency in [1, 8] {
        let handled = Arc::new(AtomicUsize::new(0));
        let spec = SubscriptionSpec::named("busy").concurrency(concurrency);
        let settings = DispatchSettings::new("busy", spec, "busy.dlq".to_owned());
        let handler = Arc::new(Count(handled.clone()));
        let subscription = spawn(always_ready(MESSAGES), handler, settings, None);
        while handled.load(Ordering::SeqCst) < 1_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        subscription
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("c={concurrency}: shutdown failed: {e}"));
        let at_shutdown = handled.load(Ordering::SeqCst);
        assert!(
            at_shutdown < MESSAGES,
            "c={concurrency}: the dispatcher went through the whole stream before it stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            handled.load(Ordering::SeqCst),
            at_shutdown,
            "c={concurrency}: nothing handled once shutdown returned"
        );
    }
}
