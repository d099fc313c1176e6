//! Test helpers (feature `testing`): run the same observability scenarios against any
//! `Arc<dyn MessageBus>`, read spans from an in-memory exporter, scrape and parse `/metrics`.
//!
//! The memory bus runs them in this crate's tests; a broker backend runs them the same way:
//!
//! ```text
//! let bus: Arc<dyn MessageBus> = Arc::new(PulsarBus::connect(config).await?);
//! bento_observability::testing::trace_scenario(bus.clone(), ConsumerParent::Child).await?;
//! bento_observability::testing::trace_scenario(bus.clone(), ConsumerParent::Link).await?;
//! bento_observability::testing::metrics_scenario(bus).await?;
//! ```
//!
//! Each run uses event types, topics and subscriptions of its own, so runs can share a broker
//! and a test binary.

mod exposition;
mod metrics;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use bento_application::{Context, HandlerError, MessageBus, PublishOptions, SubscriptionSpec};
use bento_domain::{Envelope, MessageId};

pub use exposition::{Exposition, Sample, http_get, parse_exposition};
pub use metrics::{MetricsReport, metrics_scenario};
pub use spans::{SpanCapture, TraceReport, attribute, check_trace_continuation, trace_scenario};

/// A scenario check that did not hold, with what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

impl ScenarioError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::new(format!("{what}: {error}"))
}

fn fail<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError::new(message))
}

/// How long a scenario waits for a broker to deliver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Subscribes, leaves, publishes five messages, and checks that the backend reports a
/// consumer lag of exactly five for the subscription.
pub async fn check_consumer_lag(bus: Arc<dyn MessageBus>) -> Result<(), ScenarioError> {
    let topic = bus.topic_for(&format!("bento-lag-{}", MessageId::new()));
    let idle = |_: Context| std::future::ready(Ok::<(), HandlerError>(()));
    let subscription = bus
        .subscribe(SubscriptionSpec::topic(&topic, "lagging"), Arc::new(idle))
        .await
        .map_err(|e| failed("subscribe", e))?;
    subscription
        .shutdown()
        .await
        .map_err(|e| failed("shutdown", e))?;
    for n in 0..5 {
        let envelope = Envelope::new("lag.test", 1, "application/json", format!("{{\"n\":{n}}}"));
        bus.publish(envelope, PublishOptions::default().to_topic(&topic))
            .await
            .map_err(|e| failed("publish", e))?;
    }
    match bus.consumer_lag(&topic, "lagging").await {
        Ok(Some(5)) => Ok(()),
        other => fail(format!("expected a lag of 5 on {topic}, got {other:?}")),
    }
}
