//! A long-running Bento service with metrics, traces and health endpoints.
//!
//! It registers a user every 50 ms (the `CreateUser` use case publishes `UserCreated` after its
//! unit of work commits) and handles the events on four subscriptions:
//! - `service.welcome-email` sends the email and publishes `WelcomeEmailSent`, caused by the
//!   event it handled (same correlation id, and a child span in the same trace);
//! - `service.crm-sync` calls a flaky CRM: some calls fail and are retried, a few keep failing
//!   and end on the dead-letter topic;
//! - `service.audit-log` reads `WelcomeEmailSent`;
//! - `service.dlq-inspector` reads the dead-letter topic.
//!
//! It serves `/metrics`, `/health/live` and `/health/ready` on `observability.metrics.address`
//! (default here `127.0.0.1:9464`), prints a summary every 10 s, and stops cleanly on Ctrl-C or
//! SIGTERM. Memory by default; Pulsar or Kafka by configuration:
//!
//! ```text
//! cargo run --example service
//! curl -s 127.0.0.1:9464/metrics | grep ^bento_
//! BENTO_MESSAGING__BACKEND=pulsar cargo run --example service --features pulsar
//! BENTO_OBSERVABILITY__TRACING__OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!     cargo run --example service --features otlp
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bento_examples::users::{CreateUser, UserCreated, UserRepository, create_user};
use bento_runtime::Config;
use bento_runtime::prelude::*;
use serde::{Deserialize, Serialize};

/// Where metrics are served unless the configuration says otherwise.
const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";
/// Time between two registrations.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// Time between two summaries.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long shutdown waits for running handlers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Where `service.crm-sync` sends the users the CRM never took.
const DEAD_LETTER_TOPIC: &str = "service.crm-sync.dlq";

/// The welcome email went out.
#[derive(Debug, Serialize, Deserialize)]
struct WelcomeEmailSent {
    user_id: String,
    email: String,
}

impl DomainEvent for WelcomeEmailSent {
    const EVENT_TYPE: &'static str = "users.welcome-email-sent";
    const AGGREGATE_TYPE: &'static str = "user";
    fn aggregate_id(&self) -> String {
        self.user_id.clone()
    }
}

/// What the service did, for the summaries.
#[derive(Default)]
struct Tally {
    registered: AtomicU64,
    welcomed: AtomicU64,
    crm_synced: AtomicU64,
    audited: AtomicU64,
    dead_letters: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("service failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bento = Bento::from_config(config()?).await?;
    let bus = bento.bus();
    announce(&bento, &bus);

    let tally = Arc::new(Tally::default());
    let subscriptions = vec![
        welcome_email(&bus, &tally).await?,
        crm_sync(&bus, &tally).await?,
        audit_log(&bus, &tally).await?,
        dlq_inspector(&bus, &tally).await?,
    ];
    let publisher = tokio::spawn(register_users(bus.clone(), tally.clone()));
    report_until_stopped(&tally).await;

    publisher.abort();
    let _ = publisher.await;
    // Stops every subscription (running handlers get SHUTDOWN_GRACE), then closes the bus.
    let stopped = bento.shutdown_within(SHUTDOWN_GRACE).await;
    drop(subscriptions);
    stopped?;
    println!("stopped");
    Ok(())
}

/// The configuration (file and environment), with this example's defaults.
fn config() -> Result<Config, RuntimeError> {
    let mut config = Config::load()?;
    if config.observability.metrics.address.is_none() {
        config.observability.metrics.address = Some(DEFAULT_METRICS_ADDRESS.into());
    }
    // This example owns its process: let Bento set up logging (and span export, if configured).
    config.observability.install_subscriber = true;
    // Quiet by default: warnings (each dead letter), and Bento's spans so that they carry the
    // message id, event type and correlation id of whatever a handler logs. `RUST_LOG=info`
    // shows every handler's log lines.
    if config.observability.log_filter == "info" {
        config.observability.log_filter = "warn,bento_observability=debug".into();
    }
    Ok(config)
}

/// Prints the backend and where the metrics and health endpoints are.
fn announce(bento: &Bento, bus: &Bus) {
    let backend = bus.message_bus().backend();
    match bento.metrics_address() {
        Some(address) => println!(
            "Bento service on the `{backend}` backend\n  metrics   http://{address}/metrics\n  \
             liveness  http://{address}/health/live\n  readiness http://{address}/health/ready\n\
             Ctrl-C (or SIGTERM) stops it."
        ),
        None => println!("Bento service on the `{backend}` backend (no metrics endpoint)"),
    }
}

/// `service.welcome-email`: sends the email and publishes `WelcomeEmailSent`, caused by the
/// event it handled.
async fn welcome_email(bus: &Bus, tally: &Arc<Tally>) -> Result<Subscription, BusError> {
    bus.subscribe_with(
        SubscriptionSpec::event_type(UserCreated::EVENT_TYPE, "service.welcome-email")
            .concurrency(4),
        {
            let (bus, tally) = (bus.clone(), tally.clone());
            move |event: UserCreated, ctx: Context| {
                let (bus, tally) = (bus.clone(), tally.clone());
                async move {
                    // The SMTP round trip.
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..15))).await;
                    tracing::info!(email = %event.email, "welcome email sent");
                    let sent = WelcomeEmailSent {
                        user_id: event.user_id,
                        email: event.email,
                    };
                    bus.publish_caused_by(&sent, &ctx).await?;
                    tally.welcomed.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), HandlerError>(())
                }
            }
        },
    )
    .await
}

/// `service.crm-sync`: calls a flaky CRM, with retries and a dead-letter topic.
async fn crm_sync(bus: &Bus, tally: &Arc<Tally>) -> Result<Subscription, BusError> {
    bus.subscribe_with(
        SubscriptionSpec::event_type(UserCreated::EVENT_TYPE, "service.crm-sync")
            .concurrency(4)
            .retry(RetryPolicy::exponential(3, Duration::from_millis(200)))
            .dead_letter(DeadLetterPolicy::to_topic(DEAD_LETTER_TOPIC)),
        {
            let tally = tally.clone();
            move |event: UserCreated, ctx: Context| {
                let tally = tally.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(2..30))).await;
                    // A flaky CRM: one call in four fails, and it never takes one user in
                    // 256; with three attempts, about one user in 50 is dead-lettered.
                    let doomed = event.user_id.ends_with("00");
                    if doomed || fastrand::u8(..4) == 0 {
                        tracing::info!(attempt = ctx.attempt(), "CRM unavailable");
                        return Err(HandlerError::retryable("CRM unavailable (503)"));
                    }
                    tally.crm_synced.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        },
    )
    .await
}

/// `service.audit-log`: reads `WelcomeEmailSent`.
async fn audit_log(bus: &Bus, tally: &Arc<Tally>) -> Result<Subscription, BusError> {
    bus.subscribe_with(
        SubscriptionSpec::event_type(WelcomeEmailSent::EVENT_TYPE, "service.audit-log"),
        {
            let tally = tally.clone();
            move |_event: WelcomeEmailSent, _ctx: Context| {
                let tally = tally.clone();
                async move {
                    tally.audited.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), HandlerError>(())
                }
            }
        },
    )
    .await
}

/// `service.dlq-inspector`: reads the dead-letter topic.
async fn dlq_inspector(bus: &Bus, tally: &Arc<Tally>) -> Result<Subscription, BusError> {
    bus.subscribe_envelopes(
        SubscriptionSpec::topic(DEAD_LETTER_TOPIC, "service.dlq-inspector"),
        {
            let tally = tally.clone();
            move |ctx: Context| {
                let tally = tally.clone();
                async move {
                    tracing::warn!(
                        reason = ctx.header("bento-dlq-reason").unwrap_or_default(),
                        "dead letter"
                    );
                    tally.dead_letters.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), HandlerError>(())
                }
            }
        },
    )
    .await
}

/// Registers a user every [`PUBLISH_EVERY`], for ever.
async fn register_users(bus: Bus, tally: Arc<Tally>) {
    let repository = UserRepository::default();
    let mut ticker = tokio::time::interval(PUBLISH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        ticker.tick().await;
        n += 1;
        let command = CreateUser {
            email: format!("user{n}@example.com"),
            name: format!("User {n}"),
        };
        // Stands for the HTTP request that caused the registration.
        let request = tracing::info_span!("POST /users", user = n);
        let created =
            tracing::Instrument::instrument(create_user(&bus, &repository, command), request).await;
        match created {
            Ok(_) => {
                tally.registered.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "registration failed"),
        }
    }
}

/// Prints a summary every [`REPORT_EVERY`] until Ctrl-C or SIGTERM.
async fn report_until_stopped(tally: &Tally) {
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.tick().await;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            signal = &mut stop => {
                println!("\n{signal}: stopping");
                break;
            }
            _ = report.tick() => {
                let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
                println!(
                    "registered {}, welcomed {}, crm synced {}, audited {}, dead letters {}",
                    read(&tally.registered),
                    read(&tally.welcomed),
                    read(&tally.crm_synced),
                    read(&tally.audited),
                    read(&tally.dead_letters),
                );
            }
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, naming which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            },
            Err(error) => {
                eprintln!("cannot listen for SIGTERM ({error}); Ctrl-C still works");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
