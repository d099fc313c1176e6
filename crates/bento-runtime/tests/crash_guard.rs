//! A message that takes the whole process down, on the real brokers: the service's process
//! aborts in the handler, is started again, and the broker hands the message back, again and
//! again (Pulsar's redelivery count stays 0 when a consumer's connection drops; Kafka replays
//! from the last commit). Behind `CrashGuardLayer`, which `[crash_guard]` in the service's
//! configuration installs, it is dead-lettered after the second crash, with the reason, and the
//! other messages are handled.
//!
//! The service is this test binary run again as a child process (`BENTO_CRASH_CHILD` set),
//! reading its configuration as a service does.

#![cfg(any(feature = "pulsar", feature = "kafka"))]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bento_application::{DeadLetterPolicy, PublishOptions, SubscriptionSpec};
use bento_domain::Envelope;
use bento_runtime::Config;
use bento_runtime::prelude::*;
use bento_testkit::Collector;

const CHILD_VAR: &str = "BENTO_CRASH_CHILD";
const SUBSCRIPTION: &str = "crash-guarded";
const MAX_CRASHES: u32 = 2;

fn broker_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the brokers with `cargo xtask dev-env up` and `eval \"$(cargo xtask dev-env env)\"`, or run `cargo xtask test`")
    })
}

/// The child: a service whose handler aborts the process on the message `poison`.
async fn child(work: &Path) {
    let topic = std::fs::read_to_string(work.join("topic")).expect("topic file");
    let bento = Bento::from_env().await.expect("the service starts");
    let handled = work.join("handled");
    let handler = move |ctx: Context| {
        let handled = handled.clone();
        async move {
            let payload = ctx.envelope().payload.clone();
            if &payload[..] == b"poison" {
                std::process::abort();
            }
            let mut line = String::from_utf8_lossy(&payload).into_owned();
            line.push('\n');
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&handled)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .map_err(|e| HandlerError::retryable(e.to_string()))
        }
    };
    // The guard comes from `[crash_guard]` in the configuration, around every subscription.
    let spec = SubscriptionSpec::topic(topic.trim(), SUBSCRIPTION);
    let _subscription = bento
        .bus()
        .subscribe_envelopes(spec, handler)
        .await
        .expect("subscribes");
    std::fs::write(work.join("ready"), b"").expect("ready file");
    std::future::pending::<()>().await;
}

fn spawn_child(work: &Path, config: &Path, test: &str) -> Child {
    let _ = std::fs::remove_file(work.join("ready"));
    Command::new(std::env::current_exe().expect("own executable"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, work)
        .env("BENTO_CONFIG", config)
        .spawn()
        .expect("the service process starts")
}

async fn wait_ready(work: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !work.join("ready").exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the service exited before it subscribed: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the service did not subscribe within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn handled(work: &Path) -> Vec<String> {
    std::fs::read_to_string(work.join("handled"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn a_message_that_kills_the_process_is_dead_lettered_after_two_crashes(
    backend_config: String,
    test: &str,
) {
    if let Some(work) = std::env::var_os(CHILD_VAR) {
        child(Path::new(&work)).await;
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let work: PathBuf = dir.path().to_path_buf();
    let topic = format!("crash-guard-{}", uuid::Uuid::now_v7().simple());
    std::fs::write(work.join("topic"), &topic).expect("topic file");
    let config = work.join("bento.toml");
    // The parent publishes and watches the dead letters without the guard; the service's
    // own configuration adds it.
    std::fs::write(&config, &backend_config).expect("config file");
    let service_config = work.join("service.toml");
    std::fs::write(
        &service_config,
        format!(
            "{backend_config}[crash_guard]\ndirectory = \"{}\"\nmax_crashes = {MAX_CRASHES}\n",
            work.join("journal").display()
        ),
    )
    .expect("service config file");

    let bento = Bento::from_config(
        Config::from_figment(Config::figment(&config)).expect("the configuration reads"),
    )
    .await
    .expect("the test's own bus starts");
    let port = bento.bus().message_bus().clone();
    let dead_letter_topic = DeadLetterPolicy::default().topic_for(&topic, SUBSCRIPTION);
    let (letters, _watch) = Collector::subscribe(
        &*port,
        SubscriptionSpec::topic(&dead_letter_topic, "crash-guard-watch"),
    )
    .await;

    let mut service = spawn_child(&work, &service_config, test);
    wait_ready(&work, &mut service).await;
    for payload in ["before", "poison", "after"] {
        port.publish(
            Envelope::new(
                "crash-guard.noted",
                1,
                "text/plain",
                payload.as_bytes().to_vec(),
            ),
            PublishOptions::default().to_topic(&topic),
        )
        .await
        .expect("publish");
    }

    let mut crashes = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while letters.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no dead letter within 180 s ({crashes} crashes)"
        );
        if let Ok(Some(status)) = service.try_wait() {
            assert!(!status.success(), "the service ends only by crashing");
            crashes += 1;
            assert!(
                crashes <= MAX_CRASHES,
                "the poison message took the service down {crashes} times (last exit: {status})"
            );
            // No wait for readiness here: the broker may hand the poison message back the
            // moment the service subscribes, so a restarted service can crash before it says
            // it is ready; the loop counts that crash like any other.
            service = spawn_child(&work, &service_config, test);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        crashes, MAX_CRASHES,
        "dead-lettered after exactly two crashes"
    );
    let letter = &letters.seen()[0].envelope;
    assert_eq!(&letter.payload[..], b"poison");
    let reason = letter
        .headers
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        reason.contains("process died 2 time(s)"),
        "the dead letter says why: {reason}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(handled(&work).contains(&"before".to_owned())
        && handled(&work).contains(&"after".to_owned()))
    {
        assert!(
            Instant::now() < deadline,
            "the other messages are handled: {:?}",
            handled(&work)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        service.try_wait().expect("status").is_none(),
        "the service keeps running"
    );
    let _ = service.kill();
    let _ = service.wait();
    bento.shutdown().await.expect("shutdown");
}

#[cfg(feature = "pulsar")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_a_message_that_kills_the_process_is_dead_lettered_after_two_crashes() {
    bento_testkit::broker_lock::share("pulsar");
    let config = format!(
        "[messaging]\nbackend = \"pulsar\"\n[messaging.pulsar]\nservice_url = \"{}\"\nadmin_url = \"{}\"\n",
        broker_var("BENTO_TEST_PULSAR_URL"),
        broker_var("BENTO_TEST_PULSAR_ADMIN_URL"),
    );
    a_message_that_kills_the_process_is_dead_lettered_after_two_crashes(
        config,
        "pulsar_a_message_that_kills_the_process_is_dead_lettered_after_two_crashes",
    )
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_message_that_kills_the_process_is_dead_lettered_after_two_crashes() {
    bento_testkit::broker_lock::share("kafka");
    let config = format!(
        "[messaging]\nbackend = \"kafka\"\n[messaging.kafka]\nbootstrap_servers = \"{}\"\n",
        broker_var("BENTO_TEST_KAFKA_BOOTSTRAP"),
    );
    a_message_that_kills_the_process_is_dead_lettered_after_two_crashes(
        config,
        "kafka_a_message_that_kills_the_process_is_dead_lettered_after_two_crashes",
    )
    .await;
}
