//! `cargo xtask bench [memory|codecs|pulsar|kafka|observability|outbox] [--quick]`: every
//! benchmark in one run, the sides of each scenario measured in alternating rounds on the same
//! brokers, collected into `target/bench/results.json`, the tables of `docs/benchmarks.md`
//! (between its `<!-- bench:... -->` markers) and an SVG chart per scenario under
//! `docs/benchmarks/`.
//!
//! Sides of the broker scenarios: Bento, the raw client driven well, RustStream, and the
//! broker's own Java perf tool (the ceiling). The Rust sides are the `sides` benchmark of the
//! `bento-bench` crate, one process per side and round, printing JSON lines.

mod build;
mod chart;
mod crates;
mod docs;
mod java;
mod results;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::cli::{BenchArgs, Scenario};
use crate::config::{Broker, workspace_root};
use crate::devenv::{self, DevEnv};
use crate::prereq::{self, Tool};
use crate::{progress, start};
use build::Profile;
use results::{Measurement, Results, ScenarioResults};

/// Sizes of a full run and of a smoke run.
#[derive(Debug, Clone, Copy)]
struct Size {
    events: u64,
    java_events: u64,
    seconds: u64,
    rates: &'static str,
    /// `BENTO_BENCH_ROUNDS` of the observability benchmark per round of ours.
    observability_rounds: u32,
}

const FULL: Size = Size {
    events: 100_000,
    java_events: 100_000,
    seconds: 5,
    rates: "1000,10000",
    observability_rounds: 4,
};

const QUICK: Size = Size {
    events: 200,
    java_events: 2_000,
    seconds: 1,
    rates: "1000",
    observability_rounds: 1,
};

impl Scenario {
    /// Every scenario, in the order they run and appear.
    pub const ALL: [Scenario; 6] = [
        Scenario::Memory,
        Scenario::Codecs,
        Scenario::Observability,
        Scenario::Pulsar,
        Scenario::Kafka,
        Scenario::Outbox,
    ];

    /// Its name in the results and the docs' markers.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Memory => "memory",
            Scenario::Codecs => "codecs",
            Scenario::Pulsar => "pulsar",
            Scenario::Kafka => "kafka",
            Scenario::Observability => "observability",
            Scenario::Outbox => "outbox",
        }
    }

    fn brokers(self) -> &'static [Broker] {
        match self {
            Scenario::Pulsar => &[Broker::Pulsar],
            Scenario::Kafka => &[Broker::Kafka],
            Scenario::Outbox => &[Broker::Pulsar, Broker::Kafka, Broker::Postgres],
            _ => &[],
        }
    }

    fn bench_target(self) -> &'static str {
        match self {
            Scenario::Memory | Scenario::Pulsar | Scenario::Kafka => "sides",
            Scenario::Codecs => "codecs",
            Scenario::Observability => "overhead",
            Scenario::Outbox => "outbox",
        }
    }

    /// The Rust sides it runs through the `sides` benchmark, and whether a Java tool joins.
    fn sides(self) -> (&'static [&'static str], bool) {
        match self {
            Scenario::Memory => (&["bento", "ruststream"], false),
            // magnetar: the other Rust Pulsar client, as a candidate for a second adapter.
            Scenario::Pulsar => (&["bento", "raw", "magnetar", "ruststream"], true),
            Scenario::Kafka => (&["bento", "raw", "ruststream"], true),
            _ => (&[], false),
        }
    }
}

/// `cargo xtask bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    progress::install_interrupt_handler()?;
    let env = DevEnv::new(args.mode, args.ports);
    let mut scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    scenarios.sort_by_key(|s| Scenario::ALL.iter().position(|a| a == s));
    scenarios.dedup();
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let mut brokers: Vec<Broker> = scenarios
        .iter()
        .flat_map(|s| s.brokers())
        .copied()
        .collect();
    brokers.sort_by_key(|b| b.name());
    brokers.dedup();
    if !brokers.is_empty() {
        prereq::ensure(&[Tool::Java])?;
        let _lock = devenv::lock(&env.layout)?;
        println!(
            "\n==> brokers: {}",
            brokers
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        start::up(&env, &brokers)?;
    }
    let profile = if args.quick {
        Profile::Test
    } else {
        Profile::Bench
    };
    let results = measure(&env, profile, &scenarios, args.quick, rounds)?;
    let work = crates::work_dir();
    if args.quick {
        results.write(&work.join("results-quick.json"))?;
        chart::all(&results, &work.join("charts"))?;
        check_smoke(&results)?;
        println!("\ncargo xtask bench --quick: every side measured (figures not kept)");
        return Ok(());
    }
    results.write(&work.join("results.json"))?;
    let charts = workspace_root().join("docs").join("benchmarks");
    chart::all(&results, &charts)?;
    docs::update(
        &results,
        &workspace_root().join("docs").join("benchmarks.md"),
    )?;
    println!("\nwrote target/bench/results.json, docs/benchmarks.md and docs/benchmarks/*.svg");
    Ok(())
}

/// The smoke run inside `cargo xtask test`: the memory, Pulsar and Kafka scenarios at
/// [`QUICK`] size with the binaries the suite has just built, on its running brokers. (The
/// other scenarios' binaries are run by `cargo test` itself, in the same quick mode.)
pub fn smoke_in_suite(env: &DevEnv) -> Result<()> {
    let scenarios = [Scenario::Memory, Scenario::Pulsar, Scenario::Kafka];
    let results = measure(env, Profile::SuiteBuild, &scenarios, true, 1)?;
    results.write(&crates::work_dir().join("results-quick.json"))?;
    check_smoke(&results)
}

/// Fails unless every scenario has measurements from every side it ran and no side failed.
fn check_smoke(results: &Results) -> Result<()> {
    let mut failures = Vec::new();
    for (name, scenario) in &results.scenarios {
        if scenario.measurements.is_empty() {
            failures.push(format!("{name}: no measurement"));
        }
        failures.extend(
            scenario
                .notes
                .iter()
                .filter(|n| n.contains("failed"))
                .map(|n| format!("{name}: {n}")),
        );
    }
    if !failures.is_empty() {
        bail!(
            "the benchmark smoke run failed:\n  {}",
            failures.join("\n  ")
        );
    }
    for (name, scenario) in &results.scenarios {
        let counts = crates::sides(&scenario.measurements);
        println!("  {name}: {counts:?}");
    }
    Ok(())
}

fn measure(
    env: &DevEnv,
    profile: Profile,
    scenarios: &[Scenario],
    quick: bool,
    rounds: u32,
) -> Result<Results> {
    let size = if quick { QUICK } else { FULL };
    let mut wanted: Vec<&str> = scenarios.iter().map(|s| s.bench_target()).collect();
    wanted.dedup();
    let exes = build::executables(profile, &wanted)?;
    let mut results = Results::start(quick, rounds);
    let run_id = uuid_like();
    for &scenario in scenarios {
        progress::check_interrupted()?;
        println!("\n==> scenario {} ({rounds} round(s))", scenario.name());
        let started = Instant::now();
        let exe = &exes[scenario.bench_target()];
        let mut found = ScenarioResults::default();
        for round in 0..rounds {
            let context = Round {
                env,
                exe,
                size,
                quick,
                round,
                run_id: &run_id,
            };
            let measured = context.scenario(scenario, &mut found.notes);
            for mut m in measured {
                m.round = round;
                found.measurements.push(m);
            }
        }
        found.seconds = started.elapsed().as_secs_f64();
        println!(
            "    {} measurements in {:.0} s",
            found.measurements.len(),
            found.seconds
        );
        for note in &found.notes {
            println!("    note: {note}");
        }
        results.scenarios.insert(scenario.name().to_string(), found);
    }
    results.machine.load_at_end = results::load_average();
    Ok(results)
}

/// A short unique suffix for topic names (seconds and nanoseconds of now, in hex).
fn uuid_like() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}{:05x}",
        now.as_secs() & 0xffff_ffff,
        now.subsec_micros()
    )
}

/// One round of one scenario.
struct Round<'a> {
    env: &'a DevEnv,
    exe: &'a Path,
    size: Size,
    quick: bool,
    round: u32,
    run_id: &'a str,
}

impl Round<'_> {
    fn scenario(&self, scenario: Scenario, notes: &mut Vec<String>) -> Vec<Measurement> {
        let work = crates::work_dir();
        let measured = match scenario {
            Scenario::Codecs => crates::codecs(self.exe, self.quick, &work),
            Scenario::Observability => {
                crates::observability(self.exe, self.quick, self.size.observability_rounds)
            }
            Scenario::Outbox => crates::outbox(self.exe, self.quick, &self.broker_env()),
            _ => return self.sides(scenario, notes),
        };
        measured.unwrap_or_else(|err| {
            notes.push(format!("round {}: failed: {err:#}", self.round + 1));
            Vec::new()
        })
    }

    fn broker_env(&self) -> Vec<(String, String)> {
        crate::test::test_env(&self.env.layout, &self.env.ports)
    }

    /// The sides in turn, starting one further each round so that none always runs first.
    fn sides(&self, scenario: Scenario, notes: &mut Vec<String>) -> Vec<Measurement> {
        let (rust, java) = scenario.sides();
        let mut order: Vec<&str> = rust.to_vec();
        if java {
            order.push("java");
        }
        let shift = self.round as usize % order.len();
        order.rotate_left(shift);
        let mut found = Vec::new();
        for side in order {
            println!("    round {}: {side}", self.round + 1);
            let topic = format!("bench-{}-{}-r{}", scenario.name(), self.run_id, self.round);
            let measured = if side == "java" {
                self.java(scenario, &topic)
            } else {
                // Figures printed before a failure are kept; the failure becomes a note.
                let (mut partial, status) = self.rust_side(scenario, side, &topic);
                let printed = !partial.is_empty();
                found.append(&mut partial);
                status.and_then(|()| {
                    if !printed {
                        bail!("no measurement")
                    }
                    Ok(Vec::new())
                })
            };
            if scenario == Scenario::Kafka
                && let Err(err) = self.delete_kafka_topics(&topic)
            {
                notes.push(format!("round {}: {err:#}", self.round + 1));
            }
            match measured {
                Ok(ms) if ms.is_empty() && side != "java" => {}
                Ok(mut ms) if !ms.is_empty() => found.append(&mut ms),
                Ok(_) => notes.push(format!(
                    "{side}, round {}: failed: no measurement",
                    self.round + 1
                )),
                Err(err) if format!("{err:#}").contains("unavailable: ") => {
                    // The side says it cannot be measured here, and why.
                    let reason = format!("{err:#}");
                    let reason = reason.split("unavailable: ").nth(1).unwrap_or_default();
                    let note = format!("{side}: not measured: {reason}");
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
                Err(err) => {
                    let note = format!("{side}, round {}: failed: {err:#}", self.round + 1);
                    if !notes.iter().any(|n| n.ends_with(&format!("{err:#}"))) {
                        notes.push(note);
                    }
                }
            }
        }
        found
    }

    fn sides_command(&self, scenario: Scenario, side: &str, topic: &str) -> Command {
        let mut cmd = Command::new(self.exe);
        cmd.arg("--bench")
            .envs(self.broker_env())
            .env("BENTO_BENCH_BACKEND", scenario.name())
            .env("BENTO_BENCH_SIDE", side)
            .env("BENTO_BENCH_EVENTS", self.size.events.to_string())
            .env("BENTO_BENCH_SECONDS", self.size.seconds.to_string())
            .env("BENTO_BENCH_RATES", self.size.rates)
            .env("BENTO_BENCH_SIZES", "1024,100")
            .env("BENTO_BENCH_TOPIC", topic);
        cmd
    }

    /// Deletes the Kafka topics named `prefix*`: a side writes gigabytes the broker would
    /// keep for its whole retention time, and repeated runs would fill the disk.
    fn delete_kafka_topics(&self, prefix: &str) -> Result<()> {
        let cmd = self.sides_command(Scenario::Kafka, "kafka-clean-up", prefix);
        build::run(cmd, &format!("deleting the Kafka topics `{prefix}*`")).map(|_| ())
    }

    /// A Rust side's measurements: those it printed before it failed are kept too.
    fn rust_side(
        &self,
        scenario: Scenario,
        side: &str,
        topic: &str,
    ) -> (Vec<Measurement>, Result<()>) {
        let cmd = self.sides_command(scenario, side, topic);
        let (out, status) = build::run_keeping_output(cmd, &format!("the {side} side"));
        let mut found = Vec::new();
        for line in out.lines().filter(|l| l.starts_with('{')) {
            match serde_json::from_str::<bento_line::Line>(line) {
                Ok(m) => found.push(m.into_measurement()),
                Err(err) => return (found, Err(err.into())),
            }
        }
        (found, status)
    }

    fn java(&self, scenario: Scenario, topic: &str) -> Result<Vec<Measurement>> {
        // A smoke run starts each tool twice (produce, consume) rather than five times: the
        // JVMs' start-up is most of its time.
        let job = java::Job {
            events: self.size.java_events,
            sizes: if self.quick {
                vec![1024]
            } else {
                vec![1024, 100]
            },
            rates: if self.quick {
                Vec::new()
            } else {
                self.size
                    .rates
                    .split(',')
                    .filter_map(|r| r.parse().ok())
                    .collect()
            },
            seconds: self.size.seconds,
            topic: topic.to_string(),
        };
        let (layout, ports) = (&self.env.layout, &self.env.ports);
        if scenario == Scenario::Pulsar {
            return java::pulsar(layout, ports, &job);
        }
        let create = |name: &str| -> Result<()> {
            let mut cmd = self.sides_command(scenario, "kafka-topic", name);
            cmd.env("BENTO_BENCH_TOPIC", name);
            build::run(cmd, "creating a Kafka topic").map(|_| ())
        };
        java::kafka(layout, ports, &job, &create)
    }
}

/// The JSON line of the `sides` benchmark.
mod bento_line {
    use serde::Deserialize;

    use super::Measurement;

    #[derive(Debug, Deserialize)]
    pub struct Line {
        side: String,
        metric: String,
        size: usize,
        #[serde(default)]
        rate: Option<u64>,
        unit: String,
        value: f64,
    }

    impl Line {
        pub fn into_measurement(self) -> Measurement {
            Measurement {
                side: self.side,
                metric: self.metric,
                size: self.size,
                rate: self.rate,
                unit: self.unit,
                value: self.value,
                round: 0,
            }
        }
    }
}
