//! `bento asyncapi`: the AsyncAPI document of a service, which only the service itself knows
//! (its event types, schemas and subscriptions are in its code). The service is run with
//! `BENTO_ASYNCAPI=1`, which makes `bento_runtime` build it offline (the in-memory bus naming
//! topics as the configured backend does, no broker connection) so that it prints its document
//! after its declarations and exits (`Bento::is_offline`, `Bento::asyncapi`).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::cli::AsyncapiArgs;
use crate::error::CliError;

/// Runs the service's command offline and prints (or writes) the document it printed.
pub fn run(args: AsyncapiArgs, config: Option<&Path>) -> Result<(), CliError> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::Usage("name the service's command after `--`".into()))?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .env(bento_runtime::asyncapi::ASYNCAPI_VAR, "1")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(config) = config {
        // The service reads the configuration this command was given.
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
        command.env("BENTO_CONFIG", config);
    }
    let shown = args.command.join(" ");
    let output = command
        .output()
        .map_err(|e| CliError::Usage(format!("cannot run `{shown}`: {e}")))?;
    if !output.status.success() {
        return Err(CliError::Usage(format!(
            "`{shown}` failed ({}) instead of printing its AsyncAPI document",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let document = document_in(&stdout).ok_or_else(|| {
        CliError::Usage(format!(
            "`{shown}` printed no AsyncAPI 3 document; a service prints it when \
             `Bento::is_offline()` (set by BENTO_ASYNCAPI=1) with \
             `println!(\"{{}}\", bento.asyncapi()?.to_json_pretty()?)` after its declarations \
             and subscriptions, then exits. It printed:\n{}",
            tail(&stdout)
        ))
    })?;
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| CliError::Usage(format!("cannot write the document: {e}")))?;
    match args.output {
        Some(path) => std::fs::write(&path, format!("{text}\n"))
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display()))),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// The AsyncAPI 3 document in `stdout`: all of it, or (when the service printed other lines
/// first) from the first line that starts a JSON object.
fn document_in(stdout: &str) -> Option<Value> {
    let is_asyncapi = |value: &Value| {
        value
            .get("asyncapi")
            .and_then(Value::as_str)
            .is_some_and(|version| version.starts_with("3."))
    };
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        if line.starts_with('{')
            && let Ok(value) = serde_json::from_str::<Value>(&stdout[offset..])
            && is_asyncapi(&value)
        {
            return Some(value);
        }
        offset += line.len();
    }
    None
}

/// The last lines of `text`, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_found_after_other_output() {
        let stdout = "starting\n{\n  \"asyncapi\": \"3.0.0\",\n  \"info\": {}\n}\n";
        assert_eq!(
            document_in(stdout).and_then(|d| d["asyncapi"].as_str().map(str::to_owned)),
            Some("3.0.0".to_owned())
        );
        assert!(document_in("{\"asyncapi\": \"2.6.0\"}").is_none());
        assert!(document_in("nothing here").is_none());
    }
}
