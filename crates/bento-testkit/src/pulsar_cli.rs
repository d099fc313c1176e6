//! Apache Pulsar's own Java client, through the `pulsar-client` command of the dev-env's Pulsar
//! distribution: how tests check that a service in another language reads what Bento writes.
//!
//! The distribution is the one `cargo xtask dev-env up pulsar` installed (under
//! `$BENTO_DEV_ENV_HOME/pulsar/dist`, `target/dev-env` by default), run with the Java it
//! installed the broker with; `$BENTO_PULSAR_CLIENT` names another `pulsar-client` script.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `pulsar-client` script the tests run: `$BENTO_PULSAR_CLIENT`, else the one under
/// `$BENTO_DEV_ENV_HOME`, else the one under this workspace's `target/dev-env`.
pub fn client_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("BENTO_PULSAR_CLIENT") {
        return Ok(PathBuf::from(path));
    }
    let script = |home: PathBuf| home.join("pulsar/dist/bin/pulsar-client");
    let mut tried = Vec::new();
    if let Some(home) = std::env::var_os("BENTO_DEV_ENV_HOME").filter(|h| !h.is_empty()) {
        tried.push(script(PathBuf::from(home)));
    }
    tried.push(script(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dev-env"),
    ));
    if let Some(found) = tried.iter().find(|path| path.exists()) {
        return Ok(found.clone());
    }
    Err(format!(
        "no pulsar-client at {}: the Java client comes with the dev-env's Pulsar distribution \
         (`cargo xtask dev-env up pulsar` installs it; BENTO_DEV_ENV_HOME or \
         BENTO_PULSAR_CLIENT point elsewhere)",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

/// One message as `pulsar-client consume` printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    /// The message key, if it has one.
    pub key: Option<String>,
    /// The properties as printed (`name=value, ...`).
    pub properties: String,
    /// The value as printed: a record's fields as `{name=value, ...}`.
    pub content: String,
}

impl Consumed {
    /// The fields of a flat record (`{name=value, ...}`, printed in no particular order), by
    /// name; values holding `, ` themselves (nested records, lists) come out split.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let inner = self
            .content
            .strip_prefix('{')
            .and_then(|c| c.strip_suffix('}'))
            .unwrap_or_default();
        inner
            .split(", ")
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// Whether the Java client decoded the payload as a record of the topic's schema, rather
    /// than as bytes or a string (which it prints as `{value=..., type=class ...}`).
    pub fn is_record(&self) -> bool {
        self.content.starts_with('{')
            && self.content.ends_with('}')
            && !(self.content.starts_with("{value=") && self.content.contains(", type=class "))
    }
}

/// Reads the first `count` messages of `topic` with the Java client's `AUTO_CONSUME` schema
/// (`pulsar-client consume --schema-type auto_consume`: the client fetches the topic's schema
/// and decodes each message with it), on a new subscription named `subscription` starting at
/// the earliest message. Fails, with what the client printed, when it does not print `count`
/// messages within `timeout` or exits with an error.
pub fn auto_consume(
    service_url: &str,
    topic: &str,
    subscription: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Consumed>, String> {
    let client = client_path()?;
    let mut child = Command::new(&client)
        .args(["--url", service_url, "consume"])
        .args(["--subscription-name", subscription])
        .args(["--subscription-position", "Earliest"])
        .args(["--num-messages", &count.to_string()])
        .args(["--schema-type", "auto_consume"])
        .arg(topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", client.display()))?;
    // Drain both pipes while waiting, so that a chatty client never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = child.stdout.take().map(|p| drain(Box::new(p)));
    let stderr = child.stderr.take().map(|p| drain(Box::new(p)));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(error) => return Err(format!("waiting for {}: {error}", client.display())),
        }
    };
    let joined = |handle: Option<std::thread::JoinHandle<String>>| {
        handle.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    let messages = parse(&stdout);
    let trouble = |what: String| {
        let errors: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| l.contains("ERROR") || l.contains("Exception") || l.contains("rror:"))
            .take(12)
            .collect();
        format!(
            "pulsar-client consume --schema-type auto_consume {topic}: {what}; {} message(s) \
             printed:\n{}\nerrors:\n{}",
            messages.len(),
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            errors.join("\n")
        )
    };
    match status {
        None => Err(trouble(format!("no {count} message(s) within {timeout:?}"))),
        Some(status) if !status.success() => Err(trouble(format!("exited with {status}"))),
        Some(_) if messages.len() < count => Err(trouble(format!(
            "{} of {count} message(s) decoded",
            messages.len()
        ))),
        Some(_) => Ok(messages),
    }
}

/// The messages in what `pulsar-client consume` printed: a line
/// `publishTime:[..], eventTime:[..], key:[..], properties:[..], content:...` each.
pub fn parse(printed: &str) -> Vec<Consumed> {
    printed
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("key:[")? + "key:[".len()..];
            let (key, rest) = rest.split_once("], properties:[")?;
            let (properties, content) = rest.rsplit_once("], content:")?;
            Some(Consumed {
                key: (key != "null").then(|| key.to_owned()),
                properties: properties.to_owned(),
                content: content.trim_end().to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_messages_are_parsed_and_records_told_from_bytes() {
        let printed = "\
----- got message -----
publishTime:[1796036144125], eventTime:[0], key:[u-1], properties:[content-type=application/json, bento-event-type=users.user-created], content:{user_id=a, n=3}
----- got message -----
publishTime:[1796036137839], eventTime:[0], key:[null], properties:[], content:{value={\"user_id\":\"x\"}, type=class java.lang.String}
";
        let messages = parse(printed);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].key.as_deref(), Some("u-1"));
        assert!(
            messages[0]
                .properties
                .contains("bento-event-type=users.user-created")
        );
        assert_eq!(messages[0].content, "{user_id=a, n=3}");
        assert!(messages[0].is_record());
        assert_eq!(
            messages[0].fields(),
            BTreeMap::from([("n".into(), "3".into()), ("user_id".into(), "a".into())])
        );
        assert_eq!(messages[1].key, None);
        assert!(!messages[1].is_record());
    }
}
