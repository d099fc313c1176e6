use std::fmt;
use std::time::Duration;

use crate::FailureKind;

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("cannot decode `{event_type}`: {source}")]
    Decode {
        /// The event type being decoded.
        event_type: String,
        /// The decoder's error (or, where there is none, what was wrong).
        source: BoxError,
    },
    /// The event could not be encoded.
    #[error("cannot encode `{event_type}`: {source}")]
    Encode {
        /// The event type being encoded.
        event_type: String,
        /// The encoder's error (or, where there is none, what was wrong).
        source: BoxError,
    },
    /// The codec cannot describe the event type's schema for a schema registry.
    #[error(
        "cannot describe the schema of `{event_type}` for the broker's schema registry: {reason}"
    )]
    Schema {
        /// The event type.
        event_type: String,
        /// Why, and what to do about it.
        reason: String,
    },
}

/// Any error, boxed, as the cause kept inside Bento's errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a [`crate::MessageBus`]: publishing, subscribing or connecting.
///
/// Each variant says what failed and keeps the backend's error as its
/// [`source`](std::error::Error::source), so the client's own error (and its code) can be
/// downcast from it; the message also shows the cause, for logs that print only the top.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The event could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The broker could not be reached or the connection failed.
    #[error("cannot reach the {backend} broker at {address}: {source}")]
    Connection {
        /// Backend name (`pulsar`, `kafka`).
        backend: &'static str,
        /// Where it was looked for.
        address: String,
        /// What went wrong.
        source: BoxError,
    },
    /// The broker refused or failed to store a message.
    #[error("publishing to topic `{topic}` failed: {source}")]
    Publish {
        /// The topic.
        topic: String,
        /// What went wrong.
        source: BoxError,
    },
    /// A subscription could not be created.
    #[error("subscribing `{subscription}` to `{topic}` failed: {source}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// The subscription name.
        subscription: String,
        /// What went wrong.
        source: BoxError,
    },
    /// The backend's configuration is invalid; the cause names the key.
    #[error("invalid {backend} configuration: {source}")]
    Config {
        /// Backend name.
        backend: &'static str,
        /// What is wrong, naming the configuration key.
        source: BoxError,
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
    /// Another operation of the backend failed.
    #[error("{operation} failed: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What was being done (`registering the schema of topic `orders``).
        operation: String,
        /// What went wrong.
        source: BoxError,
    },
}

impl BusError {
    /// A failed `operation` of `backend`, caused by `source`.
    pub fn backend(
        backend: &'static str,
        operation: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        BusError::Backend {
            backend,
            operation: operation.into(),
            source: source.into(),
        }
    }
}

/// Whether a failed handler should be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A transient failure (a timeout, a lock): retry per the subscription's retry policy.
    Retryable,
    /// A failure that another attempt cannot fix (invalid data): dead-letter at once.
    Permanent,
}

/// The error a [`crate::Handler`] returns.
///
/// Any `std::error::Error` converts into a *retryable* `HandlerError` with `?`, and is kept as
/// its [`source`](std::error::Error::source); say [`HandlerError::permanent`] when retrying
/// cannot help, or [`HandlerError::retry_after`] when the handler knows when to try again.
pub struct HandlerError {
    kind: ErrorKind,
    message: String,
    failure: Option<FailureKind>,
    retry_after: Option<Duration>,
    panicked: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl HandlerError {
    fn new(kind: ErrorKind, message: String) -> Self {
        Self {
            kind,
            message,
            failure: None,
            retry_after: None,
            panicked: false,
            source: None,
        }
    }

    /// A transient failure: the message is retried with the policy's backoff.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Retryable, message.to_string())
    }

    /// A failure retrying cannot fix: the message goes to the dead-letter topic at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Permanent, message.to_string())
    }

    /// A transient failure the handler knows the cure time of (a rate limit's reset, a
    /// `Retry-After` header): the message is retried after `delay` instead of the policy's
    /// backoff, as long as the policy allows another attempt.
    pub fn retry_after(delay: Duration, message: impl fmt::Display) -> Self {
        Self {
            retry_after: Some(delay),
            ..Self::retryable(message)
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

    /// The handler panicked; `detail` is the panic message. Retryable: a panic may come from a
    /// transient state as well as from the message.
    pub fn panicked(detail: impl fmt::Display) -> Self {
        Self {
            panicked: true,
            ..Self::retryable(format!("handler panicked: {detail}"))
        }
    }

    /// Keeps `source` as the cause of this error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
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

    /// When the handler asked to be tried again, if it said.
    pub fn requested_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether this error stands for a panic of the handler.
    pub fn is_panic(&self) -> bool {
        self.panicked
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retryable(&error).with_source(error)
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
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl HandlerError {
    /// The error this one was caused by, if any (also what
    /// [`std::error::Error::source`] would say, were `HandlerError` an error type: it is not,
    /// so that any error converts into it with `?`).
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}
