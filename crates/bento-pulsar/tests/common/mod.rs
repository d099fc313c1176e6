//! Shared by the test binaries that run against the real broker.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use bento_application::{Context, HandlerError};
use bento_pulsar::{PulsarBus, PulsarConfig};
use tokio::sync::mpsc;

/// The broker's binary URL: `BENTO_TEST_PULSAR_URL`, else the dev-env default.
pub fn pulsar_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".into())
}

/// The broker's admin URL: `BENTO_TEST_PULSAR_ADMIN_URL`, else the dev-env default.
pub fn admin_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Holds the Pulsar broker lock shared for the rest of this test process, so that the
/// broker-killing resilience test (which holds it exclusively) never runs beside it.
pub fn share_broker() {
    bento_testkit::broker_lock::share("pulsar");
}

/// The configuration the tests use: the test broker, tight timeouts.
pub fn config() -> PulsarConfig {
    PulsarConfig {
        service_url: pulsar_url(),
        admin_url: admin_url(),
        connect_timeout_ms: 10_000,
        ..PulsarConfig::default()
    }
}

/// A bus on the test broker; panics with how to start it if it is unreachable.
pub async fn bus() -> PulsarBus {
    bus_with(config()).await
}

/// A bus with `config`; panics with how to start the broker if it is unreachable.
pub async fn bus_with(config: PulsarConfig) -> PulsarBus {
    share_broker();
    connect(config).await
}

/// Connects without taking the broker lock (the caller holds it).
pub async fn connect(config: PulsarConfig) -> PulsarBus {
    let url = config.service_url.clone();
    PulsarBus::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "the Pulsar broker at {url} is unreachable ({e}). These tests need a real broker: \
             start one with `cargo xtask dev-env up pulsar`, or run everything with \
             `cargo xtask test`; set BENTO_TEST_PULSAR_URL to use another broker."
        )
    })
}

/// How long to wait for things a broker should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A topic or subscription name unique to this run.
pub fn unique(what: &str) -> String {
    format!("bento-it-{what}-{}", uuid::Uuid::now_v7().simple())
}

/// `method url` on the admin REST API with an optional JSON body; returns status and body.
pub async fn admin(method: &str, path: &str, body: Option<String>) -> (u16, String) {
    let url = format!("{}{path}", admin_url());
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let request = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("content-type", "application/json")
            .body(body.unwrap_or_default())
            .unwrap_or_else(|e| panic!("building {method} {url}: {e}"));
        let mut response = agent.run(request).unwrap_or_else(|e| {
            panic!("{method} {url} failed (is the broker's admin API up?): {e}")
        });
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    })
    .await
    .expect("admin request task")
}

/// A plain pulsar-crate client on the test broker, for looking at what Bento wrote.
pub async fn raw_client() -> pulsar::Pulsar<pulsar::TokioExecutor> {
    share_broker();
    let url = pulsar_url();
    pulsar::Pulsar::builder(url.clone(), pulsar::TokioExecutor)
        .build()
        .await
        .unwrap_or_else(|e| panic!("the Pulsar broker at {url} is unreachable: {e}"))
}

/// The full name of a plain topic name in `public/default`.
pub fn topic_name(name: &str) -> String {
    format!("persistent://public/default/{name}")
}

/// A typed handler that sends each event, with its context, to `tx` and succeeds.
pub fn forward<E: Send + 'static>(
    tx: mpsc::UnboundedSender<(E, Context)>,
) -> impl Fn(E, Context) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    move |event, ctx| {
        let _ = tx.send((event, ctx));
        std::future::ready(Ok(()))
    }
}

/// The next item on `rx`; panics, naming `what`, if none comes within [`PATIENCE`].
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}"))
        .unwrap_or_else(|| panic!("the {what} channel closed"))
}
