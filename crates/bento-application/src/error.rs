use std::fmt;
use std::time::Duration;

use crate::FailureKind;

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload's content type has no codec here.
    #[error("no codec for content type `{content_type}` (event type `{event_type}`)")]
    UnsupportedContentType {
        /// The content type found on the message.
        content_type: String,
        /// The event type the message claims to carry.
        event_type: String,
    },
    /// The bytes are not a valid encoding of the event.
    #[error("cannot decode `{event_type}`: {reason}")]
    Decode {
        /// The event type being decoded.
        event_type: String,
        /// What the decoder said.
        reason: String,
    },
    /// The event could not be encoded.
    #[error("cannot encode `{event_type}`: {reason}")]
    Encode {
        /// The event type being encoded.
        event_type: String,
        /// What the encoder said.
        reason: String,
    },
}

/// An error from a [`crate::MessageBus`]: publishing, subscribing or connecting.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The event could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The broker could not be reached or the connection failed.
    #[error("cannot reach the {backend} broker at {address}: {reason}")]
    Connection {
        /// Backend name (`pulsar`, `kafka`).
        backend: &'static str,
        /// Where it was looked for.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker refused or failed to store a message.
    #[error("publishing to topic `{topic}` failed: {reason}")]
    Publish {
        /// The topic.
        topic: String,
        /// What went wrong.
        reason: String,
    },
    /// A subscription could not be created.
    #[error("subscribing `{subscription}` to `{topic}` failed: {reason}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// The subscription name.
        subscription: String,
        /// What went wrong.
        reason: String,
    },
    /// The backend does not support what was asked, and says why.
    #[error("the {backend} backend does not support {what}: {reason}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The feature asked for.
        what: String,
        /// Why not.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: String,
        /// How long it was given.
        after: Duration,
    },
    /// The bus or subscription was shut down.
    #[error("the message bus is shut down")]
    Closed,
    /// Anything else the backend reports.
    #[error("{0}")]
    Other(String),
}

/// Whether a failed handler should be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transient failure (a timeout, a lock): retry per the [`crate::RetryPolicy`].
    Retryable,
    /// A failure that another attempt cannot fix (invalid data): dead-letter at once.
    Permanent,
}

/// The error a [`crate::Handler`] returns.
///
/// Any `std::error::Error` converts into a *retryable* `HandlerError` with `?`; say
/// [`HandlerError::permanent`] when retrying cannot help.
pub struct HandlerError {
    kind: ErrorKind,
    message: String,
    failure: Option<FailureKind>,
}

impl HandlerError {
    /// A transient failure: the message is retried with backoff.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.to_string(),
            failure: None,
        }
    }

    /// A failure retrying cannot fix: the message goes to the dead-letter topic at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.to_string(),
            failure: None,
        }
    }

    /// The payload could not be decoded: dead-letter at once.
    pub fn undecodable(message: impl fmt::Display) -> Self {
        Self {
            failure: Some(FailureKind::Undecodable),
            ..Self::permanent(message)
        }
    }

    /// No handler knows this event type: dead-letter at once.
    pub fn unknown_event_type(event_type: &str) -> Self {
        Self {
            failure: Some(FailureKind::UnknownEventType),
            ..Self::permanent(format!("no handler for event type `{event_type}`"))
        }
    }

    /// Why a message that failed with this error is dead-lettered.
    pub fn failure_kind(&self) -> FailureKind {
        match (self.failure, self.kind) {
            (Some(kind), _) => kind,
            (None, ErrorKind::Permanent) => FailureKind::Permanent,
            (None, ErrorKind::Retryable) => FailureKind::RetriesExhausted,
        }
    }

    /// Retryable or permanent.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retryable(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind} failure: {}", self.message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}
