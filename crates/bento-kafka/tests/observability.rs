//! Tracing, metrics and consumer lag through the observability layers over the real Kafka
//! broker. The scenarios and their checks live in `bento_observability::testing`, shared by
//! every backend.

mod common;

use std::sync::Arc;

use bento_application::MessageBus;
use bento_observability::ConsumerParent;
use bento_observability::testing::{
    ScenarioError, check_consumer_lag, check_trace_continuation, metrics_scenario,
};

async fn bus() -> Arc<dyn MessageBus> {
    common::share_broker();
    Arc::new(common::connect(common::config()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_is_a_child_of_the_producer_span() -> Result<(), ScenarioError> {
    check_trace_continuation(bus().await, ConsumerParent::Child).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_span_links_to_the_producer_span() -> Result<(), ScenarioError> {
    check_trace_continuation(bus().await, ConsumerParent::Link).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_count_exactly_the_workload() -> Result<(), ScenarioError> {
    // The scenario asserts every expected count itself and fails with the difference.
    metrics_scenario(bus().await).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_groups_lag_is_its_consumer_lag() -> Result<(), ScenarioError> {
    check_consumer_lag(bus().await).await
}
