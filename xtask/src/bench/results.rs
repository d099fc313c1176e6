//! What a run measured, on what machine: `target/bench/results.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::workspace_root;
use crate::versions::{KAFKA_VERSION, PULSAR_VERSION};

/// One figure of one side in one round.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Measurement {
    /// Which side measured it: `bento`, `raw`, `ruststream`, `java`, or a column of a table.
    pub side: String,
    /// What was measured.
    pub metric: String,
    /// Payload size in bytes (0 when it does not apply).
    #[serde(default)]
    pub size: usize,
    /// Fixed publish rate of a latency measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// `msg/s`, `ms`, `ns`, `events/s`.
    pub unit: String,
    /// The figure.
    pub value: f64,
    /// Which round (0-based).
    #[serde(default)]
    pub round: u32,
}

/// Everything one scenario produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioResults {
    /// Every measurement of every round.
    pub measurements: Vec<Measurement>,
    /// Sides that could not be measured, and why; settings worth knowing.
    pub notes: Vec<String>,
    /// Wall-clock seconds the scenario took.
    pub seconds: f64,
}

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores available to the run.
    pub cores: usize,
    /// CPU model names from /proc/cpuinfo.
    pub cpu: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Load averages (1, 5, 15 minutes) when the run started.
    pub load_at_start: String,
    /// ... and when it ended.
    pub load_at_end: String,
}

/// `target/bench/results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// UTC date and time the run started.
    pub date: String,
    /// The commit measured (`+` when the tree had uncommitted changes).
    pub commit: String,
    /// Whether this was a `--quick` smoke run (figures meaningless).
    pub quick: bool,
    /// Rounds per scenario.
    pub rounds: u32,
    /// The machine.
    pub machine: Machine,
    /// rustc, Pulsar, Kafka, Java.
    pub versions: BTreeMap<String, String>,
    /// Per scenario.
    pub scenarios: BTreeMap<String, ScenarioResults>,
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The three load averages, from /proc/loadavg.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}

impl Machine {
    /// Reads /proc and the core count now.
    pub fn now() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mut models: Vec<String> = cpuinfo
            .lines()
            .filter_map(|l| l.strip_prefix("model name"))
            .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
            .collect();
        models.dedup();
        let memory_kib: f64 = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu: if models.is_empty() {
                "unknown".into()
            } else {
                models.join(", ")
            },
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            load_at_start: load_average(),
            load_at_end: String::new(),
        }
    }
}

impl Results {
    /// An empty result set for a run starting now.
    pub fn start(quick: bool, rounds: u32) -> Self {
        let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        let mut commit = output("git", &["rev-parse", "--short", "HEAD"]);
        if dirty {
            commit.push('+');
        }
        let mut versions = BTreeMap::new();
        versions.insert("rustc".to_string(), output("rustc", &["--version"]));
        versions.insert("pulsar".to_string(), PULSAR_VERSION.to_string());
        versions.insert("kafka".to_string(), KAFKA_VERSION.to_string());
        let java = crate::config::java();
        versions.insert(
            "java".to_string(),
            output(&java.display().to_string(), &["-version"]),
        );
        Results {
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            commit,
            quick,
            rounds,
            machine: Machine::now(),
            versions,
            scenarios: BTreeMap::new(),
        }
    }

    /// Writes the results as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).context("encoding the results")?;
        fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// The median of `values` (NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A markdown table in a program's output: the line of text above it, its header, its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTable {
    /// The last non-table line before the table.
    pub title: String,
    /// Header cells.
    pub header: Vec<String>,
    /// Body rows' cells.
    pub rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Every markdown table in `text`.
pub fn tables(text: &str) -> Vec<TextTable> {
    let mut found = Vec::new();
    let mut title = String::new();
    let mut current: Option<TextTable> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('|') {
            let row = cells(trimmed);
            let separator = row
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| "-: ".contains(ch)));
            match current.as_mut() {
                None => {
                    current = Some(TextTable {
                        title: title.clone(),
                        header: row,
                        rows: Vec::new(),
                    })
                }
                Some(_) if separator => {}
                Some(table) => table.rows.push(row),
            }
        } else {
            found.extend(current.take());
            if !trimmed.is_empty() {
                title = trimmed.to_string();
            }
        }
    }
    found.extend(current.take());
    found
}

/// The first number in a cell (`"1,015"`, `"0.4 / 0.3"`, `"95.3% (-4.7%)"`).
pub fn first_number(cell: &str) -> Option<f64> {
    let start = cell.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let text: String = cell[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-'))
        .filter(|c| *c != ',')
        .collect();
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markdown_tables_with_their_titles() {
        let text = "noise\nNo subscriber (3 rounds):\n\n| workload | bare | observed |\n|---|---|---|\n| batches, c 1 | 100 | 95 |\n\nafter\n";
        let found = tables(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].title, "No subscriber (3 rounds):");
        assert_eq!(found[0].header, ["workload", "bare", "observed"]);
        assert_eq!(found[0].rows, [vec!["batches, c 1", "100", "95"]]);
    }

    #[test]
    fn reads_the_first_number_of_a_cell() {
        assert_eq!(first_number("1,015"), Some(1015.0));
        assert_eq!(first_number("0.4 / 0.3"), Some(0.4));
        assert_eq!(first_number(""), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
