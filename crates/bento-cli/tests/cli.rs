//! The `bento` binary end to end against the real brokers (`cargo xtask dev-env up pulsar` and
//! `up kafka`; `BENTO_TEST_PULSAR_URL`, `BENTO_TEST_PULSAR_ADMIN_URL`,
//! `BENTO_TEST_KAFKA_BOOTSTRAP`). The test plays the service: it subscribes with a handler that
//! always fails, so its events land on the dead-letter topic; then it runs `bento dlq list`
//! and `bento dlq replay` as an operator would, with the configuration in `BENTO_*` variables,
//! and checks that the fixed handler gets the very same messages, and that a replay reaches the
//! subscription that gave up and no other subscription of the topic.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bento_application::{
    BusError, Context, DeadLetterPolicy, HandlerError, MessageBus, PublishOptions, RetryPolicy,
    Subscription, SubscriptionSpec,
};
use bento_domain::Envelope;
use bento_kafka::{KafkaBus, KafkaConfig};
use bento_pulsar::{PulsarAdmin, PulsarBus, PulsarConfig};
use serde_json::Value;
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PATIENCE: Duration = Duration::from_secs(60);

fn pulsar_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".into())
}

fn pulsar_admin_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
}

fn kafka_bootstrap() -> String {
    std::env::var("BENTO_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(what: &str) -> String {
    format!("bento-cli-{what}-{}", uuid::Uuid::now_v7().simple())
}

/// Holds a broker's lock shared for the whole run, as the adapters' own test binaries do, so
/// that their resilience tests (which kill the broker, holding it exclusively) never run at the
/// same time as these.
fn share_pulsar() {
    bento_testkit::broker_lock::share("pulsar");
}

fn share_kafka() {
    bento_testkit::broker_lock::share("kafka");
}

#[derive(Clone, Copy)]
enum Backend {
    Pulsar,
    Kafka,
}

/// Runs the built `bento` with the configuration of `backend` in `BENTO_*` variables, from an
/// empty directory (no stray bento.toml).
async fn bento(backend: Backend, args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join("bento-cli-tests");
    let _ = std::fs::create_dir_all(&dir);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bento"));
    command
        .current_dir(&dir)
        .args(args)
        .env_remove("BENTO_CONFIG");
    match backend {
        Backend::Pulsar => command
            .env("BENTO_MESSAGING__BACKEND", "pulsar")
            .env("BENTO_MESSAGING__PULSAR__SERVICE_URL", pulsar_url())
            .env("BENTO_MESSAGING__PULSAR__ADMIN_URL", pulsar_admin_url()),
        Backend::Kafka => command.env("BENTO_MESSAGING__BACKEND", "kafka").env(
            "BENTO_MESSAGING__KAFKA__BOOTSTRAP_SERVERS",
            kafka_bootstrap(),
        ),
    };
    let shown = format!("bento {}", args.join(" "));
    tokio::task::spawn_blocking(move || {
        command
            .output()
            .unwrap_or_else(|e| panic!("running {shown}: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the bento process task failed: {e}"))
}

/// Runs `bento`, which must succeed; returns its stdout.
async fn bento_ok(backend: Backend, args: &[&str]) -> String {
    let output = bento(backend, args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bento {} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" "),
        output.status
    );
    stdout
}

/// Runs `bento --json ...`, which must succeed; returns the parsed output.
async fn bento_json(backend: Backend, args: &[&str]) -> Value {
    let args: Vec<&str> = std::iter::once("--json")
        .chain(args.iter().copied())
        .collect();
    let stdout = bento_ok(backend, &args).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn strings(value: &Value, field: &str) -> BTreeSet<String> {
    value["dead_letters"]
        .as_array()
        .map(|letters| {
            letters
                .iter()
                .filter_map(|l| l[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A handler that always fails permanently.
fn failing() -> Arc<dyn bento_application::EnvelopeHandler> {
    Arc::new(|ctx: Context| async move {
        Err::<(), _>(HandlerError::permanent(format!(
            "mailbox of {} is full",
            ctx.envelope().aggregate_id
        )))
    })
}

/// A handler that works, reporting each message id it handled.
fn fixed(handled: mpsc::UnboundedSender<String>) -> Arc<dyn bento_application::EnvelopeHandler> {
    Arc::new(move |ctx: Context| {
        let handled = handled.clone();
        async move {
            let _ = handled.send(ctx.message_id().to_string());
            Ok::<(), HandlerError>(())
        }
    })
}

async fn publish_three(bus: &dyn MessageBus, topic: &str) -> Result<BTreeSet<String>, BusError> {
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let envelope = Envelope::new(
            "orders.order-placed",
            1,
            "application/json",
            format!(r#"{{"order":"o-{i}"}}"#).into_bytes(),
        )
        .with_aggregate("order", format!("o-{i}"))
        .with_ordering_key(format!("o-{i}"))
        .with_header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        ids.insert(envelope.id.to_string());
        bus.publish(envelope, PublishOptions::default().to_topic(topic))
            .await?;
    }
    Ok(ids)
}

/// Lists `dlq` until it holds `count` dead letters (they are written asynchronously).
async fn wait_for_dead_letters(backend: Backend, dlq: &str, count: usize) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The dead-letter topic appears with the first dead letter: until then, an error.
        let output = bento(
            backend,
            &["--json", "dlq", "list", dlq, "--idle-ms", "1500"],
        )
        .await;
        if !output.status.success() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let listing: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "dlq list: not JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let found = listing["count"].as_u64().unwrap_or(0) as usize;
        if found >= count || Instant::now() > deadline {
            assert_eq!(found, count, "dead letters on {dlq}: {listing:#}");
            return listing;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn receive(handled: &mut mpsc::UnboundedReceiver<String>, count: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < count {
        match tokio::time::timeout_at(deadline, handled.recv()).await {
            Ok(Some(id)) => {
                got.insert(id);
            }
            _ => break,
        }
    }
    got
}

/// The whole operator story on one backend: dead letters listed with their reasons, a dry run,
/// a replay the fixed handler receives with the same ids, and a second replay that does
/// nothing.
async fn dead_letters_are_listed_and_replayed(
    backend: Backend,
    bus: Arc<dyn MessageBus>,
    topic: &str,
    dlq: &str,
    original_topic: &str,
    subscription: &str,
) -> Result<(Subscription, BTreeSet<String>), Box<dyn std::error::Error>> {
    let spec = || {
        SubscriptionSpec::topic(topic, subscription).dead_letter(DeadLetterPolicy::to_topic(dlq))
    };
    let doomed = bus.subscribe(spec(), failing()).await?;
    let ids = publish_three(bus.as_ref(), topic).await?;

    let listing = wait_for_dead_letters(backend, dlq, 3).await;
    assert_eq!(strings(&listing, "message_id"), ids, "{listing:#}");
    let letters = listing["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for letter in &letters {
        assert_eq!(letter["failure"], "permanent", "{letter:#}");
        assert_eq!(letter["attempts"], 1, "{letter:#}");
        assert_eq!(letter["original_topic"], original_topic, "{letter:#}");
        assert_eq!(letter["subscription"], subscription, "{letter:#}");
        assert_eq!(letter["event_type"], "orders.order-placed", "{letter:#}");
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("mailbox of o-") && reason.ends_with(" is full"),
            "{letter:#}"
        );
        assert!(
            letter["failed_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{letter:#}"
        );
        assert!(
            letter["replayed_at"].is_null(),
            "not replayed yet: {letter:#}"
        );
    }
    // The table an operator reads.
    let table = bento_ok(backend, &["dlq", "list", dlq, "--idle-ms", "1500"]).await;
    assert!(table.starts_with("MESSAGE ID"), "{table}");
    assert!(table.contains("3 dead letter(s)"), "{table}");
    for id in &ids {
        assert!(table.contains(id.as_str()), "{table}");
    }
    assert!(table.contains("mailbox of o-1 is full"), "{table}");
    // --limit.
    let one = bento_json(
        backend,
        &["dlq", "list", dlq, "--limit", "1", "--idle-ms", "1500"],
    )
    .await;
    assert_eq!(one["count"], 1, "{one:#}");
    doomed.shutdown().await?;

    // The handler is fixed and its subscription runs again.
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let healthy = bus.subscribe(spec(), fixed(handled_tx)).await?;

    let dry = bento_json(
        backend,
        &["dlq", "replay", dlq, "--dry-run", "--idle-ms", "1500"],
    )
    .await;
    assert_eq!(dry["replayed"], 3, "{dry:#}");
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    let statuses: BTreeSet<&str> = dry["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|r| r["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, BTreeSet::from(["would replay"]), "{dry:#}");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), handled.recv())
            .await
            .is_err(),
        "a dry run published something"
    );

    let replay = bento_ok(backend, &["dlq", "replay", dlq, "--idle-ms", "1500"]).await;
    assert!(replay.contains("3 dead letter(s) replayed"), "{replay}");
    for id in &ids {
        assert!(replay.contains(id.as_str()), "{replay}");
    }
    let received = receive(&mut handled, 3).await;
    assert_eq!(
        received, ids,
        "the fixed handler got other messages than the dead letters"
    );

    // `dlq list` still shows the three, each with when it was replayed and where to.
    let listed = bento_json(backend, &["dlq", "list", dlq, "--idle-ms", "1500"]).await;
    let letters = listed["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(letters.len(), 3, "{listed:#}");
    for letter in &letters {
        assert!(
            letter["replayed_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "replayed, with the time: {letter:#}"
        );
        let to = letter["replayed_to"].as_str().unwrap_or_default();
        assert!(
            to.contains(subscription),
            "replayed to its subscription's topic: {letter:#}"
        );
    }
    let table = bento_ok(backend, &["dlq", "list", dlq, "--idle-ms", "1500"]).await;
    assert!(table.contains("REPLAYED AT"), "{table}");
    let replayed_at = letters[0]["replayed_at"].as_str().unwrap_or("?");
    assert!(table.contains(replayed_at), "{table}");

    // Replayed once: a second replay finds nothing left.
    let again = bento_json(backend, &["dlq", "replay", dlq, "--idle-ms", "1500"]).await;
    assert_eq!(again["replayed"], 0, "{again:#}");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), handled.recv())
            .await
            .is_err(),
        "a message was handled twice"
    );
    Ok((healthy, ids))
}

async fn pulsar_bus() -> PulsarBus {
    share_pulsar();
    let config = PulsarConfig {
        service_url: pulsar_url(),
        admin_url: pulsar_admin_url(),
        ..PulsarConfig::default()
    };
    PulsarBus::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "the Pulsar broker at {} is unreachable ({e}); start it with `cargo xtask dev-env up \
             pulsar` or point BENTO_TEST_PULSAR_URL / BENTO_TEST_PULSAR_ADMIN_URL at one",
            pulsar_url()
        )
    })
}

async fn kafka_bus() -> KafkaBus {
    share_kafka();
    let mut config = KafkaConfig::new(kafka_bootstrap());
    config.client_id = "bento-cli-tests".into();
    config.partitions = 2;
    config.commit_interval_ms = 200;
    KafkaBus::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "the Kafka broker at {} is unreachable ({e}); start it with `cargo xtask dev-env up \
             kafka` or point BENTO_TEST_KAFKA_BOOTSTRAP at one",
            kafka_bootstrap()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_dead_letters_are_listed_and_replayed_to_the_original_subscription() -> TestResult {
    let bus = pulsar_bus().await;
    let topic = unique("orders");
    let subscription = unique("mailer");
    let full = format!("persistent://public/default/{topic}");
    let dlq = format!("{full}-{subscription}-DLQ");
    let shared: Arc<dyn MessageBus> = Arc::new(bus.clone());
    let (healthy, _) = dead_letters_are_listed_and_replayed(
        Backend::Pulsar,
        shared.clone(),
        &topic,
        &dlq,
        &full,
        &subscription,
    )
    .await?;

    // The replay subscription is durable and remembered where it stopped; listing left none.
    let subscriptions =
        bento_json(Backend::Pulsar, &["admin", "subscriptions", "list", &dlq]).await;
    let names: Vec<&String> = subscriptions
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["bento-dlq-replay"], "{subscriptions:#}");
    assert_eq!(
        subscriptions["bento-dlq-replay"]["msg_backlog"], 0,
        "{subscriptions:#}"
    );

    healthy.shutdown().await?;
    shared.close().await?;
    let admin = PulsarAdmin::new(bus.config())?;
    for topic in [dlq, bus.retry_topic(&topic, &subscription), full] {
        admin.delete_topic(&topic, true).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_are_listed_and_replayed_to_the_original_subscription() -> TestResult {
    let bus = kafka_bus().await;
    let topic = unique("orders");
    let subscription = unique("mailer");
    let dlq = format!("{topic}-{subscription}-DLQ");
    let shared: Arc<dyn MessageBus> = Arc::new(bus.clone());
    let (healthy, _) = dead_letters_are_listed_and_replayed(
        Backend::Kafka,
        shared.clone(),
        &topic,
        &dlq,
        &topic,
        &subscription,
    )
    .await?;
    healthy.shutdown().await?;
    // Listing joined no consumer group and committed nothing: no group is left behind.
    let groups = bus.admin().list_groups().await?;
    assert!(
        !groups.iter().any(|g| g.name.starts_with("bento-dlq-list-")),
        "{groups:?}"
    );

    // The subscription's consumer group on the topic: the 3 originals only (the replays went to
    // the subscription's retry topic), all consumed; reset to the earliest while it is stopped,
    // the 3 are to be consumed again.
    let group = bento_json(
        Backend::Kafka,
        &["admin", "subscriptions", "describe", &topic, &subscription],
    )
    .await;
    let lag: i64 = group["partitions"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["lag"].as_i64()).sum())
        .unwrap_or(-1);
    assert_eq!(lag, 0, "{group:#}");
    let reset = bento_json(
        Backend::Kafka,
        &[
            "admin",
            "subscriptions",
            "reset",
            &topic,
            &subscription,
            "--earliest",
        ],
    )
    .await;
    let lag: i64 = reset["partitions"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["lag"].as_i64()).sum())
        .unwrap_or(-1);
    assert_eq!(lag, 3, "{reset:#}");
    let retry = bento_kafka::topics::retry_topic(&topic, &subscription, 1);
    let replays: i64 = bus
        .admin()
        .describe_topic(&retry)
        .await?
        .partitions
        .iter()
        .map(|p| p.high_watermark - p.low_watermark)
        .sum();
    assert_eq!(replays, 3, "records on {retry}");

    shared.close().await?;
    delete_kafka_topics(&bus, &topic, &dlq).await
}

/// Deletes a test's Kafka topics: `topic`, its dead-letter topic `dlq` and its replay log
/// (`<dlq>-REPLAYED`), and every topic named `<topic>.*` (its delay topic and the retry tiers
/// of its subscriptions).
async fn delete_kafka_topics(bus: &KafkaBus, topic: &str, dlq: &str) -> TestResult {
    let prefix = format!("{topic}.");
    let topics: Vec<String> = bus
        .admin()
        .list_topics()
        .await?
        .into_iter()
        .filter(|t| t == dlq || t == topic || t.starts_with(&prefix) || t.starts_with(dlq))
        .collect();
    bus.admin().delete_topics(&topics).await?;
    Ok(())
}

/// A handler that counts its deliveries per message id, and fails permanently if `fails`.
fn counting(
    deliveries: mpsc::UnboundedSender<String>,
    fails: bool,
) -> Arc<dyn bento_application::EnvelopeHandler> {
    Arc::new(move |ctx: Context| {
        let deliveries = deliveries.clone();
        async move {
            let _ = deliveries.send(ctx.message_id().to_string());
            if fails {
                Err(HandlerError::permanent("the CRM refuses this contact"))
            } else {
                Ok(())
            }
        }
    })
}

/// Receives deliveries until `count` arrived (or `PATIENCE` passed), then for `quiet` more;
/// returns how often each message id was delivered.
async fn deliveries(
    received: &mut mpsc::UnboundedReceiver<String>,
    count: usize,
    quiet: Duration,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while total < count {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some(id)) => {
                *seen.entry(id).or_insert(0) += 1;
                total += 1;
            }
            _ => break,
        }
    }
    while let Ok(Some(id)) = tokio::time::timeout(quiet, received.recv()).await {
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn each(ids: &BTreeSet<String>, times: usize) -> BTreeMap<String, usize> {
    ids.iter().map(|id| (id.clone(), times)).collect()
}

/// How long a subscription must stay silent for "it got nothing" to mean something: the
/// replayed messages reach the failing subscription well within it.
const QUIET: Duration = Duration::from_secs(2);

/// Two subscriptions on one topic, one of which always fails: its dead letters, replayed, reach
/// it alone (through its retry topic), and the other subscription sees nothing new. With
/// `--to-original-topic` they go back to the topic and both see them.
async fn replay_reaches_only_the_failing_subscription(
    backend: Backend,
    bus: Arc<dyn MessageBus>,
    topic: &str,
    dlq: &str,
    original_topic: &str,
    failing_subscription: &str,
    replay_topic: &str,
) -> Result<(Subscription, Subscription), Box<dyn std::error::Error>> {
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let failing = bus
        .subscribe(
            SubscriptionSpec::topic(topic, failing_subscription)
                .dead_letter(DeadLetterPolicy::to_topic(dlq)),
            counting(failed_tx, true),
        )
        .await?;
    let healthy = bus
        .subscribe(
            SubscriptionSpec::topic(topic, unique("audit")),
            counting(handled_tx, false),
        )
        .await?;
    let ids = publish_three(bus.as_ref(), topic).await?;
    assert_eq!(
        deliveries(&mut handled, 3, Duration::ZERO).await,
        each(&ids, 1)
    );
    assert_eq!(
        deliveries(&mut failed, 3, Duration::ZERO).await,
        each(&ids, 1)
    );
    wait_for_dead_letters(backend, dlq, 3).await;

    let replay = bento_json(backend, &["dlq", "replay", dlq, "--idle-ms", "1500"]).await;
    assert_eq!(replay["replayed"], 3, "{replay:#}");
    assert_eq!(replay["skipped"], 0, "{replay:#}");
    for row in replay["messages"].as_array().cloned().unwrap_or_default() {
        assert_eq!(row["status"], "replayed", "{row:#}");
        assert_eq!(row["subscription"], failing_subscription, "{row:#}");
        assert_eq!(row["to_topic"], replay_topic, "{row:#}");
    }
    // The failing subscription handles each message once more (and dead-letters it again)...
    assert_eq!(
        deliveries(&mut failed, 3, QUIET).await,
        each(&ids, 1),
        "deliveries to the failing subscription after the replay"
    );
    // ...and the other subscription of the topic sees nothing.
    assert_eq!(
        deliveries(&mut handled, 0, QUIET).await,
        BTreeMap::new(),
        "the replay reached a subscription that had handled the messages"
    );

    // The second dead letters, replayed to the original topic on purpose: both see them.
    wait_for_dead_letters(backend, dlq, 6).await;
    let broadcast = bento_json(
        backend,
        &[
            "dlq",
            "replay",
            dlq,
            "--to-original-topic",
            "--idle-ms",
            "1500",
        ],
    )
    .await;
    assert_eq!(broadcast["replayed"], 3, "{broadcast:#}");
    for row in broadcast["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert_eq!(row["to_topic"], original_topic, "{row:#}");
    }
    assert_eq!(deliveries(&mut failed, 3, QUIET).await, each(&ids, 1));
    assert_eq!(deliveries(&mut handled, 3, QUIET).await, each(&ids, 1));
    Ok((failing, healthy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_replay_reaches_only_the_failing_subscription() -> TestResult {
    let bus = pulsar_bus().await;
    let topic = unique("contacts");
    let subscription = unique("crm-sync");
    let full = format!("persistent://public/default/{topic}");
    let dlq = format!("{full}-{subscription}-DLQ");
    let retry = bus.retry_topic(&topic, &subscription);
    let shared: Arc<dyn MessageBus> = Arc::new(bus.clone());
    let (failing, healthy) = replay_reaches_only_the_failing_subscription(
        Backend::Pulsar,
        shared.clone(),
        &topic,
        &dlq,
        &full,
        &subscription,
        &retry,
    )
    .await?;
    failing.shutdown().await?;
    healthy.shutdown().await?;
    shared.close().await?;
    let admin = PulsarAdmin::new(bus.config())?;
    let mut topics = vec![dlq, retry, full.clone()];
    topics.extend(
        admin
            .topics("public/default")
            .await?
            .into_iter()
            .filter(|t| t.starts_with(&format!("{full}-")) && t.ends_with("-RETRY")),
    );
    topics.sort();
    topics.dedup();
    for topic in topics {
        admin.delete_topic(&topic, true).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_replay_reaches_only_the_failing_subscription() -> TestResult {
    let bus = kafka_bus().await;
    let topic = unique("contacts");
    let subscription = unique("crm-sync");
    let dlq = format!("{topic}-{subscription}-DLQ");
    let retry = bento_kafka::topics::retry_topic(&topic, &subscription, 1);
    let shared: Arc<dyn MessageBus> = Arc::new(bus.clone());
    let (failing, healthy) = replay_reaches_only_the_failing_subscription(
        Backend::Kafka,
        shared.clone(),
        &topic,
        &dlq,
        &topic,
        &subscription,
        &retry,
    )
    .await?;
    failing.shutdown().await?;
    healthy.shutdown().await?;
    shared.close().await?;
    delete_kafka_topics(&bus, &topic, &dlq).await
}

/// A Kafka subscription whose retry policy allows no retry has no retry topic: its dead letters
/// are not replayed to the whole topic behind its back but reported, left on the dead-letter
/// topic, and replayed to the topic only when asked with `--to-original-topic`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_replay_without_a_retry_topic_is_refused() -> TestResult {
    let bus = kafka_bus().await;
    let topic = unique("contacts");
    let subscription = unique("crm-sync");
    let dlq = format!("{topic}-{subscription}-DLQ");
    let (failed_tx, mut failed) = mpsc::unbounded_channel();
    let failing = bus
        .subscribe(
            SubscriptionSpec::topic(&topic, &subscription)
                .retry(RetryPolicy::none())
                .dead_letter(DeadLetterPolicy::to_topic(&dlq)),
            counting(failed_tx, true),
        )
        .await?;
    let ids = publish_three(&bus, &topic).await?;
    assert_eq!(
        deliveries(&mut failed, 3, Duration::ZERO).await,
        each(&ids, 1)
    );
    wait_for_dead_letters(Backend::Kafka, &dlq, 3).await;

    let refused = bento(
        Backend::Kafka,
        &["--json", "dlq", "replay", &dlq, "--idle-ms", "1500"],
    )
    .await;
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("dlq replay: not JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert_eq!(report["replayed"], 0, "{report:#}");
    assert_eq!(report["skipped"], 1, "stops at the first: {report:#}");
    let retry = bento_kafka::topics::retry_topic(&topic, &subscription, 1);
    let status = report["messages"][0]["status"].as_str().unwrap_or_default();
    assert!(
        status.starts_with("skipped: ") && status.contains(&retry),
        "{report:#}"
    );
    assert!(stderr.contains("--to-original-topic"), "{stderr}");
    assert_eq!(
        deliveries(&mut failed, 0, QUIET).await,
        BTreeMap::new(),
        "a refused replay delivered something"
    );
    wait_for_dead_letters(Backend::Kafka, &dlq, 3).await;

    let broadcast = bento_json(
        Backend::Kafka,
        &[
            "dlq",
            "replay",
            &dlq,
            "--to-original-topic",
            "--idle-ms",
            "1500",
        ],
    )
    .await;
    assert_eq!(broadcast["replayed"], 3, "{broadcast:#}");
    assert_eq!(deliveries(&mut failed, 3, QUIET).await, each(&ids, 1));

    failing.shutdown().await?;
    bus.close().await?;
    delete_kafka_topics(&bus, &topic, &dlq).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_admin_topics_through_the_cli() -> TestResult {
    share_pulsar();
    let tenant = unique("tenant");
    let namespace = format!("{tenant}/ns");
    let topic = format!("persistent://{namespace}/payments");
    let created = bento_ok(Backend::Pulsar, &["admin", "tenants", "create", &tenant]).await;
    assert_eq!(created.trim(), format!("created tenant {tenant}"));
    bento_ok(
        Backend::Pulsar,
        &["admin", "namespaces", "create", &namespace],
    )
    .await;
    bento_ok(
        Backend::Pulsar,
        &["admin", "topics", "create", &topic, "--partitions", "2"],
    )
    .await;
    let listed = bento_ok(Backend::Pulsar, &["admin", "topics", "list", &namespace]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&topic) && l.trim_end().ends_with('2')),
        "{listed}"
    );
    // A subscription's retry topic is listed under its topic, saying whose it is (names sort
    // `billing-RETRY` before `payments`; the grouping puts it after).
    let retry_topic = format!("persistent://{namespace}/payments-billing-RETRY");
    let other = format!("persistent://{namespace}/billing");
    for created in [&retry_topic, &other] {
        bento_ok(Backend::Pulsar, &["admin", "topics", "create", created]).await;
    }
    let listed = bento_ok(Backend::Pulsar, &["admin", "topics", "list", &namespace]).await;
    let order: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        order,
        [other.as_str(), topic.as_str(), retry_topic.as_str()],
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&retry_topic) && l.trim_end().ends_with("retries of billing")),
        "{listed}"
    );
    let roles = bento_json(Backend::Pulsar, &["admin", "topics", "list", &namespace]).await;
    assert_eq!(roles[2]["role"], "retry", "{roles:#}");
    assert_eq!(roles[2]["of_topic"], topic.as_str(), "{roles:#}");
    assert_eq!(roles[2]["subscription"], "billing", "{roles:#}");
    assert_eq!(roles[0]["role"], "topic", "{roles:#}");
    for created in [&retry_topic, &other] {
        bento_ok(Backend::Pulsar, &["admin", "topics", "delete", created]).await;
    }
    let tenants = bento_json(Backend::Pulsar, &["admin", "tenants", "list"]).await;
    assert!(
        tenants
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == &Value::String(tenant.clone()))),
        "{tenants}"
    );

    // Policies set and read back through the CLI.
    let policies = bento_json(
        Backend::Pulsar,
        &[
            "admin",
            "namespaces",
            "policies",
            &namespace,
            "--deduplication",
            "on",
            "--retention-minutes",
            "30",
            "--retention-mb",
            "8",
            "--ttl-seconds",
            "600",
        ],
    )
    .await;
    assert_eq!(policies["deduplication"], true, "{policies:#}");
    assert_eq!(
        policies["retention"]["retentionTimeInMinutes"], 30,
        "{policies:#}"
    );
    assert_eq!(policies["message_ttl_seconds"], 600, "{policies:#}");

    // A refusal: exit status 1, the broker's status and message on stderr.
    let again = bento(Backend::Pulsar, &["admin", "tenants", "create", &tenant]).await;
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("HTTP 409") && stderr.contains("Tenant already exist"),
        "{stderr}"
    );
    let schema = bento(Backend::Pulsar, &["admin", "schemas", &topic]).await;
    assert!(schema.status.success(), "{schema:?}");
    assert!(String::from_utf8_lossy(&schema.stdout).contains("has no schema"));

    // A dead-letter topic that does not exist is an error, and is not created by asking.
    let missing = format!("persistent://{namespace}/no-such-dlq");
    let listed = bento(Backend::Pulsar, &["dlq", "list", &missing]).await;
    assert_eq!(listed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let admin = PulsarAdmin::from_url(&pulsar_admin_url())?;
    assert!(
        admin
            .partitions(&missing)
            .await
            .is_err_and(|e| e.is_not_found())
    );

    // The same configuration from a file, named by --config or by BENTO_CONFIG.
    let dir = std::env::temp_dir().join(unique("config"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("staging.toml");
    std::fs::write(
        &file,
        format!(
            "[messaging]\nbackend = \"pulsar\"\n\n[messaging.pulsar]\nservice_url = \"{}\"\n\
             admin_url = \"{}\"\n",
            pulsar_url(),
            pulsar_admin_url()
        ),
    )?;
    let file_arg = file.to_string_lossy().into_owned();
    for by_variable in [false, true] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bento"));
        command
            .current_dir(&dir)
            .env_remove("BENTO_MESSAGING__BACKEND")
            .env_remove("BENTO_MESSAGING__PULSAR__ADMIN_URL")
            .env_remove("BENTO_MESSAGING__PULSAR__SERVICE_URL");
        if by_variable {
            command.env("BENTO_CONFIG", &file_arg);
        } else {
            command
                .env_remove("BENTO_CONFIG")
                .args(["--config", &file_arg]);
        }
        command.args(["admin", "topics", "list", &namespace]);
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(&topic),
            "by variable: {by_variable}: {output:?}"
        );
    }
    std::fs::remove_dir_all(&dir)?;

    bento_ok(Backend::Pulsar, &["admin", "topics", "delete", &topic]).await;
    let listed = bento_json(Backend::Pulsar, &["admin", "topics", "list", &namespace]).await;
    assert_eq!(listed, Value::Array(Vec::new()));
    bento_ok(
        Backend::Pulsar,
        &["admin", "namespaces", "delete", &namespace],
    )
    .await;
    bento_ok(Backend::Pulsar, &["admin", "tenants", "delete", &tenant]).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_admin_topics_through_the_cli() -> TestResult {
    share_kafka();
    let topic = unique("payments");
    bento_ok(
        Backend::Kafka,
        &["admin", "topics", "create", &topic, "--partitions", "3"],
    )
    .await;
    let listed = bento_ok(Backend::Kafka, &["admin", "topics", "list"]).await;
    assert!(listed.lines().any(|l| l.trim() == topic), "{listed}");
    let listed = bento_json(Backend::Kafka, &["admin", "topics", "list", &topic]).await;
    assert_eq!(
        listed,
        serde_json::json!([{ "topic": topic, "role": "topic" }])
    );
    // A group's retry tier and the topic's delayed topic are listed under it, saying whose.
    let tier = format!("{topic}.billing.retry.1");
    let delayed = format!("{topic}.delayed");
    for created in [&tier, &delayed] {
        bento_ok(Backend::Kafka, &["admin", "topics", "create", created]).await;
    }
    let listed = bento_ok(Backend::Kafka, &["admin", "topics", "list", &topic]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&tier) && l.trim_end().ends_with("retries of billing")),
        "{listed}"
    );
    let roles = bento_json(Backend::Kafka, &["admin", "topics", "list", &topic]).await;
    assert_eq!(roles[0]["topic"], topic.as_str(), "{roles:#}");
    assert_eq!(roles[1]["role"], "retry", "{roles:#}");
    assert_eq!(roles[1]["of_topic"], topic.as_str(), "{roles:#}");
    assert_eq!(roles[1]["subscription"], "billing", "{roles:#}");
    assert_eq!(roles[2]["role"], "delayed", "{roles:#}");
    for created in [&tier, &delayed] {
        bento_ok(Backend::Kafka, &["admin", "topics", "delete", created]).await;
    }
    let stats = bento_json(Backend::Kafka, &["admin", "topics", "stats", &topic]).await;
    assert_eq!(
        stats["partitions"].as_array().map(Vec::len),
        Some(3),
        "{stats:#}"
    );
    let twice = bento(Backend::Kafka, &["admin", "topics", "create", &topic]).await;
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already exists"));
    let pulsar_only = bento(Backend::Kafka, &["admin", "tenants", "list"]).await;
    assert_eq!(pulsar_only.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&pulsar_only.stderr).contains("Pulsar only"));

    bento_ok(Backend::Kafka, &["admin", "topics", "delete", &topic]).await;
    let listed = bento_json(Backend::Kafka, &["admin", "topics", "list", &topic]).await;
    assert_eq!(
        listed,
        Value::Array(Vec::new()),
        "deleted topic still listed"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_admin_api_and_a_memory_backend_fail_with_a_message() {
    let output = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bento"))
            .current_dir(std::env::temp_dir())
            .env_remove("BENTO_CONFIG")
            .env("BENTO_MESSAGING__BACKEND", "pulsar")
            .env("BENTO_MESSAGING__PULSAR__ADMIN_URL", "http://127.0.0.1:1")
            .env("BENTO_MESSAGING__PULSAR__AUTH__TOKEN", "very-secret-token")
            .args(["admin", "tenants", "list"])
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("task: {e}"))
    .unwrap_or_else(|e| panic!("running bento: {e}"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("http://127.0.0.1:1/admin/v2/tenants"),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-token"), "{stderr}");

    let output = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bento"))
            .current_dir(std::env::temp_dir())
            .env_remove("BENTO_CONFIG")
            .env("BENTO_MESSAGING__BACKEND", "memory")
            .args(["dlq", "list", "x"])
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("task: {e}"))
    .unwrap_or_else(|e| panic!("running bento: {e}"));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("messaging.backend is `memory`"));
}
