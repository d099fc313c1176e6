//! The backend conformance suite, against the real Kafka broker.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bento_testkit::{Backend, MessageBus};

struct KafkaBackend;

#[async_trait::async_trait]
impl Backend for KafkaBackend {
    async fn bus(&self) -> Arc<dyn MessageBus> {
        common::share_broker();
        Arc::new(common::connect(common::config()).await)
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
}

bento_testkit::conformance_suite!(KafkaBackend);
