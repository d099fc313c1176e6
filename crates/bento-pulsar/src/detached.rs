//! Waiting for the pulsar crate's connecting operations without ever cancelling them.
//!
//! The pulsar crate marks a broker address as "connecting" while it dials, and clears the
//! mark only when the dial ends. A future dropped mid-dial (a timeout firing while the broker
//! is down) leaves the mark behind, and from then on every lookup, consumer and producer of
//! that client waits for a connection that never comes, even once the broker is back. So an
//! operation that may dial runs on a task of its own and always finishes; a deadline only
//! stops the waiting. What such an operation creates after its deadline is dropped, which
//! closes it.

use std::future::Future;
use std::time::Duration;

/// Runs `operation` to its end on a task of its own, and waits for it at most `deadline`;
/// `None` when the deadline passed first (the operation carries on, and its result is
/// dropped).
pub(crate) async fn within<T>(
    deadline: Duration,
    operation: impl Future<Output = T> + Send + 'static,
) -> Option<T>
where
    T: Send + 'static,
{
    let task = tokio::spawn(operation);
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(output)) => Some(output),
        // The operation panicked: the pulsar crate's panic, passed on as it is.
        Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Cancelled: only a runtime shutting down cancels it, which ends the wait too.
        Ok(Err(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn an_operation_within_its_deadline_gives_its_output() {
        assert_eq!(within(Duration::from_secs(5), async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn an_operation_past_its_deadline_still_runs_to_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let late = within(Duration::from_millis(10), async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        })
        .await;
        assert_eq!(late, None, "the wait ends at the deadline");
        assert!(!finished.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the operation was not cancelled with the wait"
        );
    }

    #[tokio::test]
    async fn dropping_the_wait_does_not_cancel_the_operation() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let wait = within(Duration::from_secs(5), async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        // The caller gives up first, as a timeout around it or a closing consumer would.
        let _ = tokio::time::timeout(Duration::from_millis(5), wait).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(finished.load(Ordering::SeqCst));
    }
}
