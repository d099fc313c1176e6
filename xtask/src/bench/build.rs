//! Builds the benchmark binaries once and finds their executables in cargo's JSON messages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::config::workspace_root;
use crate::test::{TEST_FEATURES, cargo};

/// The benchmark targets the scenarios run: (package, bench target, features it needs).
pub const TARGETS: &[(&str, &str, &[&str])] = &[
    ("bento-bench", "sides", &["bento-bench/magnetar"]),
    ("bento-codec", "codecs", &[]),
    ("bento-observability", "overhead", &[]),
    (
        "bento-runtime",
        "outbox",
        &[
            "bento-runtime/pulsar",
            "bento-runtime/kafka",
            "bento-runtime/sqlite",
            "bento-runtime/postgres",
        ],
    ),
];

/// How to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cargo bench --no-run`: optimized, for figures.
    Bench,
    /// `cargo test --no-run` of just the benchmark targets, for a smoke run.
    Test,
    /// `cargo test --workspace --all-targets --no-run` with the test run's features: exactly
    /// what `cargo xtask test` has just built, so nothing is rebuilt.
    SuiteBuild,
}

/// Builds the benchmarks named in `wanted` (bench target names) and returns their executables.
pub fn executables(profile: Profile, wanted: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let mut cmd = cargo();
    let targets: Vec<_> = TARGETS.iter().filter(|t| wanted.contains(&t.1)).collect();
    match profile {
        Profile::SuiteBuild => {
            cmd.args(["test", "--workspace", "--all-targets", "--no-run"]);
            cmd.args(["--features", &TEST_FEATURES.join(" ")]);
        }
        Profile::Bench | Profile::Test => {
            cmd.arg(if profile == Profile::Bench {
                "bench"
            } else {
                "test"
            });
            cmd.arg("--no-run");
            let mut features = Vec::new();
            for (package, bench, needs) in &targets {
                cmd.args(["-p", package, "--bench", bench]);
                features.extend(needs.iter().copied());
            }
            if !features.is_empty() {
                cmd.args(["--features", &features.join(" ")]);
            }
        }
    }
    cmd.arg("--message-format=json-render-diagnostics")
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!("\n==> building the benchmarks ({profile:?})");
    let output = cmd
        .output()
        .context("running cargo to build the benchmarks")?;
    if !output.status.success() {
        bail!("building the benchmarks failed");
    }
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = message["target"]["name"].as_str().unwrap_or_default();
        let is_bench = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"));
        let package_matches = targets.iter().any(|(package, bench, _)| {
            *bench == name
                && message["package_id"].as_str().is_some_and(|id| {
                    id.contains(&format!("/{package}#"))
                        || id.contains(&format!("{package}@"))
                        || id.contains(&format!("#{package}@"))
                })
        });
        if let (true, true, Some(exe)) = (is_bench, package_matches, message["executable"].as_str())
        {
            found.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    for (_, bench, _) in targets {
        if !found.contains_key(*bench) {
            bail!("cargo built no executable for the benchmark `{bench}`");
        }
    }
    Ok(found)
}

/// Runs a benchmark executable and returns its stdout; fails with the reason it printed.
pub fn run(cmd: Command, what: &str) -> Result<String> {
    let (stdout, status) = run_keeping_output(cmd, what);
    status.map(|()| stdout)
}

/// Runs a benchmark executable: its stdout, even when it failed, and whether it succeeded.
pub fn run_keeping_output(mut cmd: Command, what: &str) -> (String, Result<()>) {
    cmd.current_dir(workspace_root())
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = match cmd.output().with_context(|| format!("starting {what}")) {
        Ok(output) => output,
        Err(err) => return (String::new(), Err(err)),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // An `anyhow` error from `main` starts with `Error:`; otherwise the last lines say most.
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let from = lines
            .iter()
            .rposition(|l| {
                l.starts_with("Error:")
                    || l.starts_with("unavailable:")
                    || l.contains("panicked at")
            })
            .unwrap_or(lines.len().saturating_sub(6));
        let reason: Vec<&str> = lines[from..].iter().take(8).copied().collect();
        let failed = anyhow::anyhow!("{what} failed ({}): {}", output.status, reason.join(" "));
        return (stdout, Err(failed));
    }
    (stdout, Ok(()))
}
