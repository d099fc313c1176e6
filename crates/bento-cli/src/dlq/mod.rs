//! `bento dlq list` and `bento dlq replay`: reading a dead-letter topic on either backend and
//! `list` are here, `replay` republishes.
//!
//! Each replay is recorded on the dead-letter topic's replay log, the topic `<dlq>-REPLAYED`
//! (one small JSON message per replayed dead letter: where it sat, where it went, when), which
//! `list` reads to show which letters were replayed and when, on Pulsar and Kafka alike.

mod kafka;
mod pulsar;
mod replay;

use std::collections::HashMap;
use std::time::Duration;

use bento_application::wire;
use bento_domain::Envelope;
use bento_kafka::KafkaAdmin;
use bento_runtime::BackendKind;
use serde::Serialize;

use crate::admin::{no_broker, unknown_backend};
use crate::cli::{Dlq, DlqListArgs};
use crate::config::Loaded;
use crate::error::CliError;
use crate::output::{Output, Table};

use self::kafka::KafkaDlq;
use self::pulsar::PulsarDlq;
use self::replay::replay;

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
            other => Err(unknown_backend(other)),
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

/// The replay log of dead-letter topic `topic`: one [`Replayed`] per dead letter replayed.
pub fn replay_log_topic(topic: &str) -> String {
    format!("{topic}-REPLAYED")
}

/// The event type of the replay log's messages.
const REPLAYED_EVENT_TYPE: &str = "bento.dlq-replayed";

/// One dead letter replayed, as the replay log records it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Replayed {
    /// The dead letter's message id.
    pub message_id: String,
    /// Where the dead letter sat on its topic ([`Letter::position`]), which tells two dead
    /// letters of one message apart.
    pub position: String,
    /// Where it was republished.
    pub to_topic: String,
    /// When (RFC 3339, UTC).
    pub replayed_at: String,
}

impl Replayed {
    /// The replay log message for `letter`, republished to `to_topic` now.
    fn envelope(letter: &Letter, to_topic: &str) -> Result<Envelope, CliError> {
        let record = Replayed {
            message_id: letter.envelope.id.to_string(),
            position: letter.position.clone(),
            to_topic: to_topic.to_owned(),
            replayed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        };
        let payload = serde_json::to_vec(&record)
            .map_err(|e| CliError::Broker(format!("encoding a replay record: {e}")))?;
        Ok(Envelope::new(
            REPLAYED_EVENT_TYPE,
            1,
            "application/json",
            payload,
        ))
    }
}

/// The replays recorded for dead-letter topic `topic`, by position; none when it has no
/// replay log yet.
async fn replays(
    loaded: &Loaded,
    topic: &str,
    idle: Duration,
) -> Result<HashMap<String, Replayed>, CliError> {
    let mut replays = HashMap::new();
    let mut source = match Source::open(loaded, &replay_log_topic(topic), None).await {
        Ok((source, _)) => source,
        Err(CliError::Usage(_)) => return Ok(replays), // no replay yet: no log
        Err(error) => return Err(error),
    };
    let result = loop {
        match source.next(idle).await {
            Ok(Some(record)) if record.envelope.event_type == REPLAYED_EVENT_TYPE => {
                // A record that does not parse is not ours: leave it out.
                if let Ok(replayed) = serde_json::from_slice::<Replayed>(&record.envelope.payload) {
                    replays.insert(replayed.position.clone(), replayed);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break Ok(replays),
            Err(error) => break Err(error),
        }
    };
    source.close().await;
    result
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
    /// When `bento dlq replay` replayed it (RFC 3339), if it did.
    pub replayed_at: Option<String>,
    /// Where that replay republished it.
    pub replayed_to: Option<String>,
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
            replayed_at: None,
            replayed_to: None,
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
    let mut replays = replays(loaded, &topic, idle).await?;
    for row in &mut rows {
        if let Some(replayed) = replays.remove(&row.position) {
            row.replayed_at = Some(replayed.replayed_at);
            row.replayed_to = Some(replayed.to_topic);
        }
    }
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
            "REPLAYED AT",
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
                dash(&row.replayed_at),
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
