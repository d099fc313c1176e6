//! The [`pulsar`] client as the bus configures it, for tools that need the broker's binary
//! protocol beyond what the bus offers (e.g. reading a dead-letter topic by message id).

use std::time::Duration;

use bento_application::BusError;
use pulsar::{
    Authentication, ConnectionRetryOptions, OperationRetryOptions, Pulsar, PulsarBuilder,
    TokioExecutor,
};

use crate::config::PulsarConfig;
use crate::diagnose;
use crate::error::{ConfigError, describe, invalid};

/// How long, after the connect timeout, the bus looks for why it got no connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Validates `config` and connects a [`pulsar`] client to its broker with the settings
/// [`PulsarBus`](crate::PulsarBus) uses: the token or OAuth2 credentials of `auth`, the `tls`
/// options, `connect_timeout_ms` and `operation_timeout_ms`, and the bus's reconnect and retry
/// policy.
///
/// Fails with [`BusError::Config`] naming the configuration key if a setting is invalid (or a
/// token or certificate file cannot be read), and with [`BusError::Connection`] naming the
/// service URL and, when it can be found out, the cause (a refused TLS handshake or
/// authentication) if the broker cannot be reached within the connect timeout.
///
/// ```no_run
/// # async fn demo() -> Result<(), bento_application::BusError> {
/// let client = bento_pulsar::connect_client(&bento_pulsar::PulsarConfig::default()).await?;
/// let _consumer = client.consumer(); // the pulsar crate's own builders from here on
/// # Ok(()) }
/// ```
pub async fn connect_client(config: &PulsarConfig) -> Result<Pulsar<TokioExecutor>, BusError> {
    config.validate()?;
    let timeout = config.connect_timeout();
    let unreachable = |reason: String| BusError::Connection {
        backend: "pulsar",
        address: config.service_url.clone(),
        source: reason.into(),
    };
    let builder = builder(config)?;
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, builder.build()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => {
            // A refused TLS handshake or authentication reaches us without its cause; find it
            // out within what is left of the timeout.
            let left = timeout.saturating_sub(started.elapsed());
            let cause = tokio::time::timeout(left, diagnose::connect_failure(config))
                .await
                .ok()
                .flatten();
            let reason = match cause {
                Some(cause) => {
                    tracing::debug!(client_error = %describe(&error), %cause, "connecting failed");
                    cause
                }
                None => describe(&error),
            };
            Err(unreachable(reason))
        }
        Err(_) => {
            // The client retries a refused connection until the timeout: say why, if a
            // quick look finds out (nothing listening, a TLS port behind a plaintext URL).
            let cause = tokio::time::timeout(PROBE_TIMEOUT, diagnose::connect_failure(config))
                .await
                .ok()
                .flatten();
            let waited = format!("no connection within {timeout:?} (connect_timeout_ms)");
            Err(unreachable(match cause {
                Some(cause) => format!("{cause}; {waited}"),
                None => waited,
            }))
        }
    }
}

fn builder(config: &PulsarConfig) -> Result<PulsarBuilder<TokioExecutor>, ConfigError> {
    let connection_retry = ConnectionRetryOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        max_retries: 20,
        connection_timeout: config.connect_timeout(),
        keep_alive: Duration::from_secs(30),
        ..ConnectionRetryOptions::default()
    };
    let operation_retry = OperationRetryOptions {
        operation_timeout: config.operation_timeout(),
        // Few, quick retries: a broker that keeps answering "busy" (a second consumer of an
        // exclusive subscription) is reported promptly; reconnects are retried by the bus.
        retry_delay: Duration::from_millis(500),
        max_retries: Some(4),
    };
    let mut builder = Pulsar::builder(config.service_url.clone(), TokioExecutor)
        .with_connection_retry_options(connection_retry)
        .with_operation_retry_options(operation_retry)
        .with_outbound_channel_size(config.producer.max_pending_messages);
    let tls = &config.tls;
    if tls.allow_insecure {
        builder = builder.with_allow_insecure_connection(true);
    }
    if !tls.hostname_verification {
        builder = builder.with_tls_hostname_verification_enabled(false);
    }
    if let Some(path) = &tls.trust_cert_path {
        builder = builder.with_certificate_chain_file(path).map_err(|e| {
            invalid(
                "tls.trust_cert_path",
                format!("cannot read `{}`: {e}", path.display()),
            )
        })?;
    }
    if let Some(token) = config.auth.read_token()? {
        builder = builder.with_auth(Authentication {
            name: "token".into(),
            data: token.into_bytes(),
        });
    }
    #[cfg(feature = "oauth2")]
    if let Some(oauth2) = &config.auth.oauth2 {
        builder = builder.with_auth_provider(crate::oauth2::provider(oauth2));
    }
    Ok(builder)
}
