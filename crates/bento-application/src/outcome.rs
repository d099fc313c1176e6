//! What became of one delivery: the value a handler stack returns and the dispatcher settles.

use std::time::Duration;

use crate::{FailureKind, HandlerError};

/// How one delivery ends. Every layer of a handler stack returns one, and the dispatcher
/// settles the message on the broker exactly as the outermost layer says.
///
/// A handler's `Result<(), HandlerError>` becomes an outcome with [`Outcome::from`]: `Ok` is
/// [`Outcome::Ack`], a retryable error [`Outcome::Retry`] (after the delay the handler asked
/// for, if any), a permanent one [`Outcome::DeadLetter`]. The retry layer then decides, from
/// the subscription's retry policy, when a retry comes or whether attempts are exhausted.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The message is handled: acknowledge it.
    Ack,
    /// The message failed and is worth another attempt.
    Retry {
        /// Why it failed.
        error: HandlerError,
        /// How long to wait before the next attempt. `None` until a retry layer (or the
        /// handler, with [`HandlerError::retry_after`]) decided; the dispatcher reads `None`
        /// as "at once".
        after: Option<Duration>,
    },
    /// The message cannot be handled: store it on the dead-letter topic with the reason.
    DeadLetter {
        /// Why, as written in the dead letter's `bento-dlq-failure` header.
        failure: FailureKind,
        /// The error that decided it.
        error: HandlerError,
    },
}

impl Outcome {
    /// A retry of `error`, at the time the error asks for if it does.
    pub fn retry(error: HandlerError) -> Self {
        let after = error.requested_delay();
        Outcome::Retry { error, after }
    }

    /// A dead letter for `error`, with the failure kind the error names.
    pub fn dead_letter(error: HandlerError) -> Self {
        Outcome::DeadLetter {
            failure: error.failure_kind(),
            error,
        }
    }

    /// The error of a failed delivery; `None` for [`Outcome::Ack`].
    pub fn error(&self) -> Option<&HandlerError> {
        match self {
            Outcome::Ack => None,
            Outcome::Retry { error, .. } | Outcome::DeadLetter { error, .. } => Some(error),
        }
    }

    /// A short stable name: `ack`, `retry` or `dead-letter` (for logs, metrics and spans).
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Retry { .. } => "retry",
            Outcome::DeadLetter { .. } => "dead-letter",
        }
    }
}

impl From<Result<(), HandlerError>> for Outcome {
    fn from(result: Result<(), HandlerError>) -> Self {
        match result {
            Ok(()) => Outcome::Ack,
            Err(error) if error.is_retryable() => Outcome::retry(error),
            Err(error) => Outcome::dead_letter(error),
        }
    }
}

impl From<HandlerError> for Outcome {
    fn from(error: HandlerError) -> Self {
        Outcome::from(Err(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_outcomes() {
        assert!(matches!(Outcome::from(Ok(())), Outcome::Ack));
        let retry = Outcome::from(HandlerError::retry_after(
            Duration::from_secs(30),
            "rate limited",
        ));
        assert!(
            matches!(retry, Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(30))
        );
        assert!(matches!(
            Outcome::from(HandlerError::retryable("down")),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            Outcome::from(HandlerError::undecodable("garbage")),
            Outcome::DeadLetter {
                failure: FailureKind::Undecodable,
                ..
            }
        ));
    }
}
