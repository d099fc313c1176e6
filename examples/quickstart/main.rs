//! Bento's quickstart: a `CreateUser` use case publishes `UserCreated` after its unit of work
//! commits; a welcome-email handler and an audit log receive it on two subscriptions; a
//! handler that keeps failing shows retries and the dead-letter topic.
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
use std::sync::OnceLock;
use std::time::Duration;

use bento_application::wire;
use bento_examples::users::{CreateUser, UserCreated, UserRepository, create_user};
use bento_runtime::prelude::*;
use tokio::sync::mpsc;

/// What the handlers report back to `main`, so it can tell the story and know when it is over.
#[derive(Debug)]
enum Step {
    Welcomed(String),
    Audited(String),
    CrmFailed(String),
    DeadLettered {
        email: String,
        reason: String,
        attempts: String,
    },
}

static JOURNAL: OnceLock<mpsc::UnboundedSender<Step>> = OnceLock::new();

fn journal(step: Step) {
    if let Some(tx) = JOURNAL.get() {
        let _ = tx.send(step);
    }
}

/// Sends the welcome email (here: prints it).
async fn send_welcome_email(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
    journal(Step::Welcomed(format!(
        "Hello {}! sent to {} (message {})",
        event.name,
        event.email,
        ctx.message_id()
    )));
    Ok(())
}

/// Keeps an audit trail of every registration.
async fn audit_log(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
    journal(Step::Audited(format!(
        "user {} <{}> registered at {}",
        event.user_id,
        event.email,
        ctx.occurred_at().format("%H:%M:%S%.3f")
    )));
    Ok(())
}

/// Pushes the user to a CRM that is down: a retryable failure, every time.
async fn sync_to_crm(event: UserCreated, ctx: Context) -> Result<(), HandlerError> {
    journal(Step::CrmFailed(format!(
        "attempt {} of {CRM_ATTEMPTS} for {} failed: CRM unreachable",
        ctx.attempt(),
        event.email
    )));
    Err(HandlerError::retryable(
        "CRM unreachable (connection refused)",
    ))
}

/// Reads the dead-letter topic, as an operator's tool would.
async fn dead_letter_inspector(ctx: Context) -> Result<(), HandlerError> {
    let envelope = ctx.envelope();
    let event: UserCreated = serde_json::from_slice(&envelope.payload)
        .map_err(|e| HandlerError::permanent(format!("dead letter is not a UserCreated: {e}")))?;
    let header = |name: &str| envelope.headers.get(name).cloned().unwrap_or_default();
    journal(Step::DeadLettered {
        email: event.email,
        reason: header(wire::DLQ_REASON),
        attempts: header(wire::DLQ_ATTEMPTS),
    });
    Ok(())
}

const USERS: usize = 2;
const CRM_ATTEMPTS: u32 = 3;

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
    let (tx, mut steps) = mpsc::unbounded_channel();
    let _ = JOURNAL.set(tx);

    let bento = Bento::from_env().await?;
    let bus = bento.bus();
    println!(
        "Bento quickstart on the `{}` backend\n",
        bus.message_bus().backend()
    );

    let users = UserCreated::EVENT_TYPE;
    let dead_letters = "quickstart.crm-sync.dlq";
    let subscriptions = vec![
        bus.subscribe_with(
            SubscriptionSpec::event_type(users, "quickstart.welcome-email"),
            send_welcome_email,
        )
        .await?,
        bus.subscribe_with(
            SubscriptionSpec::event_type(users, "quickstart.audit-log"),
            audit_log,
        )
        .await?,
        bus.subscribe_with(
            SubscriptionSpec::event_type(users, "quickstart.crm-sync")
                .retry(RetryPolicy::exponential(
                    CRM_ATTEMPTS,
                    Duration::from_millis(100),
                ))
                .dead_letter(DeadLetterPolicy::to_topic(dead_letters)),
            sync_to_crm,
        )
        .await?,
        bus.subscribe_envelopes(
            SubscriptionSpec::topic(dead_letters, "quickstart.dlq-inspector"),
            dead_letter_inspector,
        )
        .await?,
    ];

    let repository = UserRepository::default();
    println!("1. CreateUser with an invalid email: the use case fails, nothing is published");
    let invalid = CreateUser {
        email: "not-an-email".into(),
        name: "Nobody".into(),
    };
    if let Err(error) = create_user(&bus, &repository, invalid).await {
        println!("   -> {error}\n");
    }

    println!(
        "2. CreateUser for Ada and Grace: each unit of work commits, then publishes UserCreated"
    );
    for (email, name) in [("ada@example.com", "Ada"), ("grace@example.com", "Grace")] {
        let command = CreateUser {
            email: email.into(),
            name: name.into(),
        };
        let (id, published) = create_user(&bus, &repository, command)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "   -> user {id} saved, {} event(s) published",
            published.len()
        );
    }
    println!("\n3. The subscribers, each on its own subscription, as their messages arrive:");

    let (mut welcomed, mut audited, mut crm_attempts) = (0, 0, 0);
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while welcomed < USERS || audited < USERS || dead.len() < USERS {
        let step = tokio::time::timeout_at(deadline, steps.recv())
            .await
            .map_err(|_| {
                format!(
                    "timed out: {welcomed} welcomed, {audited} audited, {} dead letters",
                    dead.len()
                )
            })?
            .ok_or("journal closed")?;
        match step {
            Step::Welcomed(line) => {
                welcomed += 1;
                println!("   [welcome-email] {line}");
            }
            Step::Audited(line) => {
                audited += 1;
                println!("   [audit-log]     {line}");
            }
            Step::CrmFailed(line) => {
                crm_attempts += 1;
                println!("   [crm-sync]      {line}");
            }
            Step::DeadLettered {
                email,
                reason,
                attempts,
            } => {
                println!("   [dlq-inspector] dead letter for {email} arrived");
                dead.push((email, reason, attempts));
            }
        }
    }

    println!("\n4. The dead-letter topic `{dead_letters}` holds what the CRM sync could not do:");
    for (email, reason, attempts) in &dead {
        println!("   -> UserCreated for {email}: gave up after {attempts} attempts: {reason}");
    }

    for subscription in subscriptions {
        subscription.shutdown().await?;
    }
    bento.shutdown().await?;
    println!(
        "\nDone: {} users stored, {welcomed} welcome emails, {audited} audit entries, {crm_attempts} CRM attempts, {} dead letters.",
        repository.count(),
        dead.len()
    );
    Ok(())
}
