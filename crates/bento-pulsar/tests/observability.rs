//! Tracing and metrics through the observability layers over the real Pulsar broker: the
//! consumer span continues the producer's trace (child, or linked new trace), and a scrape of
//! `/metrics` after a known workload with retries and dead letters shows the exact counts.

mod common;

use std::error::Error;
use std::sync::Arc;

use bento_application::MessageBus;
use bento_observability::ConsumerParent;
use bento_observability::testing;

type TestResult = Result<(), Box<dyn Error>>;

async fn bus() -> Arc<dyn MessageBus> {
    common::share_broker();
    Arc::new(common::bus().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_is_a_child_of_the_producer_span_across_pulsar() -> TestResult {
    let report = testing::trace_scenario(bus().await, ConsumerParent::Child).await?;
    assert_eq!(
        report.consumer.parent_span_id,
        report.producer.span_context.span_id()
    );
    assert_eq!(
        report.consumer.span_context.trace_id(),
        report.producer.span_context.trace_id()
    );
    assert!(
        report.traceparent.starts_with("00-"),
        "{}",
        report.traceparent
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_links_to_the_producer_span_across_pulsar() -> TestResult {
    let report = testing::trace_scenario(bus().await, ConsumerParent::Link).await?;
    assert_ne!(
        report.consumer.span_context.trace_id(),
        report.producer.span_context.trace_id()
    );
    assert_eq!(report.consumer.links.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_count_exactly_the_workload_on_pulsar() -> TestResult {
    // The scenario asserts every expected count itself and fails with the difference.
    testing::metrics_scenario(bus().await).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_tells_a_subscriptions_backlog() -> TestResult {
    use bento_application::{PublishOptions, SubscriptionSpec};
    use bento_domain::Envelope;
    let bus = bus().await;
    let topic = bus.topic_for(&format!("bento-lag-{}", uuid::Uuid::now_v7().simple()));
    let idle = bento_testkit::Collector::new();
    let subscription = bus
        .subscribe(
            SubscriptionSpec::topic(&topic, "lagging"),
            Arc::new(idle.handler()),
        )
        .await?;
    subscription.shutdown().await?;
    for n in 0..5 {
        let envelope = Envelope::new("lag.test", 1, "application/json", format!("{{\"n\":{n}}}"));
        bus.publish(envelope, PublishOptions::default().to_topic(&topic))
            .await?;
    }
    assert_eq!(bus.consumer_lag(&topic, "lagging").await?, Some(5));
    Ok(())
}
