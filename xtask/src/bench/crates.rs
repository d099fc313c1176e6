//! The scenarios that drive the crates' own benchmarks as child processes: codecs
//! (criterion), observability (`overhead`, alternating rounds of its own) and the outbox.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::build;
use super::results::{Measurement, first_number, tables};

fn measurement(side: &str, metric: String, unit: &str, value: f64) -> Measurement {
    Measurement {
        side: side.to_string(),
        metric,
        size: 0,
        rate: None,
        unit: unit.to_string(),
        value,
        round: 0,
    }
}

/// Every `new/estimates.json` under a criterion directory, with its benchmark id.
fn criterion_estimates(dir: &Path, found: &mut Vec<(String, f64)>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") {
                let read = |name: &str| -> Result<Value> {
                    let file = path.join(name);
                    let text = fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    Ok(serde_json::from_str(&text)?)
                };
                let (benchmark, estimates) = (read("benchmark.json")?, read("estimates.json")?);
                let id = benchmark["full_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Some(ns) = estimates["median"]["point_estimate"].as_f64() {
                    found.push((id, ns));
                }
            } else {
                criterion_estimates(&path, found)?;
            }
        }
    }
    Ok(())
}

/// The codec benchmarks: `bare` and `bento` sides per codec and direction, ns per event
/// (criterion medians). A quick run is criterion's test mode: each benchmark runs once.
pub fn codecs(exe: &Path, quick: bool, work: &Path) -> Result<Vec<Measurement>> {
    let home = work.join("criterion");
    let _ = fs::remove_dir_all(&home);
    let mut cmd = Command::new(exe);
    if quick {
        let out = build::run(cmd, "the codecs benchmark")?;
        let passed: Vec<Measurement> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Testing "))
            .map(|id| measurement("criterion", id.trim().to_string(), "runs", 1.0))
            .collect();
        if passed.is_empty() {
            bail!("the codecs benchmark ran no benchmark in test mode");
        }
        return Ok(passed);
    }
    cmd.args([
        "--bench",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
        "--noplot",
    ])
    .env("CRITERION_HOME", &home);
    build::run(cmd, "the codecs benchmark")?;
    let mut estimates = Vec::new();
    criterion_estimates(&home, &mut estimates)?;
    let found: Vec<Measurement> = estimates
        .into_iter()
        .filter_map(|(id, ns)| {
            // `codecs/json/encode/bento` -> side `bento`, metric `json encode`.
            let parts: Vec<&str> = id.split('/').collect();
            let [_, codec, direction, side] = parts.as_slice() else {
                return None;
            };
            Some(measurement(side, format!("{codec} {direction}"), "ns", ns))
        })
        .collect();
    if found.is_empty() {
        bail!("criterion left no estimates under {}", home.display());
    }
    Ok(found)
}

/// The observability overhead benchmark: its tables (bare beside observed, per workload and
/// subscriber setting), events/s. `inner_rounds` is its own `BENTO_BENCH_ROUNDS`.
pub fn observability(exe: &Path, quick: bool, inner_rounds: u32) -> Result<Vec<Measurement>> {
    let mut cmd = Command::new(exe);
    if !quick {
        cmd.arg("--bench")
            .env("BENTO_BENCH_ROUNDS", inner_rounds.to_string());
    }
    let out = build::run(cmd, "the observability benchmark")?;
    let mut found = Vec::new();
    for table in tables(&out) {
        let setting = table
            .title
            .split(" (")
            .next()
            .unwrap_or_default()
            .to_string();
        for row in &table.rows {
            for (column, cell) in table.header.iter().zip(row).skip(1).take(2) {
                if let Some(value) = first_number(cell) {
                    let metric = format!("{setting}: {}", row[0]);
                    found.push(measurement(column, metric, "events/s", value));
                }
            }
        }
    }
    if found.is_empty() {
        bail!("the observability benchmark printed no table");
    }
    Ok(found)
}

/// The outbox benchmark: each backend x database row, its three sides (outbox + relay,
/// direct publish, database alone). A quick run covers memory x SQLite only.
pub fn outbox(exe: &Path, quick: bool, env: &[(String, String)]) -> Result<Vec<Measurement>> {
    let mut cmd = Command::new(exe);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if quick {
        cmd.args(["memory", "sqlite"]);
    } else {
        cmd.arg("--bench").env("BENTO_BENCH_ROUNDS", "1");
    }
    let out = build::run(cmd, "the outbox benchmark")?;
    let mut found = Vec::new();
    for table in tables(&out) {
        if table.header.first().map(String::as_str) != Some("backend") {
            continue;
        }
        for row in &table.rows {
            let (Some(backend), Some(database), Some(what)) = (row.first(), row.get(1), row.get(2))
            else {
                continue;
            };
            // "events/s, 1 writer (relay done ...)" -> "events/s, 1 writer".
            let what = what.split(" (").next().unwrap_or(what);
            let unit = if what.contains("latency") {
                "ms"
            } else {
                "events/s"
            };
            for (column, cell) in table.header.iter().zip(row).skip(3).take(3) {
                if let Some(value) = first_number(cell) {
                    let metric = format!("{backend}, {database}: {what}");
                    found.push(measurement(column, metric, unit, value));
                }
            }
        }
    }
    if found.is_empty() {
        bail!("the outbox benchmark printed no table");
    }
    Ok(found)
}

/// Where scenario scratch files go.
pub fn work_dir() -> PathBuf {
    crate::config::workspace_root().join("target").join("bench")
}

/// Counts measurements per side, for the smoke check.
pub fn sides(found: &[Measurement]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in found {
        *counts.entry(m.side.clone()).or_insert(0) += 1;
    }
    counts
}
