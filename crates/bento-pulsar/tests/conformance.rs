//! The backend conformance suite, run against the real Pulsar broker
//! (`BENTO_TEST_PULSAR_URL`, default `pulsar://127.0.0.1:6650`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bento_testkit::{Backend, MessageBus};

struct PulsarBackend;

#[async_trait::async_trait]
impl Backend for PulsarBackend {
    async fn bus(&self) -> Arc<dyn MessageBus> {
        Arc::new(common::bus().await)
    }

    fn patience(&self) -> Duration {
        common::PATIENCE
    }
}

bento_testkit::conformance_suite!(PulsarBackend);
