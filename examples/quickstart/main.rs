//! Bento's quickstart: a `CreateUser` use case publishes `UserCreated` after its unit of work
//! commits; a welcome-email handler and an audit log receive it on two subscriptions; a
//! handler that keeps failing shows retries and the dead-letter topic. A
//! [`Recorder`](bento_runtime::testing::Recorder) (the one a service's tests use) tells `main`
//! when every message was handled, on any backend: no counters, no polling.
//!
//! Runs on the in-memory bus by default:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! and on Pulsar by configuration alone (after `cargo xtask dev-env up pulsar`):
//!
//! ```text
//! BENTO_MESSAGING__BACKEND=pulsar cargo run --example quickstart
//! ```
//!
//! and on Kafka (after `cargo xtask dev-env up kafka`), whose client the examples compile only
//! when asked:
//!
//! ```text
//! BENTO_MESSAGING__BACKEND=kafka cargo run --example quickstart --features kafka
//! ```

use std::process::ExitCode;
use std::time::Duration;

use bento_application::wire;
use bento_examples::users::{CreateUser, UserCreated, UserRepository, create_user};
use bento_runtime::prelude::*;
use bento_runtime::testing::{Expect, Recorder};

/// Sends the welcome email (here: prints it).
async fn send_welcome_email(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
    println!(
        "   [welcome-email] Hello {}! sent to {} (message {})",
        event.name,
        event.email,
        ctx.message_id()
    );
    Ok(())
}

/// Keeps an audit trail of every registration.
async fn audit_log(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
    println!(
        "   [audit-log]     user {} <{}> registered at {}",
        event.user_id,
        event.email,
        ctx.occurred_at().format("%H:%M:%S%.3f")
    );
    Ok(())
}

/// Pushes the user to a CRM that is down: a retryable failure, every time.
async fn sync_to_crm(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
    println!(
        "   [crm-sync]      attempt {} of {CRM_ATTEMPTS} for {} failed: CRM unreachable",
        ctx.attempt(),
        event.email
    );
    Err(HandlerError::retryable(
        "CRM unreachable (connection refused)",
    ))
}

/// Reads the dead-letter topic, as an operator's tool would.
async fn dead_letter_inspector(ctx: Context) -> Result<(), HandlerError> {
    let event: UserCreated = serde_json::from_slice(&ctx.envelope().payload)
        .map_err(|e| HandlerError::permanent(format!("dead letter is not a UserCreated: {e}")))?;
    println!("   [dlq-inspector] dead letter for {} arrived", event.email);
    Ok(())
}

const USERS: usize = 2;
const CRM_ATTEMPTS: u32 = 3;
const WELCOME: &str = "quickstart.welcome-email";
const AUDIT: &str = "quickstart.audit-log";
const CRM: &str = "quickstart.crm-sync";
const DLQ_INSPECTOR: &str = "quickstart.dlq-inspector";
const DEAD_LETTERS: &str = "quickstart.crm-sync.dlq";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bento = Bento::from_env().await?;
    // Records every publish and every delivery's outcome, so `main` can wait for them. On a
    // broker the durable subscriptions may still hold messages of an earlier run: count only
    // this run's. Brokers may take a while to start a subscription, hence the patience.
    let recorder = Recorder::with_codecs(bento.bus().codec().clone())
        .patience(Duration::from_secs(60))
        .only_own_messages();
    let bento = bento
        .layer(recorder.clone())
        .publish_layer(recorder.clone());
    let bus = bento.bus();
    if !bento.is_offline() {
        println!(
            "Bento quickstart on the `{}` backend\n",
            bus.message_bus().backend()
        );
    }

    let subscriptions = subscribe(&bus).await?;
    // `--asyncapi` (or BENTO_ASYNCAPI=1): print the contract and exit, no broker needed.
    if bento.is_offline() {
        bus.declare::<UserCreated>().await?;
        bento_examples::print_asyncapi_if_asked(&bento, "quickstart")?;
        return Ok(());
    }

    let repository = UserRepository::default();
    register_users(&bus, &repository).await?;

    // Until every user is welcomed and audited and the CRM sync's dead letters came back.
    for subscription in [WELCOME, AUDIT, DLQ_INSPECTOR] {
        recorder
            .wait_for(Expect::consumed::<UserCreated>(USERS).by(subscription))
            .await?;
    }
    show_dead_letters(&recorder)?;

    for subscription in subscriptions {
        subscription.shutdown().await?;
    }
    bento.shutdown().await?;
    println!(
        "\nDone: {} users stored, {} welcome emails, {} audit entries, {} CRM attempts, {} dead letters.",
        repository.count(),
        recorder.consumed_by(WELCOME).len(),
        recorder.consumed_by(AUDIT).len(),
        recorder.deliveries_to(CRM).len(),
        recorder.dead_lettered().len()
    );
    Ok(())
}

/// The four subscriptions: welcome email, audit log, CRM sync (with retries and a dead-letter
/// topic) and the dead-letter inspector.
async fn subscribe(bus: &Bus) -> Result<Vec<Subscription>, BusError> {
    let users = UserCreated::EVENT_TYPE;
    Ok(vec![
        bus.subscribe_with(
            SubscriptionSpec::event_type(users, WELCOME),
            send_welcome_email,
        )
        .await?,
        bus.subscribe_with(SubscriptionSpec::event_type(users, AUDIT), audit_log)
            .await?,
        bus.subscribe_with(
            SubscriptionSpec::event_type(users, CRM)
                .retry(RetryPolicy::exponential(
                    CRM_ATTEMPTS,
                    Duration::from_millis(100),
                ))
                .dead_letter(DeadLetterPolicy::to_topic(DEAD_LETTERS)),
            sync_to_crm,
        )
        .await?,
        bus.subscribe_envelopes(
            SubscriptionSpec::topic(DEAD_LETTERS, DLQ_INSPECTOR),
            dead_letter_inspector,
        )
        .await?,
    ])
}

/// Steps 1 and 2: an invalid `CreateUser` that publishes nothing, then Ada and Grace.
async fn register_users(
    bus: &Bus,
    repository: &UserRepository,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("1. CreateUser with an invalid email: the use case fails, nothing is published");
    let invalid = CreateUser {
        email: "not-an-email".into(),
        name: "Nobody".into(),
    };
    if let Err(error) = create_user(bus, repository, invalid).await {
        println!("   -> {error}\n");
    }

    println!(
        "2. CreateUser for Ada and Grace: each unit of work commits, then publishes UserCreated;\n   \
         the subscribers, each on its own subscription, handle it as it arrives:"
    );
    for (email, name) in [("ada@example.com", "Ada"), ("grace@example.com", "Grace")] {
        let command = CreateUser {
            email: email.into(),
            name: name.into(),
        };
        let (id, published) = create_user(bus, repository, command)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "   -> user {id} saved, {} event(s) published",
            published.len()
        );
    }
    Ok(())
}

/// Step 3: what reached the dead-letter topic, with the attempts and the last failure.
fn show_dead_letters(recorder: &Recorder) -> Result<(), serde_json::Error> {
    println!("\n3. The dead-letter topic `{DEAD_LETTERS}` holds what the CRM sync could not do:");
    let dead = recorder.consumed_by(DLQ_INSPECTOR);
    for letter in &dead {
        let header = |name| {
            letter
                .envelope
                .headers
                .get(name)
                .map_or("?", String::as_str)
        };
        let event: UserCreated = serde_json::from_slice(&letter.envelope.payload)?;
        println!(
            "   -> UserCreated for {}: gave up after {} attempts: {}",
            event.email,
            header(wire::DLQ_ATTEMPTS),
            header(wire::DLQ_REASON)
        );
    }
    Ok(())
}
