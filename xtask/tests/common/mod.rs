//! Helpers shared by the broker tests of xtask.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xtask::config::{self, Layout, Ports};
use xtask::probe;

/// How long a single request may take: generous, because right after a broker restart (see
/// `restart.rs`) Pulsar first has to take over its namespace bundles again.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What to do when a broker is missing.
pub const HINT: &str = "start the brokers and PostgreSQL with `cargo xtask dev-env up`, or run \
                        the suite with `cargo xtask test`";

pub fn var_or(name: &str, default: String) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

pub fn pulsar_admin_url() -> String {
    var_or(
        "BENTO_TEST_PULSAR_ADMIN_URL",
        Ports::from_env().pulsar_admin_url(),
    )
}

/// `host:port` of the Pulsar binary protocol.
pub fn pulsar_address() -> String {
    let url = var_or("BENTO_TEST_PULSAR_URL", Ports::from_env().pulsar_url());
    url.trim_start_matches("pulsar://")
        .trim_end_matches('/')
        .to_string()
}

pub fn kafka_bootstrap() -> String {
    var_or(
        "BENTO_TEST_KAFKA_BOOTSTRAP",
        Ports::from_env().kafka_bootstrap(),
    )
}

/// The dev-env database: `BENTO_TEST_POSTGRES_URL`, else the one on the configured port.
pub fn postgres_url() -> String {
    var_or("BENTO_TEST_POSTGRES_URL", Ports::from_env().postgres_url())
}

/// Runs `sql` in the dev-env database with `psql`; returns the bare values it prints.
pub fn psql(sql: &str) -> String {
    let url = postgres_url();
    xtask::postgres::query(&url, sql)
        .unwrap_or_else(|err| panic!("PostgreSQL at {url}: {err:#}\n{HINT}"))
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub fn request(method: &str, url: &str) -> (u16, String) {
    let result = match method {
        "PUT" => probe::http_put_timeout(url, TIMEOUT),
        _ => probe::http_get_timeout(url, TIMEOUT),
    };
    result.unwrap_or_else(|err| panic!("Pulsar is not reachable ({method} {url}): {err:#}\n{HINT}"))
}

pub fn get_ok(url: &str) -> String {
    let (status, body) = request("GET", url);
    assert_eq!(status, 200, "GET {url} answered {status}: {body}");
    body
}

/// Runs one of Kafka's own command-line tools from the jars `dev-env up` installed.
pub fn kafka_tool(class: &str, args: &[&str], stdin: Option<&str>) -> Output {
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

/// Creates a non-partitioned topic in `public/default`; returns `persistent/public/default/<name>`.
pub fn pulsar_create_topic(prefix: &str) -> String {
    let path = format!("persistent/public/default/{}", unique(prefix));
    let (status, body) = request("PUT", &format!("{}/admin/v2/{path}", pulsar_admin_url()));
    assert!(
        status == 204 || status == 200,
        "creating {path} answered {status}: {body}"
    );
    path
}

/// Produces one message through Pulsar's REST producer API.
pub fn pulsar_produce(path: &str, payload: &str) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let message = serde_json::json!({ "producerName": "bento-xtask-tests", "messages": [{ "payload": payload }] });
    let mut response = agent
        .post(&format!("{}/topics/{path}", pulsar_admin_url()))
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
}

/// The payload of the first message stored in a topic, read back from the broker's storage.
///
/// Retries for up to a minute: right after a broker restart the first access to an existing
/// topic recovers its ledger, which takes a while on a busy machine.
pub fn pulsar_first_message(path: &str) -> String {
    let url = format!(
        "{}/admin/v2/{path}/examinemessage?initialPosition=earliest&messagePosition=1",
        pulsar_admin_url()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match probe::http_get_timeout(&url, Duration::from_secs(30)) {
            Ok((200, body)) => return body,
            Ok((status, body)) => format!("answered {status}: {body}"),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() > deadline {
            panic!("reading the first message of {path}: {last}\n{HINT}");
        }
        thread::sleep(Duration::from_secs(1));
    }
}
