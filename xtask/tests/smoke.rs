//! Smoke tests proving the development brokers are the real thing.
//!
//! They talk to Pulsar and Kafka through the addresses in `BENTO_TEST_PULSAR_URL`,
//! `BENTO_TEST_PULSAR_ADMIN_URL` and `BENTO_TEST_KAFKA_BOOTSTRAP` (set by `cargo xtask test`;
//! the `dev-env` defaults otherwise). A missing broker fails these tests loudly: start the
//! brokers with `cargo xtask dev-env up` or run everything with `cargo xtask test`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xtask::config::{self, Layout, Ports};
use xtask::{probe, versions};

const HINT: &str =
    "start the brokers with `cargo xtask dev-env up`, or run the suite with `cargo xtask test`";

fn var_or(name: &str, default: String) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

fn pulsar_admin_url() -> String {
    var_or(
        "BENTO_TEST_PULSAR_ADMIN_URL",
        Ports::from_env().pulsar_admin_url(),
    )
}

/// `host:port` of the Pulsar binary protocol.
fn pulsar_address() -> String {
    let url = var_or("BENTO_TEST_PULSAR_URL", Ports::from_env().pulsar_url());
    url.trim_start_matches("pulsar://")
        .trim_end_matches('/')
        .to_string()
}

fn kafka_bootstrap() -> String {
    var_or(
        "BENTO_TEST_KAFKA_BOOTSTRAP",
        Ports::from_env().kafka_bootstrap(),
    )
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn request(method: &str, url: &str) -> (u16, String) {
    let result = match method {
        "PUT" => probe::http_put(url),
        _ => probe::http_get(url),
    };
    result.unwrap_or_else(|err| panic!("Pulsar is not reachable ({method} {url}): {err:#}\n{HINT}"))
}

fn get_ok(url: &str) -> String {
    let (status, body) = request("GET", url);
    assert_eq!(status, 200, "GET {url} answered {status}: {body}");
    body
}

#[test]
fn pulsar_admin_reports_its_version_and_the_standalone_cluster() {
    let admin = pulsar_admin_url();
    let version = get_ok(&format!("{admin}/admin/v2/brokers/version"));
    assert_eq!(
        version.trim().trim_matches('"'),
        versions::PULSAR_VERSION,
        "unexpected Pulsar version"
    );
    let clusters: Vec<String> =
        serde_json::from_str(&get_ok(&format!("{admin}/admin/v2/clusters")))
            .expect("the cluster list is a JSON array of names");
    assert_eq!(clusters, ["standalone"]);
    let namespaces = get_ok(&format!("{admin}/admin/v2/namespaces/public"));
    assert!(
        namespaces.contains("public/default"),
        "namespaces of tenant public: {namespaces}"
    );
}

#[test]
fn pulsar_binary_protocol_answers_connect() {
    let address = pulsar_address();
    let server = probe::pulsar_connect(&address, Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("Pulsar binary protocol at {address}: {err:#}\n{HINT}"));
    assert!(
        server.contains(versions::PULSAR_VERSION),
        "CONNECTED reports server version {server:?}"
    );
}

#[test]
fn pulsar_stores_a_message_and_returns_it() {
    let admin = pulsar_admin_url();
    let topic = unique("bento-smoke");
    let path = format!("persistent/public/default/{topic}");
    let (status, body) = request("PUT", &format!("{admin}/admin/v2/{path}"));
    assert!(
        status == 204 || status == 200,
        "creating {path} answered {status}: {body}"
    );

    let payload = unique("hello-pulsar");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let message =
        serde_json::json!({ "producerName": topic, "messages": [{ "payload": payload }] });
    let mut response = agent
        .post(&format!("{admin}/topics/{path}"))
        .header("Content-Type", "application/json")
        .send(message.to_string())
        .unwrap_or_else(|err| panic!("producing to {path}: {err}\n{HINT}"));
    let body = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(
        response.status().as_u16(),
        200,
        "producing to {path}: {body}"
    );
    assert!(
        body.contains("\"errorCode\":0"),
        "producing to {path}: {body}"
    );

    let stored = get_ok(&format!(
        "{admin}/admin/v2/{path}/examinemessage?initialPosition=earliest&messagePosition=1"
    ));
    assert!(
        stored.contains(&payload),
        "read back {stored:?}, expected {payload:?}"
    );
}

#[test]
fn kafka_answers_api_versions() {
    let bootstrap = kafka_bootstrap();
    let apis = probe::kafka_api_versions(&bootstrap, Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("Kafka at {bootstrap}: {err:#}\n{HINT}"));
    for (key, name) in [
        (0, "Produce"),
        (1, "Fetch"),
        (3, "Metadata"),
        (18, "ApiVersions"),
        (19, "CreateTopics"),
    ] {
        assert!(
            apis.iter().any(|a| a.api_key == key),
            "Kafka does not list {name} ({key}) in {apis:?}"
        );
    }
}

/// Runs one of Kafka's own command-line tools from the jars `dev-env up` installed.
fn kafka_tool(class: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let libs = Layout::from_env().kafka_libs();
    assert!(
        libs.join(".bento-installed").exists(),
        "Kafka jars not found in {} (set BENTO_DEV_ENV_HOME, or run `cargo xtask dev-env up kafka`)",
        libs.display()
    );
    let mut cmd = Command::new(config::java());
    cmd.arg("-Xmx256m")
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg(class)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("starting java for {class}: {err}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .expect("writing to the producer's stdin");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("waiting for java").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{class} did not finish within 90s");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let out = child
        .wait_with_output()
        .expect("collecting the output of java");
    assert!(
        out.status.success(),
        "{class} {args:?} failed ({}):\n{}{}\n{HINT}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn kafka_round_trips_a_record_with_its_own_cli() {
    let bootstrap = kafka_bootstrap();
    // Fail at once, not after the tools' own minute of retries.
    if let Err(err) = probe::kafka_api_versions(&bootstrap, Duration::from_secs(10)) {
        panic!("Kafka at {bootstrap}: {err:#}\n{HINT}");
    }
    let topic = unique("bento-smoke");
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    );
    let described = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--topic",
            &topic,
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&described.stdout).contains(&topic));

    let record = unique("hello-kafka");
    kafka_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        &["--bootstrap-server", &bootstrap, "--topic", &topic],
        Some(&format!("{record}\n")),
    );
    let consumed = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "60000",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&consumed.stdout);
    assert!(
        stdout.lines().any(|l| l.trim() == record),
        "consumed {stdout:?}, expected {record:?}"
    );
}
