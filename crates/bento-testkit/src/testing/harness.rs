//! The in-memory service under test.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{Bus, BusError};
use bento_codec::Codecs;
use bento_memory::{MemoryBus, MemoryConfig};

use super::Recorder;

/// An in-memory service under test: a [`Bus`] on a fresh [`MemoryBus`], with a [`Recorder`]
/// on it. Every [`Recorder`] method works on the harness (`harness.wait_for(..)`,
/// `harness.published::<E>()`, ...).
#[derive(Debug)]
pub struct TestHarness {
    bus: Bus<Codecs>,
    memory: MemoryBus,
    recorder: Recorder,
}

impl Default for TestHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHarness {
    /// A harness on a fresh in-memory bus, decoding JSON unless types are registered on
    /// `bus().codec()`.
    pub fn new() -> Self {
        let memory = MemoryBus::new(MemoryConfig::default());
        let bus = Bus::new(Arc::new(memory.clone()), Codecs::default());
        let recorder = Recorder::with_codecs(bus.codec().clone());
        let bus = recorder.attach(bus);
        Self {
            bus,
            memory,
            recorder,
        }
    }

    /// The bus to wire the service on: subscribe its handlers, run its use cases.
    pub fn bus(&self) -> Bus<Codecs> {
        self.bus.clone()
    }

    /// The in-memory bus underneath (its dead-letter topics, `memory().published(topic)`).
    pub fn memory(&self) -> &MemoryBus {
        &self.memory
    }

    /// The recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Sets how long `wait_for` waits when the expectation does not say.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.recorder.patience = patience;
        self
    }

    /// Stops every subscription (giving handlers `grace` to finish) and closes the bus.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), BusError> {
        self.bus.shutdown_subscriptions(grace).await?;
        self.bus.message_bus().close().await
    }
}

impl Deref for TestHarness {
    type Target = Recorder;

    fn deref(&self) -> &Recorder {
        &self.recorder
    }
}
