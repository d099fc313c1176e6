//! `bento admin ...`: Pulsar through its admin REST API (`pulsar`), Kafka through
//! `KafkaAdmin` (`kafka`); what both use is here.

mod kafka;
mod pulsar;
mod topic_roles;

use bento_kafka::KafkaAdmin;
use bento_pulsar::admin::PulsarAdmin;
use bento_runtime::BackendKind;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::json;

use crate::cli::Admin;
use crate::config::Loaded;
use crate::error::CliError;
use crate::output::{Output, Table};

/// Runs one `bento admin` command.
pub async fn run(command: Admin, loaded: &Loaded, out: Output) -> Result<(), CliError> {
    match loaded.backend() {
        BackendKind::Pulsar => {
            let config = loaded.pulsar()?;
            let admin = PulsarAdmin::new(&config)?;
            let default_namespace = format!("{}/{}", config.tenant, config.namespace);
            pulsar::run(command, &admin, &default_namespace, out).await
        }
        BackendKind::Kafka => {
            let config = loaded.kafka()?;
            let admin = KafkaAdmin::new(&config)?;
            kafka::run(command, &admin, &config, out).await
        }
        BackendKind::Memory => Err(no_broker()),
        other => Err(unknown_backend(other)),
    }
}

/// The error for a backend this build of the CLI does not know (one added to `bento-runtime`
/// after it).
pub fn unknown_backend(backend: BackendKind) -> CliError {
    CliError::Unsupported(format!(
        "messaging.backend is `{}`, which this version of bento does not manage; use pulsar or \
         kafka",
        backend.as_str()
    ))
}

/// The error for a configuration that names the in-memory bus.
pub fn no_broker() -> CliError {
    CliError::Unsupported(
        "messaging.backend is `memory`, which has no broker to manage; set messaging.backend \
         to pulsar or kafka in bento.toml or with BENTO_MESSAGING__BACKEND"
            .into(),
    )
}

/// Parses an RFC 3339 time given on the command line.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::Usage(format!(
                "`{text}` is not an RFC 3339 time like 2026-11-27T10:00:00Z: {e}"
            ))
        })
}

fn millis_to_time(millis: i64) -> String {
    if millis <= 0 {
        return "-".into();
    }
    Utc.timestamp_millis_opt(millis).single().map_or_else(
        || millis.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

fn done(out: Output, action: &str, what: String) -> Result<(), CliError> {
    out.print(
        &json!({ "ok": true, "action": action, "target": what }),
        || format!("{action} {what}"),
    )
}

fn list_table(header: &'static str, items: &[String]) -> String {
    let mut table = Table::new(&[header]);
    for item in items {
        table.row([item.clone()]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert!(parse_time("2026-11-27T10:00:00Z").is_ok());
        assert!(parse_time("2026-11-27T10:00:00+01:00").is_ok());
        assert!(parse_time("yesterday").is_err());
        assert_eq!(millis_to_time(0), "-");
        assert_eq!(millis_to_time(1_000), "1970-01-01T00:00:01.000Z");
    }
}
