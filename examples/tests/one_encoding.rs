//! One topic, one encoding, across the examples: every example runs on Pulsar, in a random
//! order, in a namespace of its own where the broker enforces schema validation. Afterwards
//! every topic they wrote holds exactly one schema type, and Pulsar's own Java client
//! (`pulsar-client consume --schema-type auto_consume` from the dev-env's distribution) decodes
//! every message on it as a record.
//!
//! Needs the dev-env broker (`cargo xtask dev-env up pulsar`, done by `cargo xtask test`) and
//! the example binaries (`cargo build -p bento-examples --examples`).

#![cfg(feature = "pulsar")]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bento_pulsar::{PulsarAdmin, PulsarConfig};
use bento_testkit::pulsar_cli;

use common::example;

fn pulsar_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".into())
}

fn admin_url() -> String {
    std::env::var("BENTO_TEST_PULSAR_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
}

/// A command running example `name` on Pulsar, with its plain topics in `namespace`.
fn on_pulsar(name: &str, namespace: &str) -> Command {
    let mut command = Command::new(example(name));
    command
        .env_remove("BENTO_CONFIG")
        .env("BENTO_MESSAGING__BACKEND", "pulsar")
        .env("BENTO_MESSAGING__PULSAR__SERVICE_URL", pulsar_url())
        .env("BENTO_MESSAGING__PULSAR__ADMIN_URL", admin_url())
        .env("BENTO_MESSAGING__PULSAR__NAMESPACE", namespace)
        .env("BENTO_OBSERVABILITY__METRICS__ADDRESS", "127.0.0.1:0");
    command
}

fn check(name: &str, output: &Output) {
    assert!(
        output.status.success(),
        "the {name} example failed on Pulsar:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs example `name` to its end (the service until SIGTERM after a few seconds).
fn run(name: &str, namespace: &str) {
    let started = Instant::now();
    let mut command = on_pulsar(name, namespace);
    let output = if name == "service" {
        // SIGTERM once it runs (its first summary), not after a fixed 4 s: a SIGTERM before it
        // listens for one, on a slow start, kills it instead of stopping it.
        common::stop_with_sigterm_once_running(
            &mut command,
            common::SERVICE_RUNNING,
            Duration::from_secs(120),
        )
        .0
    } else {
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run the {name} example: {e}"))
    };
    check(name, &output);
    println!("{name}: ran in {:.1}s", started.elapsed().as_secs_f64());
}

/// Every example, in the order `seed` shuffles them into.
fn shuffled(seed: u64) -> Vec<&'static str> {
    let mut examples = vec!["quickstart", "codecs", "middleware", "service"];
    if cfg!(feature = "sqlite") {
        examples.push("orders");
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    rng.shuffle(&mut examples);
    examples
}

/// A namespace of its own (`public/<name>`) where the broker enforces schema validation.
async fn validating_namespace(admin: &PulsarAdmin, name: &str) -> String {
    let namespace = format!("public/{name}");
    admin
        .create_namespace(&namespace)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating {namespace} failed ({e}); this test needs the dev-env broker: \
             `cargo xtask dev-env up pulsar`"
            )
        });
    admin
        .set_schema_validation_enforced(&namespace, true)
        .await
        .unwrap_or_else(|e| panic!("enforcing schema validation on {namespace}: {e}"));
    namespace
}

/// Runs every example to its end, in a random order (`BENTO_EXAMPLES_SEED` repeats one), with
/// its plain topics in namespace `name`.
async fn run_examples(name: &str, namespace: &str) {
    let seed = std::env::var("BENTO_EXAMPLES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let order = shuffled(seed);
    println!("examples in the order {order:?} (BENTO_EXAMPLES_SEED={seed}), in {namespace}");
    let runner = {
        let (order, name) = (order.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            for example in order {
                run(example, &name);
            }
        })
    };
    runner
        .await
        .unwrap_or_else(|e| panic!("running the examples: {e}"));
}

/// Every topic of `namespace` that received messages, with how many.
async fn written_topics(admin: &PulsarAdmin, namespace: &str) -> BTreeMap<String, i64> {
    let topics = admin
        .topics(namespace)
        .await
        .unwrap_or_else(|e| panic!("listing the topics of {namespace}: {e}"));
    let mut written = BTreeMap::new();
    for topic in topics {
        let stats = admin
            .topic_stats(&topic)
            .await
            .unwrap_or_else(|e| panic!("stats of {topic}: {e}"));
        if stats.msg_in_counter > 0 {
            written.insert(topic, stats.msg_in_counter);
        }
    }
    written
}

/// `topic` holds exactly one schema type, and the Java client reads its `count` messages as
/// records; returns a line for the report.
async fn check_one_schema(admin: &PulsarAdmin, topic: &str, count: i64) -> String {
    let versions = admin
        .schema_versions(topic)
        .await
        .unwrap_or_else(|e| panic!("schemas of {topic}: {e}"));
    let mut kinds: Vec<&str> = versions.iter().map(|v| v.kind.as_str()).collect();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        1,
        "{topic} ({count} messages) holds exactly one schema type, not {kinds:?}"
    );
    let started = Instant::now();
    let topic_name = topic.to_owned();
    let count = usize::try_from(count).unwrap_or_default();
    let consumed = tokio::task::spawn_blocking(move || {
        pulsar_cli::auto_consume(
            &pulsar_url(),
            &topic_name,
            "java-auto-consume",
            count,
            Duration::from_secs(180),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("the Java client task failed: {e}"))
    .unwrap_or_else(|e| panic!("{e}"));
    let not_records: Vec<&pulsar_cli::Consumed> =
        consumed.iter().filter(|m| !m.is_record()).collect();
    assert!(
        not_records.is_empty(),
        "Java's AUTO_CONSUME read {} of {count} message(s) on {topic} ({}) as something \
         else than records: {not_records:?}",
        not_records.len(),
        kinds[0]
    );
    format!(
        "{topic}: {} schema, {count} message(s) read as records by the Java client in {:.1}s",
        kinds[0],
        started.elapsed().as_secs_f64()
    )
}

/// Deletes `namespace`: topics first, as the broker refuses to delete a namespace with topics
/// unless forced, which the dev-env broker does not allow either.
async fn delete_namespace(admin: &PulsarAdmin, namespace: &str) {
    for topic in admin.topics(namespace).await.unwrap_or_default() {
        if let Err(error) = admin.delete_topic(&topic, true).await {
            println!("could not delete {topic}: {error}");
        }
    }
    if let Err(error) = admin.delete_namespace(namespace, false).await {
        println!("could not delete {namespace}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_the_examples_write_holds_one_schema_type_and_java_reads_records() {
    bento_testkit::broker_lock::share("pulsar");
    let admin = PulsarAdmin::new(&PulsarConfig {
        admin_url: admin_url(),
        ..PulsarConfig::default()
    })
    .unwrap_or_else(|e| panic!("admin client: {e}"));
    let name = format!("examples-{}", uuid::Uuid::now_v7().simple());
    let namespace = validating_namespace(&admin, &name).await;
    run_examples(&name, &namespace).await;

    // Every topic the examples wrote: its schema versions and its messages.
    let written = written_topics(&admin, &namespace).await;
    for expected in [
        "users.user-created",
        "codecs-example.users.user-created",
        "codecs-example.shipping.order-shipped",
        "examples.order-placed",
        "users.welcome-email-sent",
        "quickstart.crm-sync.dlq",
    ] {
        let topic = format!("persistent://{namespace}/{expected}");
        assert!(
            written.contains_key(&topic),
            "the examples wrote {topic}: {written:?}"
        );
    }
    let mut report = Vec::new();
    for (topic, count) in &written {
        report.push(check_one_schema(&admin, topic, *count).await);
    }
    println!("{}", report.join("\n"));

    // Passed: the namespace goes.
    delete_namespace(&admin, &namespace).await;
}
