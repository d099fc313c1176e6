//! The generated parts of `docs/benchmarks.md`: each sits between `<!-- bench:NAME -->` and
//! `<!-- /bench:NAME -->`; everything outside the markers is left as written.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::results::{Measurement, Results, ScenarioResults, median};

/// One column: the side it shows and its heading.
type Column = (&'static str, &'static str);
/// One ratio: numerator side, denominator side, heading.
type Ratio = (&'static str, &'static str, &'static str);

/// How a scenario's table is laid out.
fn layout(scenario: &str) -> (Vec<Column>, Vec<Ratio>) {
    match scenario {
        // Columns and ratios of sides a run did not measure are left out: magnetar is a
        // Pulsar client, so Kafka's table has no such column.
        "pulsar" | "kafka" => (
            vec![
                ("bento", "Bento"),
                ("raw", "raw client"),
                ("magnetar", "magnetar"),
                ("ruststream", "RustStream"),
                ("java", "Java perf tool"),
            ],
            vec![
                ("bento", "raw", "Bento / raw"),
                ("bento", "java", "Bento / Java"),
                ("raw", "java", "raw / Java"),
                ("magnetar", "raw", "magnetar / raw"),
                ("magnetar", "java", "magnetar / Java"),
                ("ruststream", "java", "RustStream / Java"),
                ("bento", "ruststream", "Bento / RustStream"),
            ],
        ),
        "memory" => (
            vec![("bento", "Bento"), ("ruststream", "RustStream")],
            vec![("bento", "ruststream", "Bento / RustStream")],
        ),
        "codecs" => (
            vec![("bare", "bare library"), ("bento", "through Bento")],
            vec![("bento", "bare", "Bento / bare")],
        ),
        "observability" => (
            vec![
                ("bare", "bare bus"),
                ("observed", "observed"),
                ("observed+spans", "observed + spans"),
            ],
            vec![
                ("observed", "bare", "observed / bare"),
                ("observed+spans", "bare", "spans / bare"),
            ],
        ),
        _ => (
            vec![
                ("outbox + relay", "outbox + relay"),
                ("direct publish", "direct publish"),
                ("database alone", "database alone"),
            ],
            vec![
                ("outbox + relay", "direct publish", "outbox / direct"),
                ("outbox + relay", "database alone", "outbox / database"),
            ],
        ),
    }
}

/// A number for a table: thousands separators from 100 on, fewer decimals as it grows.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return String::new();
    }
    if value.abs() >= 100.0 {
        let whole = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        return if value < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        };
    }
    if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn size_label(size: usize) -> String {
    match size {
        0 => String::new(),
        1024 => ", 1 KiB".to_string(),
        n => format!(", {n} B"),
    }
}

/// The rows of `measurements`: (metric, size, rate, unit) in first-seen order.
fn row_keys(measurements: &[Measurement]) -> Vec<(String, usize, Option<u64>, String)> {
    let mut keys = Vec::new();
    for m in measurements {
        let key = (m.metric.clone(), m.size, m.rate, m.unit.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// A markdown table of medians over the rounds, one row per measurement, one column per side.
pub fn table(scenario: &str, results: &ScenarioResults) -> String {
    let (mut columns, ratios) = layout(scenario);
    let present = |side: &str| results.measurements.iter().any(|m| m.side == side);
    columns.retain(|(side, _)| present(side));
    let ratios: Vec<Ratio> = ratios
        .into_iter()
        .filter(|(a, b, _)| present(a) && present(b))
        .collect();
    let mut text = String::from("| measurement |");
    for (_, heading) in &columns {
        text.push_str(&format!(" {heading} |"));
    }
    for (_, _, heading) in &ratios {
        text.push_str(&format!(" {heading} |"));
    }
    text.push_str("\n| --- |");
    text.push_str(&" ---: |".repeat(columns.len() + ratios.len()));
    text.push('\n');
    for (metric, size, rate, unit) in row_keys(&results.measurements) {
        let value = |side: &str| {
            let values: Vec<f64> = results
                .measurements
                .iter()
                .filter(|m| {
                    m.side == side && m.metric == metric && m.size == size && m.rate == rate
                })
                .map(|m| m.value)
                .collect();
            median(&values)
        };
        let at = rate
            .map(|r| format!(" at {}/s", number(r as f64)))
            .unwrap_or_default();
        text.push_str(&format!("| {metric}{}{at} ({unit}) |", size_label(size)));
        for (side, _) in &columns {
            let v = value(side);
            let cell = if unit == "msg/s" && size > 0 && v.is_finite() {
                format!("{} ({:.1} MB/s)", number(v), v * size as f64 / 1e6)
            } else {
                number(v)
            };
            text.push_str(&format!(" {cell} |"));
        }
        for (a, b, _) in &ratios {
            let (x, y) = (value(a), value(b));
            let cell = if !x.is_finite() || !y.is_finite() || y == 0.0 {
                String::new()
            } else if unit == "ms" {
                format!("{:+.2} ms", x - y)
            } else {
                format!("{:.2}", x / y)
            };
            text.push_str(&format!(" {cell} |"));
        }
        text.push('\n');
    }
    text
}

/// What the run was measured on, for the top of the results.
fn run_block(results: &Results) -> String {
    let m = &results.machine;
    let versions: Vec<String> = results
        .versions
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let scenarios: Vec<&str> = results.scenarios.keys().map(String::as_str).collect();
    format!(
        "The latest run ({}) measured {} at commit `{}` with `cargo xtask bench` ({} rounds, \
         medians): {} cores, {}, {} GiB; load average {} at the start, {} at the end. {}. \
         Each table below says when it was measured.\n",
        scenarios.join(", "),
        results.date,
        results.commit,
        results.rounds,
        m.cores,
        m.cpu,
        m.memory_gib,
        m.load_at_start,
        m.load_at_end,
        versions.join("; ")
    )
}

fn scenario_block(name: &str, scenario: &ScenarioResults, results: &Results) -> String {
    let mut text = table(name, scenario);
    text.push_str(&format!(
        "\n![{name}](benchmarks/{name}.svg)\n\n{} measurements in {:.0} s, {} at `{}` on {}.",
        scenario.measurements.len(),
        scenario.seconds,
        results.date,
        results.commit,
        results.machine.cpu
    ));
    for note in &scenario.notes {
        text.push_str(&format!("\n\n- {note}"));
    }
    text.push('\n');
    text
}

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
pub fn replace_block(page: &str, name: &str, body: &str) -> Result<String> {
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let Some(start) = page.find(&open) else {
        bail!("docs/benchmarks.md has no `{open}` marker");
    };
    let Some(end) = page[start..].find(&close).map(|i| start + i) else {
        bail!("docs/benchmarks.md has `{open}` but no `{close}`");
    };
    Ok(format!("{}{open}\n{body}{}", &page[..start], &page[end..]))
}

/// Regenerates the run block and each measured scenario's block of the page.
pub fn update(results: &Results, page_path: &Path) -> Result<()> {
    let mut page = fs::read_to_string(page_path)
        .with_context(|| format!("reading {}", page_path.display()))?;
    page = replace_block(&page, "run", &run_block(results))?;
    for (name, scenario) in &results.scenarios {
        page = replace_block(&page, name, &scenario_block(name, scenario, results))?;
    }
    fs::write(page_path, page).with_context(|| format!("writing {}", page_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(side: &str, metric: &str, unit: &str, value: f64, round: u32) -> Measurement {
        Measurement {
            side: side.into(),
            metric: metric.into(),
            size: 1024,
            rate: None,
            unit: unit.into(),
            value,
            round,
        }
    }

    #[test]
    fn tables_show_medians_and_ratios() {
        let results = ScenarioResults {
            measurements: vec![
                m("bento", "produce", "msg/s", 900.0, 0),
                m("bento", "produce", "msg/s", 1100.0, 1),
                m("bento", "produce", "msg/s", 1000.0, 2),
                m("raw", "produce", "msg/s", 2000.0, 0),
            ],
            ..Default::default()
        };
        let text = table("pulsar", &results);
        assert!(
            text.contains(
                "| produce, 1 KiB (msg/s) | 1,000 (1.0 MB/s) | 2,000 (2.0 MB/s) | 0.50 |"
            ),
            "{text}"
        );
        assert!(
            !text.contains("RustStream"),
            "no column for a side that did not run: {text}"
        );
    }

    #[test]
    fn only_the_text_between_markers_changes() {
        let page = "intro\n<!-- bench:run -->\nold\n<!-- /bench:run -->\nprose\n";
        let new = replace_block(page, "run", "new\n").expect("markers");
        assert_eq!(
            new,
            "intro\n<!-- bench:run -->\nnew\n<!-- /bench:run -->\nprose\n"
        );
        assert!(replace_block(page, "kafka", "x").is_err());
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(12.34), "12.3");
    }
}
