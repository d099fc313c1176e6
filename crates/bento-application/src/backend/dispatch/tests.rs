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

/// Message number `seq` of a stream over `keys` ordering keys, its number as its payload.
fn delivery(seq: u64, keys: u64) -> Delivery {
    let mut envelope = wire::from_headers(Vec::<(&str, &str)>::new(), Default::default());
    envelope.ordering_key = Some(format!("k{}", seq % keys));
    envelope.payload = seq.to_string().into_bytes().into();
    Delivery {
        envelope: Arc::new(envelope),
        attempt: 1,
        settle: Box::new(Forget),
    }
}

/// A stream of `count` messages over eight ordering keys, each ready at once.
fn always_ready(count: usize) -> impl Stream<Item = Delivery> + Send + Unpin + 'static {
    let mut seq = 0u64;
    futures::stream::repeat_with(move || {
        seq += 1;
        delivery(seq, 8)
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

/// Records the order it handles messages in; every third message waits before it finishes,
/// the others finish on their first poll.
struct Record {
    seen: Arc<std::sync::Mutex<Vec<(String, u64)>>>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
}

impl EnvelopeHandler for Record {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let envelope = ctx.envelope();
        let key = envelope.ordering_key.clone().unwrap_or_default();
        let seq: u64 = std::str::from_utf8(&envelope.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        let (seen, running, most) = (
            self.seen.clone(),
            self.running.clone(),
            self.most_running.clone(),
        );
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        let record = move || {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key, seq));
            running.fetch_sub(1, Ordering::SeqCst);
            Outcome::Ack
        };
        if seq.is_multiple_of(3) {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                record()
            })
        } else {
            Box::pin(std::future::ready(record()))
        }
    }
}

/// Handlers that finish at once are settled as they are polled, the others wait in flight:
/// mixed, every message is handled once, each key's messages in order, never more than
/// `concurrency` at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_finish_at_once_and_those_that_wait_keep_each_keys_order() {
    const MESSAGES: u64 = 3_000;
    const CONCURRENCY: usize = 4;
    let messages = futures::stream::iter(1..=MESSAGES).map(|seq| delivery(seq, 7));
    let record = Record {
        seen: Arc::default(),
        running: Arc::default(),
        most_running: Arc::default(),
    };
    let (seen, most) = (record.seen.clone(), record.most_running.clone());
    let spec = SubscriptionSpec::named("mixed").concurrency(CONCURRENCY);
    let settings = DispatchSettings::new("mixed", spec, "mixed.dlq".to_owned());
    let subscription = spawn(messages, Arc::new(record), settings, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap_or_else(|p| p.into_inner()).len() < MESSAGES as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every message was handled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    subscription.shutdown().await.expect("shutdown");
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), MESSAGES as usize, "each message handled once");
    let mut last: HashMap<String, u64> = HashMap::new();
    for (key, seq) in seen {
        let before = last.insert(key.clone(), seq).unwrap_or(0);
        assert!(seq > before, "key {key}: {seq} handled after {before}");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= CONCURRENCY,
        "{most} handlers ran at once, concurrency {CONCURRENCY}"
    );
}
