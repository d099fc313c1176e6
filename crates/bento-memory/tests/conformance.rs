//! The backend conformance suite, run on the in-memory bus.

use std::sync::Arc;

use bento_memory::MemoryBus;
use bento_testkit::{Backend, MessageBus};

struct Memory;

#[async_trait::async_trait]
impl Backend for Memory {
    async fn bus(&self) -> Arc<dyn MessageBus> {
        Arc::new(MemoryBus::default())
    }
}

bento_testkit::conformance_suite!(Memory);
