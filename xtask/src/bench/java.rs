//! The brokers' own Java perf tools, the ceiling each scenario is compared with:
//! `bin/pulsar-perf produce|consume` from the Pulsar distribution, and Kafka's
//! `ProducerPerformance` / `ConsumerPerformance` (kafka-tools) run with the broker's libraries.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::build;
use super::results::Measurement;
use crate::config::{Layout, Ports};

/// Heap of the tool's JVM: enough for 100,000 in-flight-limited messages, small beside the
/// brokers on a 2-core machine.
const HEAP: &str = "-Xmx512m";

/// What one Java side is asked to do.
#[derive(Debug, Clone)]
pub struct Job {
    /// Messages per throughput run.
    pub events: u64,
    /// Payload sizes.
    pub sizes: Vec<usize>,
    /// Fixed rates for publish latency.
    pub rates: Vec<u64>,
    /// Seconds per latency run.
    pub seconds: u64,
    /// Topic prefix, unique per round.
    pub topic: String,
}

fn measurement(
    metric: &str,
    size: usize,
    rate: Option<u64>,
    unit: &str,
    value: f64,
) -> Measurement {
    Measurement {
        side: "java".to_string(),
        metric: metric.to_string(),
        size,
        rate,
        unit: unit.to_string(),
        value,
        round: 0,
    }
}

/// The publish p50, p99 and p99.9 (ms) at a fixed `rate`.
fn latency_measurements(
    size: usize,
    rate: u64,
    [p50, p99, p999]: [f64; 3],
) -> impl Iterator<Item = Measurement> {
    [("p50", p50), ("p99", p99), ("p99.9", p999)]
        .into_iter()
        .map(move |(name, value)| {
            measurement(&format!("publish {name}"), size, Some(rate), "ms", value)
        })
}

// ---------------------------------------------------------------------------------------------
// Pulsar

/// Seconds since midnight of a pulsar-perf log line (`2026-11-30T14:16:26,504+0000 ...`).
fn log_time(line: &str) -> Option<f64> {
    let time = line.split_once('T')?.1.get(..12)?;
    let (hms, millis) = time.split_once(',')?;
    let mut parts = hms.split(':').map(|p| p.parse::<f64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(h * 3600.0 + m * 60.0 + s + millis.parse::<f64>().ok()? / 1000.0)
}

/// Messages per second between the log line containing `start` and the one containing
/// `done` (pulsar-perf's own aggregate also counts its start-up and a shutdown wait).
pub fn pulsar_rate(log: &str, start: &str, done: &str, messages: u64) -> Option<f64> {
    let at = |marker: &str| {
        log.lines()
            .filter(|l| l.contains(marker))
            .find_map(log_time)
    };
    let (begin, end) = (at(start)?, at(done)?);
    let mut seconds = end - begin;
    if seconds < 0.0 {
        seconds += 86_400.0;
    }
    (seconds > 0.0).then(|| messages as f64 / seconds)
}

/// p50, p99, p99.9 (ms) of pulsar-perf's "Aggregated latency stats" line.
pub fn pulsar_latency(log: &str) -> Option<[f64; 3]> {
    let line = log
        .lines()
        .find(|l| l.contains("Aggregated latency stats"))?;
    let value = |label: &str| -> Option<f64> {
        let rest = line.split(label).nth(1)?;
        rest.trim_start_matches([':', ' '])
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some([value("med")?, value("- 99pct")?, value("99.9pct")?])
}

fn pulsar_perf(layout: &Layout, args: &[String]) -> Result<String> {
    let mut cmd = Command::new(layout.pulsar_dist().join("bin/pulsar-perf"));
    cmd.args(args)
        .env(
            "PULSAR_MEM",
            format!("-Xms128m {HEAP} -XX:MaxDirectMemorySize=256m"),
        )
        .env("JAVA_HOME", java_home());
    let out = build::run(cmd, "pulsar-perf")?;
    Ok(out)
}

fn java_home() -> String {
    std::env::var("JAVA_HOME").unwrap_or_default()
}

/// pulsar-perf produce and consume (batches as the Rust sides: 1,000 messages, 128 KiB,
/// 10 ms), then produce at each fixed rate for publish latency.
pub fn pulsar(layout: &Layout, ports: &Ports, job: &Job) -> Result<Vec<Measurement>> {
    let mut found = Vec::new();
    let url = ports.pulsar_url();
    let batching = ["-bm", "1000", "-bb", "131072", "-b", "10", "-i", "3600"];
    for &size in &job.sizes {
        let topic = format!("persistent://public/default/{}-java-{size}", job.topic);
        let mut args: Vec<String> = vec!["produce".into(), "-u".into(), url.clone()];
        args.extend(["-r", "100000000", "-m"].map(String::from));
        args.push(job.events.to_string());
        args.extend(["-s".to_string(), size.to_string()]);
        args.extend(batching.map(String::from));
        args.push(topic.clone());
        let log = pulsar_perf(layout, &args)?;
        let rate = pulsar_rate(
            &log,
            "producers",
            "DONE (reached the maximum number",
            job.events,
        )
        .context("pulsar-perf produce printed no start and end")?;
        found.push(measurement("produce", size, None, "msg/s", rate));
        let args: Vec<String> = [
            "consume",
            "-u",
            &url,
            "-m",
            &job.events.to_string(),
            "-ss",
            "bench",
            "-st",
            "Exclusive",
            "-sp",
            "Earliest",
            "-i",
            "3600",
            &topic,
        ]
        .map(String::from)
        .to_vec();
        let log = pulsar_perf(layout, &args)?;
        let rate = pulsar_rate(&log, "Start receiving", "DONE", job.events)
            .context("pulsar-perf consume printed no start and end")?;
        found.push(measurement("consume", size, None, "msg/s", rate));
    }
    let size = job.sizes.first().copied().unwrap_or(1024);
    for &rate in &job.rates {
        let topic = format!(
            "persistent://public/default/{}-java-latency-{rate}",
            job.topic
        );
        let mut args: Vec<String> = vec!["produce".into(), "-u".into(), url.clone(), "-r".into()];
        args.push(rate.to_string());
        args.push("-m".into());
        args.push((rate * job.seconds).to_string());
        args.extend(["-s".to_string(), size.to_string()]);
        args.extend(batching.map(String::from));
        args.push(topic);
        let log = pulsar_perf(layout, &args)?;
        let latencies = pulsar_latency(&log).context("pulsar-perf produce printed no latency")?;
        found.extend(latency_measurements(size, rate, latencies));
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Kafka

/// From ProducerPerformance's last line: records/s and the p50, p99, p99.9 latencies (ms).
pub fn kafka_producer(out: &str) -> Option<(f64, [f64; 3])> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records/sec") && l.contains("99.9th"))?;
    let rate = line
        .split_once("records sent,")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let before = |label: &str| -> Option<f64> {
        let head = line.split(label).next()?;
        head.trim_end()
            .rsplit(", ")
            .next()?
            .trim_end_matches(" ms")
            .trim()
            .parse()
            .ok()
    };
    Some((
        rate,
        [before(" 50th")?, before(" 99th")?, before(" 99.9th")?],
    ))
}

/// From ConsumerPerformance's CSV: records/s while fetching (the group join left out, as on
/// the Rust sides).
pub fn kafka_consumer(out: &str) -> Option<f64> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("start.time"));
    let header: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let column = header.iter().position(|h| *h == "fetch.nMsg.sec")?;
    values.get(column)?.parse().ok()
}

fn kafka_tool(layout: &Layout, class: &str, args: &[String]) -> Result<String> {
    let mut cmd = Command::new(crate::config::java());
    cmd.args([HEAP, "-cp", &crate::kafka::classpath(layout), class])
        .args(args);
    build::run(cmd, class)
}

const PRODUCER: &str = "org.apache.kafka.tools.ProducerPerformance";
const CONSUMER: &str = "org.apache.kafka.tools.ConsumerPerformance";

/// ProducerPerformance's arguments: `records` of `size` bytes at `rate` per second (-1: as fast
/// as it can), acks=all and idempotent as the Rust producers.
fn producer_args(
    bootstrap: &str,
    topic: &str,
    records: u64,
    size: usize,
    rate: i64,
) -> Vec<String> {
    [
        "--topic".to_string(),
        topic.to_string(),
        "--num-records".into(),
        records.to_string(),
        "--record-size".into(),
        size.to_string(),
        "--throughput".into(),
        rate.to_string(),
        "--producer-props".into(),
        format!("bootstrap.servers={bootstrap}"),
        "acks=all".into(),
        "enable.idempotence=true".into(),
    ]
    .to_vec()
}

/// ProducerPerformance then ConsumerPerformance over `job.events` messages of `size` bytes on
/// a new topic: produce and consume rates.
fn kafka_throughput(
    layout: &Layout,
    bootstrap: &str,
    job: &Job,
    size: usize,
    create_topic: &dyn Fn(&str) -> Result<()>,
) -> Result<[Measurement; 2]> {
    let topic = format!("{}-java-{size}", job.topic);
    create_topic(&topic)?;
    let out = kafka_tool(
        layout,
        PRODUCER,
        &producer_args(bootstrap, &topic, job.events, size, -1),
    )?;
    let (rate, _) = kafka_producer(&out).context("ProducerPerformance printed no summary")?;
    let produce = measurement("produce", size, None, "msg/s", rate);
    let args: Vec<String> = [
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &topic,
        "--messages",
        &job.events.to_string(),
        "--group",
        &format!("{topic}-backlog"),
    ]
    .map(String::from)
    .to_vec();
    let out = kafka_tool(layout, CONSUMER, &args)?;
    let rate = kafka_consumer(&out).context("ConsumerPerformance printed no figures")?;
    Ok([produce, measurement("consume", size, None, "msg/s", rate)])
}

/// ProducerPerformance at a fixed `rate` for `job.seconds` on a new topic: publish latencies.
fn kafka_latency(
    layout: &Layout,
    bootstrap: &str,
    job: &Job,
    size: usize,
    rate: u64,
    create_topic: &dyn Fn(&str) -> Result<()>,
) -> Result<impl Iterator<Item = Measurement>> {
    let topic = format!("{}-java-latency-{rate}", job.topic);
    create_topic(&topic)?;
    let records = rate * job.seconds;
    let signed_rate = i64::try_from(rate).unwrap_or(i64::MAX);
    let out = kafka_tool(
        layout,
        PRODUCER,
        &producer_args(bootstrap, &topic, records, size, signed_rate),
    )?;
    let (_, latencies) = kafka_producer(&out).context("ProducerPerformance printed no summary")?;
    Ok(latency_measurements(size, rate, latencies))
}

/// ProducerPerformance and ConsumerPerformance (acks=all, idempotent, as the Rust producers)
/// on topics of Bento's partition count, created with `create_topic`, then
/// ProducerPerformance at each fixed rate for publish latency.
pub fn kafka(
    layout: &Layout,
    ports: &Ports,
    job: &Job,
    create_topic: &dyn Fn(&str) -> Result<()>,
) -> Result<Vec<Measurement>> {
    let bootstrap = ports.kafka_bootstrap();
    let mut found = Vec::new();
    for &size in &job.sizes {
        found.extend(kafka_throughput(
            layout,
            &bootstrap,
            job,
            size,
            create_topic,
        )?);
    }
    let size = job.sizes.first().copied().unwrap_or(1024);
    for &rate in &job.rates {
        found.extend(kafka_latency(
            layout,
            &bootstrap,
            job,
            size,
            rate,
            create_topic,
        )?);
    }
    if found.is_empty() {
        bail!("the Kafka perf tools measured nothing");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pulsar_perf_logs() {
        let log = "2026-11-30T14:16:26,504+0000 [x] INFO  P - Created 1 producers\n\
                   2026-11-30T14:16:28,504+0000 [x] INFO  P - ------------- DONE (reached the maximum number: 20000 of production) --\n\
                   2026-11-30T14:16:34,516+0000 [x] INFO  P - Aggregated latency stats --- Latency: mean:  75.088 ms - med:  90.430 - 95pct: 130.535 - 99pct: 131.936 - 99.9pct: 132.292 - 99.99pct: 132.321 - Max: 132.375\n";
        let rate = pulsar_rate(log, "producers", "DONE (reached", 20_000);
        assert_eq!(rate, Some(10_000.0));
        assert_eq!(pulsar_latency(log), Some([90.430, 131.936, 132.292]));
    }

    #[test]
    fn reads_kafka_perf_output() {
        let producer = "33956 records sent, 6791.2 records/sec (6.63 MB/sec), 1758.1 ms avg latency, 2488.0 ms max latency.\n\
            50000 records sent, 8529.5 records/sec (8.33 MB/sec), 1874.10 ms avg latency, 2513.00 ms max latency, 1943 ms 50th, 2463 ms 95th, 2495 ms 99th, 2509 ms 99.9th.\n";
        assert_eq!(
            kafka_producer(producer),
            Some((8529.5, [1943.0, 2495.0, 2509.0]))
        );
        let consumer = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
            2026-11-30 14:17:07:854, 2026-11-30 14:17:09:879, 48.8281, 24.1127, 50000, 24691.3580, 755, 1270, 38.4473, 39370.0787\n";
        assert_eq!(kafka_consumer(consumer), Some(39370.0787));
    }
}
