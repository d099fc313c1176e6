use std::fmt;
use std::time::Duration;

/// How a retryable failure is tried again: exponential backoff with jitter and a cap.
///
/// Attempt 1 is the first delivery. After attempt `n` fails, the message is redelivered after
/// `initial_backoff * multiplier^(n-1)`, capped at `max_backoff`, with up to `jitter` of it
/// randomised away so that many failing messages do not come back in lock step.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first delivery included; after the last one the message is
    /// dead-lettered. `1` means no retry.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Growth factor between consecutive delays.
    pub multiplier: f64,
    /// Upper bound of any delay.
    pub max_backoff: Duration,
    /// Fraction (0.0..=1.0) of each delay that is randomised: `0.2` gives 80%..100% of it.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first failure dead-letters the message.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// `max_attempts` attempts, starting at `initial_backoff` and doubling.
    pub fn exponential(max_attempts: u32, initial_backoff: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial_backoff,
            ..Self::default()
        }
    }

    /// Sets the cap on any single delay.
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        self.max_backoff = cap;
        self
    }

    /// Sets the jitter fraction (clamped to 0.0..=1.0).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Whether a message that failed on attempt `attempt` gets another one.
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The delay, without jitter, before the attempt after `attempt`.
    pub fn base_backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let cap = self.max_backoff.as_secs_f64();
        Duration::from_secs_f64(secs.min(cap).max(0.0))
    }

    /// The delay, with jitter, before the attempt after `attempt`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.base_backoff(attempt);
        let jitter = self.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * fastrand::f64())
    }
}

/// What to do with messages that cannot be handled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// Dead-letter topic; by default `<topic>-<subscription>-DLQ`, Pulsar's own convention.
    pub topic: Option<String>,
    /// Keep the original message's headers on the dead letter (on by default); the envelope
    /// metadata and the failure details are always kept.
    pub drop_original_headers: bool,
}

impl DeadLetterPolicy {
    /// Dead letters go to `topic`.
    pub fn to_topic(topic: impl Into<String>) -> Self {
        Self {
            topic: Some(topic.into()),
            ..Self::default()
        }
    }

    /// The dead-letter topic for a subscription `subscription` reading `topic`.
    pub fn topic_for(&self, topic: &str, subscription: &str) -> String {
        match &self.topic {
            Some(explicit) => explicit.clone(),
            None => format!("{topic}-{subscription}-DLQ"),
        }
    }
}

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler said retrying cannot help.
    Permanent,
    /// Every attempt the retry policy allows failed.
    RetriesExhausted,
    /// The payload could not be decoded.
    Undecodable,
    /// No handler is registered for the event type.
    UnknownEventType,
}

impl FailureKind {
    /// The stable name written in the `bento-dlq-failure` header.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Permanent => "permanent",
            FailureKind::RetriesExhausted => "retries-exhausted",
            FailureKind::Undecodable => "undecodable",
            FailureKind::UnknownEventType => "unknown-event-type",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The failure details a dead letter carries next to the original message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why.
    pub failure: FailureKind,
    /// The last error message.
    pub reason: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The topic the message was read from.
    pub original_topic: String,
    /// The subscription that failed to handle it.
    pub subscription: String,
    /// The broker's own id of the original message, where it has one.
    pub broker_message_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let policy = RetryPolicy::exponential(10, Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500))
            .jitter(0.0);
        let delays: Vec<u128> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = RetryPolicy::exponential(3, Duration::from_millis(1000)).jitter(0.5);
        for _ in 0..1000 {
            let d = policy.backoff(1).as_millis();
            assert!((500..=1000).contains(&d), "{d} out of range");
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy::exponential(3, Duration::ZERO);
        assert!(policy.allows_retry_after(1));
        assert!(policy.allows_retry_after(2));
        assert!(!policy.allows_retry_after(3));
        assert!(!RetryPolicy::none().allows_retry_after(1));
    }

    #[test]
    fn dead_letter_topic_defaults_to_pulsar_convention() {
        let policy = DeadLetterPolicy::default();
        assert_eq!(policy.topic_for("orders", "billing"), "orders-billing-DLQ");
        assert_eq!(DeadLetterPolicy::to_topic("x").topic_for("a", "b"), "x");
    }
}
