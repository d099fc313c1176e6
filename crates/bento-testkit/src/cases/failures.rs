//! Failure cases: retries, dead letters with their cause, undecodable payloads, panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bento_application::{Context, DeadLetterPolicy, HandlerError, SubscriptionSpec, wire};
use bento_domain::{DomainEvent, Envelope};

use super::{Ping, Setup, decode, header, ping, setup, unique};
use crate::{Backend, Case, Collector};

/// A retryable failure is retried with backoff until the handler succeeds; no dead letter.
pub async fn retry_then_success(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::RetryThenSuccess, "retry").await else {
        return;
    };
    let spec = s.failing_spec("flaky", 5);
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let attempts = Collector::new();
    let handler = {
        let attempts = attempts.clone();
        move |_: Ping, ctx: Context| {
            attempts.record(&ctx);
            async move {
                if ctx.attempt() < 3 {
                    Err(HandlerError::retryable(format!(
                        "flaky on attempt {}",
                        ctx.attempt()
                    )))
                } else {
                    Ok(())
                }
            }
        }
    };
    let sub = s.subscribe(spec, handler).await;
    s.publish(&ping("k", 1)).await;
    let seen = attempts.wait_for(3, s.patience).await;
    let numbers: Vec<u32> = seen.iter().map(|c| c.attempt).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(30),
        "retry waited for its backoff"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.len(), 3, "no attempt after success");
    assert!(dead.is_empty(), "nothing dead-lettered");
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}

async fn expect_dead_letter(
    s: &Setup,
    spec: SubscriptionSpec,
    handler: impl bento_application::Handler<Ping>,
    failure: &str,
    attempts: u32,
    reason_contains: &str,
) -> Envelope {
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let subscription = spec.name.clone();
    let sub = s.subscribe(spec, handler).await;
    let event = ping("doomed", 1);
    s.publish(&event).await;
    let letter = dead.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(decode(&letter), event, "original payload kept");
    assert_eq!(letter.event_type, Ping::EVENT_TYPE);
    assert_eq!(header(&letter, wire::DLQ_FAILURE), failure);
    assert_eq!(header(&letter, wire::DLQ_ATTEMPTS), attempts.to_string());
    assert!(
        header(&letter, wire::DLQ_REASON).contains(reason_contains),
        "reason: {}",
        header(&letter, wire::DLQ_REASON)
    );
    assert!(header(&letter, wire::DLQ_ORIGINAL_TOPIC).ends_with(&s.topic));
    assert_eq!(header(&letter, wire::DLQ_SUBSCRIPTION), subscription);
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
    letter
}

/// A handler that fails every call with `error()`, and the count of its calls.
fn always_failing(
    error: fn() -> HandlerError,
) -> (Arc<AtomicU32>, impl bento_application::Handler<Ping>) {
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        move |_: Ping, _: Context| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(error()) }
        }
    };
    (calls, handler)
}

/// A handler that keeps failing is dead-lettered after the last attempt, with the cause.
pub async fn retries_exhausted_dead_letter(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::RetriesExhausted, "exhausted").await else {
        return;
    };
    let spec = s.failing_spec("hopeless", 3);
    let (calls, handler) = always_failing(|| HandlerError::retryable("database unavailable"));
    expect_dead_letter(
        &s,
        spec,
        handler,
        "retries-exhausted",
        3,
        "database unavailable",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A permanent failure is dead-lettered at once.
pub async fn permanent_failure_dead_letter(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::PermanentFailure, "permanent").await else {
        return;
    };
    let spec = s.failing_spec("strict", 5);
    let (calls, handler) = always_failing(|| HandlerError::permanent("invalid email address"));
    expect_dead_letter(&s, spec, handler, "permanent", 1, "invalid email address").await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no retry of a permanent failure"
    );
}

/// An undecodable payload is dead-lettered and the consumer goes on with the next message.
pub async fn undecodable_dead_letter(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::Undecodable, "undecodable").await else {
        return;
    };
    let spec = s
        .spec("decoder")
        .dead_letter(DeadLetterPolicy::to_topic(unique("undecodable-dlq")));
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let good = Collector::new();
    let handler = {
        let good = good.clone();
        move |_: Ping, ctx: Context| {
            good.record(&ctx);
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let sub = s.subscribe(spec, handler).await;
    let garbage = Envelope::new(
        Ping::EVENT_TYPE,
        Ping::VERSION,
        "application/json",
        &b"\x00not json{"[..],
    )
    .with_ordering_key("bad");
    let garbage_id = garbage.id;
    s.publish_envelope(garbage).await;
    s.publish(&ping("fine", 1)).await;
    let letter = dead.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(letter.id, garbage_id);
    assert_eq!(&letter.payload[..], b"\x00not json{");
    assert_eq!(header(&letter, wire::DLQ_FAILURE), "undecodable");
    assert!(header(&letter, wire::DLQ_REASON).contains(Ping::EVENT_TYPE));
    let handled = good.wait_for(1, s.patience).await;
    assert_eq!(decode(&handled[0].envelope), ping("fine", 1));
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}

/// A panicking handler counts as a failed one; the consumer survives and goes on.
pub async fn panicking_handler(backend: &dyn Backend) {
    let Some(s) = setup(backend, Case::PanickingHandler, "panic").await else {
        return;
    };
    let spec = s.failing_spec("panicky", 2);
    let (dead, dlq_sub) = s.watch_dead_letters(&spec).await;
    let good = Collector::new();
    let handler = {
        let good = good.clone();
        move |event: Ping, ctx: Context| {
            let good = good.clone();
            async move {
                if event.key == "explode" {
                    panic!("boom in handler");
                }
                good.record(&ctx);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let sub = s.subscribe(spec, handler).await;
    s.publish(&ping("explode", 1)).await;
    s.publish(&ping("calm", 1)).await;
    let letter = dead.wait_for(1, s.patience).await.remove(0).envelope;
    assert_eq!(decode(&letter).key, "explode");
    assert_eq!(
        header(&letter, wire::DLQ_ATTEMPTS),
        "2",
        "a panic is retried like any failure"
    );
    assert!(header(&letter, wire::DLQ_REASON).contains("boom in handler"));
    good.wait_for(1, s.patience).await;
    s.publish(&ping("calm", 2)).await;
    good.wait_for(2, s.patience).await;
    sub.shutdown().await.expect("shutdown");
    dlq_sub.shutdown().await.expect("shutdown");
}
