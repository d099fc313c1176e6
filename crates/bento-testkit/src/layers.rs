//! Conformance of the handler stack: what a user-defined layer sees on every backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bento_application::domain::Envelope;
use bento_application::layer::Layer;
use bento_application::{
    Context, DeliveryObserver, EnvelopeHandler, FailureKind, HandlerError, Observation, Outcome,
    wire,
};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::cases::{Ping, decode, header, ping, setup};
use crate::{Backend, Case, Collector};

/// What the recording layer saw of one delivery.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Ack,
    Retry {
        after: Option<Duration>,
        panic: bool,
    },
    DeadLetter {
        failure: FailureKind,
        panic: bool,
    },
    /// Told to an observer: the delivery ended without an outcome.
    Abandoned,
}

/// Per message key: (attempt, when, outcome) of each delivery, in order.
type Log = Arc<Mutex<BTreeMap<String, Vec<(u32, Instant, Seen)>>>>;

/// A layer as a user writes one: it records the outcome of every delivery it wraps.
#[derive(Clone, Default)]
struct RecordLayer {
    log: Log,
}

struct Record<S> {
    inner: S,
    log: Log,
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            log: self.log.clone(),
        }
    }
}

impl<S: EnvelopeHandler> EnvelopeHandler for Record<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let key = decode(ctx.envelope()).key;
        let attempt = ctx.attempt();
        let log = self.log.clone();
        Box::pin(self.inner.handle(ctx).map(move |outcome| {
            log.lock()
                .entry(key)
                .or_default()
                .push((attempt, Instant::now(), seen(&outcome)));
            outcome
        }))
    }
}

/// An observer as a user writes one: it records the outcome of every delivery.
#[derive(Clone, Default)]
struct RecordObserver {
    log: Log,
}

impl DeliveryObserver for RecordObserver {
    fn started(&self, ctx: &Context) -> Observation {
        Observation::marked(u64::from(ctx.attempt()))
    }

    fn finished(&self, envelope: &Envelope, observation: Observation, outcome: Option<&Outcome>) {
        let attempt = u32::try_from(observation.mark).unwrap_or(u32::MAX);
        self.log
            .lock()
            .entry(decode(envelope).key)
            .or_default()
            .push((
                attempt,
                Instant::now(),
                outcome.map_or(Seen::Abandoned, seen),
            ));
    }
}

fn seen(outcome: &Outcome) -> Seen {
    match outcome {
        Outcome::Ack => Seen::Ack,
        Outcome::Retry { error, after } => Seen::Retry {
            after: *after,
            panic: error.is_panic(),
        },
        Outcome::DeadLetter { failure, error } => Seen::DeadLetter {
            failure: *failure,
            panic: error.is_panic(),
        },
        other => panic!("an outcome this case does not know: {other:?}"),
    }
}

/// How long the handler asks to wait before its second attempt of the `later` message.
const ASKED_DELAY: Duration = Duration::from_millis(600);

/// A layer added to a subscription sees each delivery's final outcome exactly once: an ack, a
/// retry with the delay the handler asked for, a permanent failure's dead letter, and a panic
/// as a retryable failure and then, attempts exhausted, as a dead letter. So do the
/// subscription's observer (called by the dispatcher) and a second observer (run as a layer).
pub async fn layer_sees_every_outcome(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::LayerSeesEveryOutcome, "layers").await else {
        return;
    };
    let recorder = RecordLayer::default();
    let (observer, second) = (RecordObserver::default(), RecordObserver::default());
    let spec = s
        .failing_spec("recorded", 2)
        .layer(recorder.clone())
        .observe(observer.clone())
        .observe(second.clone());
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let handler = |event: Ping, ctx: Context| async move {
        match event.key.as_str() {
            "later" if ctx.attempt() == 1 => Err(HandlerError::retry_after(
                ASKED_DELAY,
                "the downstream API said: come back later",
            )),
            "bad" => Err(HandlerError::permanent("not a valid ping")),
            "explode" => panic!("boom in handler"),
            _ => Ok(()),
        }
    };
    let sub = s.subscribe(spec, handler).await;
    for key in ["ok", "later", "bad", "explode"] {
        s.publish(&ping(key, 1)).await;
    }

    check_dead_letters(&dead, s.patience).await;
    // Wait until `later` is acknowledged, then a little longer: nothing more may arrive.
    wait_until_recorded(&recorder.log, "later", 2, s.patience).await;
    tokio::time::sleep(Duration::from_millis(500).max(s.settle)).await;
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
    for (who, log) in [
        ("the layer", &recorder.log),
        ("the observer", &observer.log),
        ("the second observer", &second.log),
    ] {
        check_outcomes(who, log);
    }
}

/// The dead letters: the permanent failure's and the panic's, attempts exhausted.
async fn check_dead_letters(dead: &Collector, patience: Duration) {
    let letters = dead.wait_for(2, patience).await;
    let mut failures: Vec<(String, String)> = letters
        .iter()
        .map(|letter| {
            (
                decode(&letter.envelope).key,
                header(&letter.envelope, wire::DLQ_FAILURE).to_owned(),
            )
        })
        .collect();
    failures.sort();
    assert_eq!(
        failures,
        [
            ("bad".to_owned(), "permanent".to_owned()),
            ("explode".to_owned(), "retries-exhausted".to_owned())
        ]
    );
}

/// Waits until the layer recorded `count` deliveries of `key`.
async fn wait_until_recorded(log: &Log, key: &str, count: usize, patience: Duration) {
    let deadline = Instant::now() + patience;
    while recorded(log, key).len() < count {
        assert!(
            Instant::now() < deadline,
            "the deliveries of `{key}` never came: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each message's deliveries, as `who` saw them.
fn check_outcomes(who: &str, log: &Log) {
    let outcomes = |key: &str| -> Vec<(u32, Seen)> {
        recorded(log, key)
            .into_iter()
            .map(|(attempt, _, seen)| (attempt, seen))
            .collect()
    };
    assert_eq!(outcomes("ok"), [(1, Seen::Ack)], "as {who} saw it");
    assert_eq!(
        outcomes("later"),
        [
            (
                1,
                Seen::Retry {
                    after: Some(ASKED_DELAY),
                    panic: false
                }
            ),
            (2, Seen::Ack)
        ],
        "as {who} saw it"
    );
    assert_eq!(
        outcomes("bad"),
        [(
            1,
            Seen::DeadLetter {
                failure: FailureKind::Permanent,
                panic: false
            }
        )],
        "as {who} saw it"
    );
    let explode = outcomes("explode");
    assert!(
        matches!(
            explode.as_slice(),
            [
                (
                    1,
                    Seen::Retry {
                        after: Some(_),
                        panic: true
                    }
                ),
                (
                    2,
                    Seen::DeadLetter {
                        failure: FailureKind::RetriesExhausted,
                        panic: true
                    }
                )
            ]
        ),
        "a panic is a retryable failure, then a dead letter, as {who} saw it: {explode:?}"
    );
    let later = recorded(log, "later");
    let waited = later[1].1 - later[0].1;
    assert!(
        waited >= ASKED_DELAY - Duration::from_millis(100),
        "the retry came after {waited:?}, before the {ASKED_DELAY:?} the handler asked for ({who})"
    );
}

fn recorded(log: &Log, key: &str) -> Vec<(u32, Instant, Seen)> {
    log.lock().get(key).cloned().unwrap_or_default()
}
