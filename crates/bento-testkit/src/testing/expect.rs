//! What a test waits for, and the error when it did not come in time.

use std::fmt;
use std::time::Duration;

use bento_domain::DomainEvent;

/// What [`Recorder::wait_for`] waits for: a count of publishes, successful deliveries or dead
/// letters, optionally of one subscription, within a timeout.
#[derive(Clone, Debug)]
pub struct Expect {
    pub(super) what: What,
    pub(super) count: usize,
    pub(super) within: Option<Duration>,
}

#[derive(Clone, Debug)]
pub(super) enum What {
    Published {
        event_type: Option<&'static str>,
    },
    Settled {
        /// Successful deliveries if true, dead letters if false.
        consumed: bool,
        event_type: Option<&'static str>,
        subscription: Option<String>,
    },
}

impl Expect {
    /// At least `count` events of type `E` published.
    pub fn published<E: DomainEvent>(count: usize) -> Self {
        Self::new(
            What::Published {
                event_type: Some(E::EVENT_TYPE),
            },
            count,
        )
    }

    /// At least `count` deliveries of `E` handled successfully (by any subscription, unless
    /// [`Expect::by`] names one).
    pub fn consumed<E: DomainEvent>(count: usize) -> Self {
        Self::new(
            What::Settled {
                consumed: true,
                event_type: Some(E::EVENT_TYPE),
                subscription: None,
            },
            count,
        )
    }

    /// At least `count` deliveries given up on (by any subscription, unless [`Expect::by`]
    /// names one).
    pub fn dead_lettered(count: usize) -> Self {
        Self::new(
            What::Settled {
                consumed: false,
                event_type: None,
                subscription: None,
            },
            count,
        )
    }

    /// Only deliveries to `subscription` count (no effect on [`Expect::published`]).
    pub fn by(mut self, subscription: impl Into<String>) -> Self {
        if let What::Settled {
            subscription: s, ..
        } = &mut self.what
        {
            *s = Some(subscription.into());
        }
        self
    }

    /// Waits at most `timeout` (tokio's clock: virtual under paused time).
    pub fn within(mut self, timeout: Duration) -> Self {
        self.within = Some(timeout);
        self
    }

    fn new(what: What, count: usize) -> Self {
        Self {
            what,
            count,
            within: None,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.count;
        match &self.what {
            What::Published { event_type } => {
                write!(f, "{count} published")?;
                if let Some(t) = event_type {
                    write!(f, " `{t}`")?;
                }
            }
            What::Settled {
                consumed,
                event_type,
                subscription,
            } => {
                write!(f, "{count} ")?;
                if let Some(t) = event_type {
                    write!(f, "`{t}` ")?;
                }
                f.write_str(if *consumed {
                    "consumed"
                } else {
                    "dead-lettered"
                })?;
                if let Some(s) = subscription {
                    write!(f, " by `{s}`")?;
                }
            }
        }
        Ok(())
    }
}

/// [`Recorder::wait_for`] gave up: what it waited for and everything it saw. Its `Debug` is
/// its message, so `wait_for(..).await?` and `.unwrap()` in a test read well.
#[derive(Clone)]
pub struct WaitTimeout {
    pub(super) message: String,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WaitTimeout {}
