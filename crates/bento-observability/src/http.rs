//! The HTTP endpoint: `/metrics`, `/health/live` and `/health/ready`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bento_application::MessageBus;
use prometheus::{Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ObservabilityError;

/// How long `/health/ready` waits for the bus to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a shutdown waits for open requests before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The Prometheus text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Endpoint {
    registry: Registry,
    bus: Option<Arc<dyn MessageBus>>,
}

/// A running metrics and health endpoint:
///
/// - `GET /metrics`: the registry in the Prometheus text format;
/// - `GET /health/live`: `200 ok` while the process serves requests;
/// - `GET /health/ready`: `200 ready` when the bus says it is healthy
///   ([`MessageBus::health`]), else `503` with the reason (closed, broker unreachable, no
///   answer within 2 s).
pub struct MetricsServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `address` (`host:port`; port 0 picks a free one) and serves `registry` and
    /// the health of `bus` (always ready without one).
    pub async fn start(
        address: &str,
        registry: Registry,
        bus: Option<Arc<dyn MessageBus>>,
    ) -> Result<Self, ObservabilityError> {
        let bind_error = |error: std::io::Error| ObservabilityError::Bind {
            address: address.to_owned(),
            source: error,
        };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .with_state(Endpoint { registry, bus });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the metrics endpoint stopped");
            }
        });
        tracing::info!(address = %local, "serving /metrics, /health/live and /health/ready");
        Ok(Self {
            address: local,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving: open requests get a few seconds to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

async fn metrics(State(endpoint): State<Endpoint>) -> Response {
    match TextEncoder::new().encode_to_string(&endpoint.registry.gather()) {
        Ok(text) => ([(header::CONTENT_TYPE, EXPOSITION)], text).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {error}\n"),
        )
            .into_response(),
    }
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(endpoint): State<Endpoint>) -> Response {
    let Some(bus) = endpoint.bus else {
        return "ready\n".into_response();
    };
    match tokio::time::timeout(READY_TIMEOUT, bus.health()).await {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the {} bus did not answer within {READY_TIMEOUT:?}\n",
                bus.backend()
            ),
        )
            .into_response(),
    }
}
