//! `bento asyncapi -- <command>` runs the command as the service, with `BENTO_ASYNCAPI=1` and the
//! CLI's configuration, and prints or writes the document it printed; a command that fails or
//! prints no AsyncAPI 3 document is an error. (The real services' documents, validated with the
//! official parser, are tested with the examples: `examples/tests/asyncapi.rs`.)

use std::process::{Command, Output};

use serde_json::Value;

fn bento(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bento"))
        .args(args)
        .env_remove("BENTO_CONFIG")
        .env_remove("BENTO_ASYNCAPI")
        .output()
        .unwrap_or_else(|e| panic!("cannot run bento: {e}"))
}

/// A stand-in service: prints a document naming the configuration it was given, only when
/// asked with BENTO_ASYNCAPI=1 (as `bento_runtime` services do).
const SERVICE: &str = r#"
if [ "$BENTO_ASYNCAPI" = 1 ]; then
  echo 'log line before the document'
  printf '{"asyncapi": "3.0.0", "info": {"title": "svc", "version": "1", "description": "%s"}}\n' "$BENTO_CONFIG"
else
  echo 'running as a service, not asked for a document' >&2
  exit 3
fi
"#;

#[test]
fn runs_the_service_offline_with_the_configuration_and_writes_its_document()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("service.toml");
    std::fs::write(&config, "[messaging]\nbackend = \"memory\"\n")?;
    let out = dir.path().join("svc.asyncapi.json");
    let output = bento(&[
        "--config",
        config.to_str().ok_or("path")?,
        "asyncapi",
        "--output",
        out.to_str().ok_or("path")?,
        "--",
        "sh",
        "-c",
        SERVICE,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    assert_eq!(document["asyncapi"], "3.0.0");
    assert_eq!(
        document["info"]["description"].as_str(),
        std::path::absolute(&config)?.to_str()
    );
    Ok(())
}

#[test]
fn a_failing_service_or_one_without_a_document_is_an_error() {
    let failed = bento(&["asyncapi", "--", "sh", "-c", "exit 4"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("failed"), "{stderr}");

    let silent = bento(&["asyncapi", "--", "sh", "-c", "echo hello"]);
    assert!(!silent.status.success());
    let stderr = String::from_utf8_lossy(&silent.stderr);
    assert!(
        stderr.contains("printed no AsyncAPI 3 document"),
        "{stderr}"
    );
    assert!(stderr.contains("hello"), "{stderr}");

    let missing = bento(&["asyncapi"]);
    assert!(!missing.status.success());
}
