//! Watches a bus's readiness through `/health/ready`, as an orchestrator's probe would, for
//! tests that take a broker down and bring it back (feature `testing`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bento_application::MessageBus;
use prometheus::Registry;

use crate::MetricsServer;
use crate::testing::http_get;

/// How often [`ReadinessProbe::wait_for`] asks.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A `/health/ready` endpoint serving one bus's health, and a client for it.
pub struct ReadinessProbe {
    server: MetricsServer,
}

impl ReadinessProbe {
    /// Serves the health of `bus` on a free loopback port.
    ///
    /// # Panics
    ///
    /// When the endpoint cannot be started.
    pub async fn start(bus: Arc<dyn MessageBus>) -> Self {
        let server = MetricsServer::start("127.0.0.1:0", Registry::new(), Some(bus))
            .await
            .unwrap_or_else(|e| panic!("starting the health endpoint: {e}"));
        Self { server }
    }

    /// What `GET /health/ready` answers now: the status code and the body.
    ///
    /// # Panics
    ///
    /// When the endpoint does not answer at all.
    pub async fn status(&self) -> (u16, String) {
        http_get(self.server.local_addr(), "/health/ready")
            .await
            .unwrap_or_else(|e| panic!("GET /health/ready: {e}"))
    }

    /// Asks `/health/ready` every 250 ms until it answers `status`; how long that took.
    ///
    /// # Panics
    ///
    /// When it has not answered `status` within `within` (naming the last answer).
    pub async fn wait_for(&self, status: u16, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let (now, body) = self.status().await;
            if now == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "/health/ready still answered {now} ({}), not {status}, after {within:?}",
                body.trim()
            );
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Stops the endpoint.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
