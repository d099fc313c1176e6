//! What a backend author needs, and a service author does not: the dispatcher every backend
//! runs its consumer through, and the small pieces every backend would otherwise write again.
//!
//! A backend turns its consumer into a stream of [`Delivery`]s, each with a [`Settle`] that
//! knows how to acknowledge, retry or dead-letter that message on that broker, builds
//! [`DispatchSettings`] from the subscription's spec and calls [`spawn`]. The dispatcher runs
//! the subscription's handler stack, keeps per-key order and the concurrency bound, settles
//! each outcome and shuts down gracefully; the backend only moves bytes.

mod dispatch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::subscription::Closer;
pub use dispatch::{Delivery, DispatchSettings, Settle, spawn};

use crate::BusError;

/// A backend setting is invalid; says which, by its full key
/// (`messaging.kafka.bootstrap_servers: must not be empty`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{prefix}.{key}: {message}")]
pub struct ConfigError {
    prefix: &'static str,
    key: String,
    message: String,
}

impl ConfigError {
    /// `key` (below `prefix`, e.g. `security.username` below `messaging.kafka`) is invalid
    /// because of `message`.
    pub fn new(prefix: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            prefix,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The full key, e.g. `messaging.pulsar.service_url`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.prefix, self.key)
    }

    /// The key below the backend's prefix, e.g. `service_url`.
    pub fn relative_key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ConfigError> for BusError {
    fn from(error: ConfigError) -> Self {
        // `messaging.kafka` names the `kafka` backend.
        let backend = error.prefix.rsplit('.').next().unwrap_or(error.prefix);
        BusError::Config {
            backend: match backend {
                "pulsar" => "pulsar",
                "kafka" => "kafka",
                "memory" => "memory",
                _ => "messaging",
            },
            source: Box::new(error),
        }
    }
}

/// Whether a bus is still open: every publish and subscribe checks it, `close` shuts it once.
#[derive(Debug, Default)]
pub struct OpenGate {
    closed: AtomicBool,
}

impl OpenGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(BusError::Closed)` once the gate is shut.
    pub fn check(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    /// Shuts the gate; `true` if this call shut it (it was open), so closing work runs once.
    pub fn shut(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// Whether the gate is shut.
    pub fn is_shut(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Attempts at storing a retry or a dead letter before the message is handed back to the
/// broker.
pub const STORE_ATTEMPTS: u32 = 3;

/// Stores a retry or a dead letter with `store`, up to [`STORE_ATTEMPTS`] times with a growing
/// pause, as long as `still_ours` says the message is still this consumer's; the last error
/// when all failed. The caller then hands the message back to the broker, so that it comes
/// again rather than sitting unsettled.
pub async fn store_with_retries<F, Fut>(
    what: &str,
    still_ours: impl Fn() -> bool,
    mut store: F,
) -> Result<(), BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), BusError>>,
{
    let mut attempt = 1;
    loop {
        match store().await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < STORE_ATTEMPTS && still_ours() => {
                tracing::warn!(%error, attempt, "storing {what} failed; trying again");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The instant `delay` from now, for a retry's due time; a delay past what a timestamp can
/// hold is due at the end of time rather than an error.
pub fn due_in(delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| Utc::now().checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_shuts_once() {
        let gate = OpenGate::new();
        assert!(gate.check().is_ok());
        assert!(gate.shut());
        assert!(!gate.shut(), "a second close finds it shut");
        assert!(matches!(gate.check(), Err(BusError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_is_tried_again_then_given_up() {
        let tries = std::cell::Cell::new(0);
        let failing = store_with_retries(
            "a dead letter",
            || true,
            || {
                tries.set(tries.get() + 1);
                std::future::ready(Err(BusError::Closed))
            },
        )
        .await;
        assert!(failing.is_err());
        assert_eq!(tries.get(), STORE_ATTEMPTS);

        tries.set(0);
        let second_time_lucky = store_with_retries(
            "a retry",
            || true,
            || {
                tries.set(tries.get() + 1);
                std::future::ready(if tries.get() < 2 {
                    Err(BusError::Closed)
                } else {
                    Ok(())
                })
            },
        )
        .await;
        assert!(second_time_lucky.is_ok());
        assert_eq!(tries.get(), 2);
    }

    #[test]
    fn a_huge_delay_is_due_at_the_end_of_time() {
        assert_eq!(due_in(Duration::MAX), DateTime::<Utc>::MAX_UTC);
        let soon = due_in(Duration::from_secs(1)) - Utc::now();
        assert!(soon <= chrono::Duration::seconds(1) && soon > chrono::Duration::zero());
    }
}
