//! `bento dlq replay`: republishes dead letters to their subscription's retry topic (or their
//! original topic) and acknowledges them, reporting each one.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{MessageBus, PublishOptions, wire};
use bento_domain::Envelope;
use serde::Serialize;

use super::{Letter, Replayed, Source, replay_log_topic};
use crate::cli::DlqReplayArgs;
use crate::config::Loaded;
use crate::error::CliError;
use crate::output::{Output, Table};

/// One dead letter, as `dlq replay` reports it.
#[derive(Debug, Serialize)]
pub struct ReplayRow {
    /// The message's Bento id: the replayed message keeps it.
    pub message_id: String,
    /// Event type.
    pub event_type: String,
    /// The subscription that handles it again (`bento-dlq-subscription`); with
    /// `--to-original-topic`, every subscription of the original topic does.
    pub subscription: Option<String>,
    /// Where it was (or would be) republished: the subscription's retry topic, or with
    /// `--to-original-topic` the original topic.
    pub to_topic: Option<String>,
    /// `replayed`, `would replay` (dry run) or `skipped: <why>`.
    pub status: String,
    /// Where it sat on the dead-letter topic.
    pub position: String,
}

#[derive(Serialize)]
struct ReplayReport<'a> {
    topic: &'a str,
    dry_run: bool,
    replayed: usize,
    skipped: usize,
    messages: &'a [ReplayRow],
}

/// What a replay did so far: a row per dead letter read, and how many were replayed (or, on a
/// dry run, would be).
#[derive(Default)]
struct Progress {
    rows: Vec<ReplayRow>,
    replayed: usize,
}

/// Runs `bento dlq replay`.
pub(super) async fn replay(
    args: DlqReplayArgs,
    loaded: &Loaded,
    out: Output,
) -> Result<(), CliError> {
    let idle = Duration::from_millis(args.idle_ms.max(1));
    let bus: Option<Arc<dyn MessageBus>> = if args.dry_run {
        None
    } else {
        Some(bento_runtime::build_message_bus(&loaded.config).await?)
    };
    let opened = Source::open(loaded, &args.topic, Some(&args.subscription)).await;
    let (mut source, topic) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            if let Some(bus) = &bus {
                let _ = bus.close().await;
            }
            return Err(error);
        }
    };
    let mut progress = Progress::default();
    let log = replay_log_topic(&topic);
    let result = replay_letters(&args, &mut source, bus.as_ref(), &log, idle, &mut progress).await;
    let source_stops = !source.can_leave_behind();
    source.close().await;
    if let Some(bus) = &bus {
        let _ = bus.close().await;
    }
    let rows = &progress.rows;
    let skipped = rows
        .iter()
        .filter(|r| r.status.starts_with("skipped"))
        .count();
    print_report(out, &topic, args.dry_run, &progress, skipped)?;
    result?;
    if skipped > 0 {
        let mut reasons: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.status.strip_prefix("skipped: "))
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        return Err(CliError::Broker(format!(
            "{skipped} message(s) on {topic} were not replayed and were left there{} ({})",
            if source_stops {
                "; the replay stopped at the first one"
            } else {
                ""
            },
            reasons.join("; ")
        )));
    }
    Ok(())
}

/// Replays the dead letters `source` gives until it runs dry, `--limit` is reached, or (on
/// Kafka) one has to be left behind. Without a `bus` (dry run) nothing is published.
async fn replay_letters(
    args: &DlqReplayArgs,
    source: &mut Source,
    bus: Option<&Arc<dyn MessageBus>>,
    log: &str,
    idle: Duration,
    progress: &mut Progress,
) -> Result<(), CliError> {
    loop {
        if args.limit.is_some_and(|limit| progress.replayed >= limit) {
            return Ok(());
        }
        let Some(letter) = source.next(idle).await? else {
            return Ok(());
        };
        if replay_letter(args, source, bus, log, &letter, progress)
            .await?
            .is_break()
        {
            return Ok(());
        }
    }
}

/// Replays one dead letter, or leaves it where it is and says why; `Break` when the replay
/// must stop there.
async fn replay_letter(
    args: &DlqReplayArgs,
    source: &mut Source,
    bus: Option<&Arc<dyn MessageBus>>,
    log: &str,
    letter: &Letter,
    progress: &mut Progress,
) -> Result<ControlFlow<()>, CliError> {
    let envelope = &letter.envelope;
    let subscription = envelope.headers.get(wire::DLQ_SUBSCRIPTION).cloned();
    let mut row = ReplayRow {
        message_id: envelope.id.to_string(),
        event_type: envelope.event_type.to_string(),
        subscription: subscription.clone(),
        to_topic: None,
        status: String::new(),
        position: letter.position.clone(),
    };
    let target = replay_target(
        source,
        envelope,
        subscription.as_deref(),
        args.to_original_topic,
    )
    .await?;
    let to_topic = match target {
        Ok(to_topic) => to_topic,
        Err(why) => {
            // Left unacknowledged, so it stays for a person to look at, and reported.
            row.status = format!("skipped: {why}");
            progress.rows.push(row);
            if source.can_leave_behind() {
                return Ok(ControlFlow::Continue(()));
            }
            // Kafka: the replay stops here, so that no later commit passes over it.
            return Ok(ControlFlow::Break(()));
        }
    };
    row.to_topic = Some(to_topic.clone());
    match bus {
        None => row.status = "would replay".into(),
        Some(bus) => {
            let message = if args.to_original_topic {
                wire::replay_envelope(envelope)
            } else {
                source.to_subscription(envelope)
            };
            bus.publish(
                message,
                PublishOptions::default().to_topic(to_topic.clone()),
            )
            .await
            .map_err(|e| {
                CliError::Broker(format!(
                    "republishing dead letter {} to {to_topic} failed (it stays on \
                         the dead-letter topic): {e}",
                    envelope.id
                ))
            })?;
            source.ack(letter).await?;
            // Recorded for `dlq list`; the replay itself is done whatever becomes of this.
            let record = Replayed::envelope(letter, &to_topic)?;
            row.status = match bus
                .publish(record, PublishOptions::default().to_topic(log))
                .await
            {
                Ok(()) => "replayed".into(),
                Err(e) => format!("replayed (not recorded on {log}: {e})"),
            };
        }
    }
    progress.replayed += 1;
    progress.rows.push(row);
    Ok(ControlFlow::Continue(()))
}

/// Where a replay of `envelope` goes: its original topic with `--to-original-topic`, else the
/// retry topic of `subscription`, the one that gave up on it; or why it cannot be replayed.
async fn replay_target(
    source: &mut Source,
    envelope: &Envelope,
    subscription: Option<&str>,
    to_original_topic: bool,
) -> Result<Result<String, String>, CliError> {
    Ok(match (wire::original_topic(envelope), subscription) {
        (None, _) => Err(format!("no {} header", wire::DLQ_ORIGINAL_TOPIC)),
        (Some(original), _) if to_original_topic => Ok(original.to_owned()),
        (Some(original), None) => Err(format!(
            "no {} header; --to-original-topic replays it to every subscription of \
             {original}",
            wire::DLQ_SUBSCRIPTION
        )),
        (Some(original), Some(subscription)) => source
            .replay_topic(original, subscription)
            .await?
            .map_err(|why| {
                format!(
                    "{why}; --to-original-topic replays it to every subscription of \
                     {original}"
                )
            }),
    })
}

/// Prints what the replay did: a row per dead letter read and a summary line, or the report
/// in JSON.
fn print_report(
    out: Output,
    topic: &str,
    dry_run: bool,
    progress: &Progress,
    skipped: usize,
) -> Result<(), CliError> {
    let (rows, replayed) = (&progress.rows, progress.replayed);
    let report = ReplayReport {
        topic,
        dry_run,
        replayed,
        skipped,
        messages: rows,
    };
    out.print(&report, || {
        let mut table = Table::new(&[
            "MESSAGE ID",
            "EVENT TYPE",
            "SUBSCRIPTION",
            "TO TOPIC",
            "STATUS",
        ]);
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for row in rows {
            table.row([
                row.message_id.clone(),
                row.event_type.clone(),
                dash(&row.subscription),
                dash(&row.to_topic),
                row.status.clone(),
            ]);
        }
        let mut text = if table.is_empty() {
            String::new()
        } else {
            table.render()
        };
        let verb = if dry_run {
            "would be replayed"
        } else {
            "replayed"
        };
        text.push_str(&format!(
            "{replayed} dead letter(s) {verb} from {topic}, {skipped} skipped\n"
        ));
        text
    })
}
