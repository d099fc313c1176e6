//! # bento-testkit
//!
//! The backend conformance suite: backend-agnostic tests that every [`MessageBus`]
//! implementation runs against itself (the in-memory bus in-process, Pulsar and Kafka against
//! real brokers). A backend plugs in by implementing [`Backend`] and invoking
//! [`conformance_suite!`], which generates one `#[tokio::test]` per case.
//!
//! A backend that cannot support a case says so through [`Backend::unsupported`], with the
//! reason; the case then prints that reason and does nothing else, visibly.
//!
//! [`testing`] is the harness for a service's own tests: an in-memory bus that records what
//! was published, handled and dead-lettered, and waits for it (also under paused time). The
//! guide's [testing chapter](https://github.com/bento-rs/bento/blob/main/docs/guide/src/testing.md) tests a whole service with it.
//!
//! [`workload`] is the end-to-end workload the in-memory benchmarks share; [`broker_lock`] keeps
//! tests that kill a broker away from the tests that use it; [`pulsar_cli`] runs Pulsar's own
//! Java client (`pulsar-client` of the dev-env's distribution) to read what Bento wrote.

// Production functions stay under the line limit in clippy.toml; tests may tell longer stories.
#![warn(clippy::too_many_lines)]

pub mod asyncapi;
pub mod broker_lock;
pub mod cases;
mod collect;
pub mod layers;
pub mod memory;
pub mod pulsar_cli;
pub mod request_reply;
pub mod testing;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

pub use bento_application::MessageBus;
pub use collect::{Collected, Collector};

/// A conformance case, for [`Backend::unsupported`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Envelope metadata survives a round trip.
    RoundTrip,
    /// Two subscriptions each get every message.
    FanOut,
    /// Consumers of one shared subscription each get a share, every message once.
    CompetingConsumers,
    /// Per-key order under concurrency.
    PerKeyOrder,
    /// The concurrency bound holds.
    ConcurrencyBound,
    /// Retryable failure, then success.
    RetryThenSuccess,
    /// Retries exhausted: dead letter.
    RetriesExhausted,
    /// Permanent failure: dead letter at once.
    PermanentFailure,
    /// Undecodable payload: dead letter, consumer goes on.
    Undecodable,
    /// Panicking handler: a failure, consumer goes on.
    PanickingHandler,
    /// Delayed delivery is not early.
    DelayedDelivery,
    /// Graceful shutdown loses nothing.
    GracefulShutdown,
    /// The unit of work publishes after commit only.
    UnitOfWork,
    /// A subscription that comes back to a backlog reads it without idle gaps.
    BacklogWithoutStalls,
    /// A request gets its own reply, correlated, also with requesters sharing a reply topic.
    RequestReply,
    /// A request nobody answers times out with an error naming it.
    RequestTimeout,
    /// A user-defined layer sees every outcome (ack, retry with delay, dead letter, panic)
    /// exactly once per delivery.
    LayerSeesEveryOutcome,
}

/// How the suite gets a bus of the backend under test.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A connected bus. Each case calls this once and uses topics of its own.
    async fn bus(&self) -> Arc<dyn MessageBus>;

    /// `Some(reason)` if this backend cannot support `case`.
    fn unsupported(&self, case: Case) -> Option<&'static str> {
        let _ = case;
        None
    }

    /// How long to wait for something that should happen promptly (brokers need longer than
    /// memory).
    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// How long a subscription needs after `subscribe` returned before messages published
    /// then are guaranteed to reach it (zero where subscribe is synchronous).
    fn settle_time(&self) -> Duration {
        Duration::ZERO
    }
}

/// Generates the whole conformance suite as tests for one backend.
///
/// ```text
/// bento_testkit::conformance_suite!(MemoryBackend);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance_suite!(@cases $backend;
            round_trip, fan_out, competing_consumers, per_key_order, concurrency_bound,
            retry_then_success, retries_exhausted_dead_letter, permanent_failure_dead_letter,
            undecodable_dead_letter, panicking_handler, delayed_delivery, graceful_shutdown,
            unit_of_work, backlog_without_stalls);
        $crate::conformance_suite!(@in request_reply $backend;
            request_reply, request_without_responder_times_out);
        $crate::conformance_suite!(@in layers $backend; layer_sees_every_outcome);
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $crate::conformance_suite!(@in cases $backend; $($case),*);
    };
    (@in $module:ident $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::$module::$case(&$backend).await;
            }
        )*
    };
}
