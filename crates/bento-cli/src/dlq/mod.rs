//! `bento dlq list` and `bento dlq replay`.

mod kafka;
mod pulsar;

use std::sync::Arc;
use std::time::Duration;

use bento_application::{MessageBus, PublishOptions, wire};
use bento_domain::Envelope;
use bento_kafka::KafkaAdmin;
use bento_runtime::BackendKind;
use serde::Serialize;

use crate::admin::no_broker;
use crate::cli::{Dlq, DlqListArgs, DlqReplayArgs};
use crate::config::Loaded;
use crate::error::CliError;
use crate::output::{Output, Table};

use self::kafka::KafkaDlq;
use self::pulsar::PulsarDlq;

/// A dead letter as read from its topic.
pub struct Letter {
    /// The dead letter: the original message plus the `bento-dlq-*` headers.
    pub envelope: Envelope,
    /// Where it sits on the dead-letter topic (Pulsar message id, Kafka topic/partition/offset).
    pub position: String,
    ack: Ack,
}

/// How to acknowledge a dead letter once it was replayed.
enum Ack {
    Pulsar {
        topic: String,
        id: ::pulsar::proto::MessageIdData,
    },
    Kafka {
        partition: i32,
        offset: i64,
    },
}

/// Reads a dead-letter topic on whichever backend is configured.
enum Source {
    Pulsar(Box<PulsarDlq>),
    Kafka(KafkaDlq),
}

impl Source {
    /// Opens `topic`; `replay_subscription` `None` reads without consuming, `Some` reads
    /// through that durable subscription (consumer group).
    async fn open(
        loaded: &Loaded,
        topic: &str,
        replay_subscription: Option<&str>,
    ) -> Result<(Self, String), CliError> {
        match loaded.backend() {
            BackendKind::Pulsar => {
                let config = loaded.pulsar()?;
                let topic = PulsarDlq::full_name(&config, topic)?;
                // Subscribing would create a mistyped topic: check that it exists first.
                let admin = bento_pulsar::PulsarAdmin::new(&config)?;
                if let Err(error) = admin.partitions(&topic).await {
                    return Err(if error.is_not_found() {
                        CliError::Usage(format!("topic {topic} does not exist ({error})"))
                    } else {
                        error.into()
                    });
                }
                let source = PulsarDlq::open(&config, admin, &topic, replay_subscription).await?;
                Ok((Source::Pulsar(Box::new(source)), topic))
            }
            BackendKind::Kafka => {
                let config = loaded.kafka()?;
                let admin = KafkaAdmin::new(&config)?;
                let source =
                    KafkaDlq::open(&admin, topic, replay_subscription, config.connect_timeout())
                        .await?;
                Ok((Source::Kafka(source), topic.to_owned()))
            }
            BackendKind::Memory => Err(no_broker()),
        }
    }

    async fn next(&mut self, idle: Duration) -> Result<Option<Letter>, CliError> {
        match self {
            Source::Pulsar(source) => source.next(idle).await,
            Source::Kafka(source) => source.next(idle).await,
        }
    }

    async fn ack(&mut self, letter: &Letter) -> Result<(), CliError> {
        match self {
            Source::Pulsar(source) => source.ack(letter).await,
            Source::Kafka(source) => source.ack(letter).await,
        }
    }

    /// The topic that subscription `subscription` of `original` reads and no other
    /// subscription does (its retry topic), or why there is none.
    async fn replay_topic(
        &mut self,
        original: &str,
        subscription: &str,
    ) -> Result<Result<String, String>, CliError> {
        match self {
            Source::Pulsar(source) => source.replay_topic(original, subscription).await,
            Source::Kafka(source) => source.replay_topic(original, subscription).await,
        }
    }

    /// The message a replay of `dead` publishes to its subscription's retry topic.
    fn to_subscription(&self, dead: &Envelope) -> Envelope {
        match self {
            // A publish without a delivery time is delivered at once, as attempt 1.
            Source::Pulsar(_) => wire::replay_envelope(dead),
            Source::Kafka(_) => KafkaDlq::replay_envelope(dead),
        }
    }

    /// Whether reading may go on past a message left unacknowledged. On Pulsar each message
    /// is acknowledged on its own; on Kafka committing a later offset would pass over it.
    fn can_leave_behind(&self) -> bool {
        matches!(self, Source::Pulsar(_))
    }

    async fn close(self) {
        match self {
            Source::Pulsar(source) => (*source).close().await,
            Source::Kafka(source) => source.close().await,
        }
    }
}

/// Runs one `bento dlq` command.
pub async fn run(command: Dlq, loaded: &Loaded, out: Output) -> Result<(), CliError> {
    match command {
        Dlq::List(args) => list(args, loaded, out).await,
        Dlq::Replay(args) => replay(args, loaded, out).await,
    }
}

/// One dead letter, as `dlq list` prints it.
#[derive(Debug, Serialize)]
pub struct LetterRow {
    /// The message's Bento id (`bento-message-id`), the same as the original's.
    pub message_id: String,
    /// Event type.
    pub event_type: String,
    /// `permanent`, `retries-exhausted`, `undecodable`, `unknown-event-type`.
    pub failure: Option<String>,
    /// The last error.
    pub reason: Option<String>,
    /// Attempts made.
    pub attempts: Option<u32>,
    /// The topic it failed on.
    pub original_topic: Option<String>,
    /// The subscription that gave up, the one a replay reaches.
    pub subscription: Option<String>,
    /// When it was dead-lettered.
    pub failed_at: Option<String>,
    /// Where it sits on the dead-letter topic.
    pub position: String,
}

impl LetterRow {
    fn new(letter: &Letter) -> Self {
        let envelope = &letter.envelope;
        let header = |name: &str| envelope.headers.get(name).cloned();
        Self {
            message_id: envelope.id.to_string(),
            event_type: envelope.event_type.to_string(),
            failure: header(wire::DLQ_FAILURE),
            reason: header(wire::DLQ_REASON),
            attempts: header(wire::DLQ_ATTEMPTS).and_then(|a| a.parse().ok()),
            original_topic: header(wire::DLQ_ORIGINAL_TOPIC),
            subscription: header(wire::DLQ_SUBSCRIPTION),
            failed_at: header(wire::DLQ_FAILED_AT),
            position: letter.position.clone(),
        }
    }
}

/// What `dlq list` prints in JSON.
#[derive(Serialize)]
struct Listing<'a> {
    topic: &'a str,
    count: usize,
    dead_letters: &'a [LetterRow],
}

async fn list(args: DlqListArgs, loaded: &Loaded, out: Output) -> Result<(), CliError> {
    let idle = Duration::from_millis(args.idle_ms.max(1));
    let (mut source, topic) = Source::open(loaded, &args.topic, None).await?;
    let mut rows = Vec::new();
    let result = loop {
        if args.limit.is_some_and(|limit| rows.len() >= limit) {
            break Ok(());
        }
        match source.next(idle).await {
            Ok(Some(letter)) => rows.push(LetterRow::new(&letter)),
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    source.close().await;
    result?;
    let listing = Listing {
        topic: &topic,
        count: rows.len(),
        dead_letters: &rows,
    };
    out.print(&listing, || {
        let mut table = Table::new(&[
            "MESSAGE ID",
            "EVENT TYPE",
            "FAILURE",
            "ATTEMPTS",
            "ORIGINAL TOPIC",
            "FAILED AT",
            "REASON",
        ]);
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for row in &rows {
            table.row([
                row.message_id.clone(),
                row.event_type.clone(),
                dash(&row.failure),
                row.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
                dash(&row.original_topic),
                dash(&row.failed_at),
                dash(&row.reason),
            ]);
        }
        let mut text = if table.is_empty() {
            String::new()
        } else {
            table.render()
        };
        text.push_str(&format!("{} dead letter(s) on {topic}\n", rows.len()));
        text
    })
}

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

async fn replay(args: DlqReplayArgs, loaded: &Loaded, out: Output) -> Result<(), CliError> {
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
    let mut rows: Vec<ReplayRow> = Vec::new();
    let mut replayed = 0usize;
    let result: Result<(), CliError> = async {
        loop {
            if args.limit.is_some_and(|limit| replayed >= limit) {
                return Ok(());
            }
            let Some(letter) = source.next(idle).await? else {
                return Ok(());
            };
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
            let target = match (wire::original_topic(envelope), &subscription) {
                (None, _) => Err(format!("no {} header", wire::DLQ_ORIGINAL_TOPIC)),
                (Some(original), _) if args.to_original_topic => Ok(original.to_owned()),
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
            };
            let to_topic = match target {
                Ok(to_topic) => to_topic,
                Err(why) => {
                    // Left unacknowledged, so it stays for a person to look at, and reported.
                    row.status = format!("skipped: {why}");
                    rows.push(row);
                    if source.can_leave_behind() {
                        continue;
                    }
                    // Kafka: the replay stops here, so that no later commit passes over it.
                    return Ok(());
                }
            };
            row.to_topic = Some(to_topic.clone());
            match &bus {
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
                    source.ack(&letter).await?;
                    row.status = "replayed".into();
                }
            }
            replayed += 1;
            rows.push(row);
        }
    }
    .await;
    let source_stops = !source.can_leave_behind();
    source.close().await;
    if let Some(bus) = &bus {
        let _ = bus.close().await;
    }
    let skipped = rows
        .iter()
        .filter(|r| r.status.starts_with("skipped"))
        .count();
    let report = ReplayReport {
        topic: &topic,
        dry_run: args.dry_run,
        replayed,
        skipped,
        messages: &rows,
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
        for row in &rows {
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
        let verb = if args.dry_run {
            "would be replayed"
        } else {
            "replayed"
        };
        text.push_str(&format!(
            "{replayed} dead letter(s) {verb} from {topic}, {skipped} skipped\n"
        ));
        text
    })?;
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
