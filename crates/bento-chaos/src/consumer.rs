//! The consumer child process: one subscription to the scenario's topic with retries and a
//! dead-letter topic, one to that dead-letter topic, and a file both append to.
//!
//! A line is written (one `write` call on a file opened for appending) before the handler
//! returns `Ok`, so before the message is acknowledged: whatever the broker considers
//! consumed is in the file, even when the process is SIGKILLed right after.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bento_application::{
    Context, DeadLetterPolicy, HandlerError, RetryPolicy, Subscription, SubscriptionKind,
    SubscriptionSpec,
};
use bento_runtime::{Bento, Bus, Config};

use crate::report::{Event, Fate};

/// `bento-chaos consume ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Bento configuration file (backend and its settings).
    #[arg(long)]
    pub config: PathBuf,
    /// The topic the publishers write to.
    #[arg(long)]
    pub topic: String,
    /// The subscription's name: the same on every restart, so a restarted child resumes it.
    #[arg(long)]
    pub subscription: String,
    /// The file the handled events are appended to.
    #[arg(long)]
    pub out: PathBuf,
}

/// The dead-letter topic of a scenario's topic.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}-dlq")
}

/// The retry policy of the scenario: quick retries, so that the 1% of events whose first
/// attempt fails come back within the run; five attempts, far more than the one they need.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        multiplier: 2.0,
        max_backoff: Duration::from_secs(2),
        jitter: 0.2,
    }
}

fn append(out: &Mutex<File>, line: &str) -> Result<(), HandlerError> {
    // A poisoned lock only means another handler panicked mid-write; the file is still usable.
    let mut file = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // One write per line: a SIGKILL cannot interleave two handlers' lines.
    file.write_all(line.as_bytes())
        .map_err(|error| HandlerError::retryable(format!("appending to the output file: {error}")))
}

/// The main subscription's handler: a poison event is refused for good, a fails-once event
/// fails its first attempt, every other event is recorded as handled with its attempt.
fn handle(out: &Mutex<File>, ctx: &Context) -> Result<(), HandlerError> {
    match Event::parse(&ctx.envelope().payload) {
        None => Err(HandlerError::permanent("not a chaos event")),
        Some(event) => match event.fate() {
            Fate::Poison => Err(HandlerError::permanent("poison event")),
            Fate::FailsOnce if ctx.attempt() == 1 => Err(HandlerError::retryable(
                "this event fails its first attempt",
            )),
            _ => append(out, &format!("H {} {}\n", event.index, ctx.attempt())),
        },
    }
}

/// The dead-letter subscription's handler: records what reached the dead-letter topic.
fn record_dead_letter(out: &Mutex<File>, ctx: &Context) -> Result<(), HandlerError> {
    match Event::parse(&ctx.envelope().payload) {
        Some(event) => append(out, &format!("D {}\n", event.index)),
        // Anything else on the dead-letter topic is recorded too: the suite counts it.
        None => append(out, "D ?\n"),
    }
}

/// Subscribes to the topic (with retries and the dead-letter topic) and to its dead-letter
/// topic, both appending to `out`.
async fn subscribe(
    bus: &Bus,
    args: &Args,
    out: &Arc<Mutex<File>>,
) -> Result<(Subscription, Subscription)> {
    let dlq = dead_letter_topic(&args.topic);
    let handled = {
        let out = out.clone();
        move |ctx: Context| {
            let result = handle(&out, &ctx);
            async move { result }
        }
    };
    let dead_lettered = {
        let out = out.clone();
        move |ctx: Context| {
            let result = record_dead_letter(&out, &ctx);
            async move { result }
        }
    };

    // Key_Shared: several handlers at once, one key at a time and in order (on Kafka the
    // partition gives the same promise).
    let main = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&args.topic, &args.subscription)
                .kind(SubscriptionKind::KeyShared)
                .concurrency(16)
                .retry(retry_policy())
                .dead_letter(DeadLetterPolicy::to_topic(&dlq)),
            handled,
        )
        .await
        .context("subscribing to the topic")?;
    let dead = bus
        .subscribe_envelopes(
            SubscriptionSpec::topic(&dlq, format!("{}-dlq", args.subscription))
                .kind(SubscriptionKind::KeyShared)
                .concurrency(4),
            dead_lettered,
        )
        .await
        .context("subscribing to the dead-letter topic")?;
    Ok((main, dead))
}

/// Runs the child until SIGTERM, then shuts its subscriptions down.
pub async fn run(args: Args) -> Result<()> {
    let config = Config::from_figment(Config::figment(&args.config))
        .with_context(|| format!("reading {}", args.config.display()))?;
    let bento = Bento::from_config(config).await.context("starting Bento")?;
    let out = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)
            .with_context(|| format!("opening {}", args.out.display()))?,
    ));
    let (main, dead) = subscribe(&bento.bus(), &args, &out).await?;
    // The driver starts publishing once it reads this line.
    println!("READY");
    std::io::stdout().flush().context("writing READY")?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    main.shutdown().await.context("stopping the subscription")?;
    dead.shutdown()
        .await
        .context("stopping the dead-letter subscription")?;
    bento.shutdown().await.context("stopping Bento")?;
    Ok(())
}
