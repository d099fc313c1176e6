//! The events of a scenario, what the consumer's file says about them, and the report.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// Distinct ordering keys; a multiple of the publisher count, so each key has one publisher.
pub const KEYS: u64 = 256;

/// One event of a scenario, numbered `0..events`; everything else follows from the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its number.
    pub index: u64,
}

/// What the consumer's handler does with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Handled at the first attempt.
    Handled,
    /// Fails its first attempt (1%), handled on the retry.
    FailsOnce,
    /// Fails permanently (0.1%): must reach the dead-letter topic.
    Poison,
}

impl Event {
    /// Reads an event from its payload (its number in decimal).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        std::str::from_utf8(payload)
            .ok()?
            .trim()
            .parse()
            .ok()
            .map(|index| Self { index })
    }

    /// The payload.
    pub fn payload(self) -> Vec<u8> {
        self.index.to_string().into_bytes()
    }

    /// The ordering key (the aggregate id).
    pub fn key(self) -> u64 {
        self.index % KEYS
    }

    /// The event's place among its key's events.
    pub fn seq(self) -> u64 {
        self.index / KEYS
    }

    /// What the handler does with it.
    pub fn fate(self) -> Fate {
        if self.index % 1000 == 7 {
            Fate::Poison
        } else if self.index % 100 == 3 {
            Fate::FailsOnce
        } else {
            Fate::Handled
        }
    }
}

/// What the consumer's output file says.
#[derive(Debug, Default)]
pub struct Consumed {
    /// Events handled, each once.
    pub handled: HashSet<u64>,
    /// Handled lines beyond the first for an event.
    pub duplicates: u64,
    /// Events dead-lettered, each once.
    pub dead: HashSet<u64>,
    /// Dead letters beyond the first for an event.
    pub dead_duplicates: u64,
    /// Dead letters that were not chaos events.
    pub dead_unreadable: u64,
    /// Events of a key handled (for the first time) after a later event of the same key, not
    /// counting the events that were retried, which leave their place in line by design.
    pub order_violations: u64,
    /// The first few order violations, for the log.
    pub violation_examples: Vec<String>,
    /// Lines that could not be read (none expected: one `write` per line).
    pub garbled: u64,
}

impl Consumed {
    /// Reads the file's text.
    pub fn parse(text: &str) -> Self {
        let mut consumed = Self::default();
        let mut highest: HashMap<u64, u64> = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split(' ');
            match (fields.next(), fields.next().map(str::parse::<u64>)) {
                (Some("H"), Some(Ok(index))) => {
                    if !consumed.handled.insert(index) {
                        consumed.duplicates += 1;
                        continue;
                    }
                    let event = Event { index };
                    if event.fate() != Fate::Handled {
                        continue;
                    }
                    let top = highest.entry(event.key()).or_insert(0);
                    if event.seq() < *top {
                        consumed.order_violations += 1;
                        if consumed.violation_examples.len() < 5 {
                            consumed.violation_examples.push(format!(
                                "key {} seq {} after seq {}",
                                event.key(),
                                event.seq(),
                                top
                            ));
                        }
                    } else {
                        *top = event.seq();
                    }
                }
                (Some("D"), Some(Ok(index))) => {
                    if !consumed.dead.insert(index) {
                        consumed.dead_duplicates += 1;
                    }
                }
                (Some("D"), _) => consumed.dead_unreadable += 1,
                // The suite's marks of consumer kills.
                (Some("K"), _) => {}
                _ => consumed.garbled += 1,
            }
        }
        consumed
    }

    /// Whether every acknowledged event has reached its end: handled, or dead-lettered if
    /// poison.
    pub fn complete(&self, acked: &[u64]) -> bool {
        acked.iter().all(|&index| self.reached_end(index))
    }

    fn reached_end(&self, index: u64) -> bool {
        match (Event { index }).fate() {
            Fate::Poison => self.dead.contains(&index),
            _ => self.handled.contains(&index),
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// `pulsar` or `kafka`.
    pub backend: String,
    /// The scenario's name.
    pub scenario: String,
    /// What was injected, in words.
    pub injected: String,
    /// Events the scenario publishes.
    pub events: u64,
    /// Publishes the broker acknowledged.
    pub acked: u64,
    /// Publish attempts that failed and were retried.
    pub publish_retries: u64,
    /// Acknowledged events (poison ones excluded) handled at least once.
    pub handled: u64,
    /// Acknowledged events never handled, or (poison) never dead-lettered.
    pub lost: u64,
    /// Extra deliveries, handled or dead-lettered.
    pub duplicates: u64,
    /// Per-key order violations.
    pub order_violations: u64,
    /// Distinct events on the dead-letter topic.
    pub dead_letters: u64,
    /// Poison events among the acknowledged ones.
    pub poison: u64,
    /// The consumer's peak resident memory, in MiB (the highest over its restarts).
    pub consumer_peak_mib: u64,
    /// The publishing process's peak resident memory so far, in MiB.
    pub publisher_peak_mib: u64,
    /// Seconds from the first publish to the last event handled.
    pub seconds: u64,
    /// Anything else the scenario checked or noticed.
    pub notes: Vec<String>,
    /// Invariants that did not hold.
    pub failures: Vec<String>,
}

impl Report {
    /// Computes the figures from the acknowledged events and the consumer's file.
    pub fn new(acked: &[u64], consumed: &Consumed) -> Self {
        let poison: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|&index| Event { index }.fate() == Fate::Poison)
            .collect();
        let handled = acked
            .iter()
            .filter(|index| consumed.handled.contains(index))
            .count() as u64;
        let lost = acked
            .iter()
            .filter(|&&index| !consumed.reached_end(index))
            .count() as u64;
        let wrong_dead_letters = consumed
            .dead
            .iter()
            .filter(|&&index| Event { index }.fate() != Fate::Poison)
            .count() as u64
            + consumed.dead_unreadable;
        let mut report = Self {
            backend: String::new(),
            scenario: String::new(),
            injected: String::new(),
            events: 0,
            acked: acked.len() as u64,
            publish_retries: 0,
            handled,
            lost,
            duplicates: consumed.duplicates + consumed.dead_duplicates,
            order_violations: consumed.order_violations,
            dead_letters: consumed.dead.len() as u64,
            poison: poison.len() as u64,
            consumer_peak_mib: 0,
            publisher_peak_mib: 0,
            seconds: 0,
            notes: Vec::new(),
            failures: Vec::new(),
        };
        if lost > 0 {
            let examples: Vec<u64> = acked
                .iter()
                .copied()
                .filter(|&index| !consumed.reached_end(index))
                .take(10)
                .collect();
            report.failures.push(format!(
                "{lost} acknowledged event(s) lost, e.g. {examples:?}"
            ));
        }
        if consumed.order_violations > 0 {
            report.failures.push(format!(
                "{} per-key order violation(s), e.g. {:?}",
                consumed.order_violations, consumed.violation_examples
            ));
        }
        if report.dead_letters != report.poison || wrong_dead_letters > 0 {
            report.failures.push(format!(
                "{} dead letter(s) for {} poison event(s), {} of them not poison",
                report.dead_letters, report.poison, wrong_dead_letters
            ));
        }
        if consumed.garbled > 0 {
            report.notes.push(format!(
                "{} unreadable line(s) in the output",
                consumed.garbled
            ));
        }
        report
    }
}

/// The reports as a Markdown table (what docs/reliability.md shows).
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| backend | scenario | injected | events | acked | handled | lost | duplicates | order violations | dead letters / poison | consumer peak RSS | publisher peak RSS | time | held |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in reports {
        let held = if r.failures.is_empty() {
            "yes".to_string()
        } else {
            format!("**NO**: {}", r.failures.join("; "))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} MiB | {} MiB | {} s | {} |",
            r.backend,
            r.scenario,
            r.injected,
            r.events,
            r.acked,
            r.handled,
            r.lost,
            r.duplicates,
            r.order_violations,
            r.dead_letters,
            r.poison,
            r.consumer_peak_mib,
            r.publisher_peak_mib,
            r.seconds,
            held
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_are_one_percent_and_one_per_mille() {
        let fates: Vec<Fate> = (0..100_000).map(|index| Event { index }.fate()).collect();
        assert_eq!(fates.iter().filter(|f| **f == Fate::Poison).count(), 100);
        assert_eq!(
            fates.iter().filter(|f| **f == Fate::FailsOnce).count(),
            1000
        );
    }

    #[test]
    fn the_file_gives_losses_duplicates_and_order() {
        // Key 0: seq 0 (index 0) then seq 2 (512) then seq 1 (256): one violation.
        // Event 7 is poison and dead-lettered; event 3 fails once and comes late, by design.
        let text = "H 0 1\nH 512 1\nH 256 1\nH 512 1\nD 7\nH 3 2\nD 7\n";
        let consumed = Consumed::parse(text);
        assert_eq!(consumed.duplicates, 1);
        assert_eq!(consumed.dead_duplicates, 1);
        assert_eq!(consumed.order_violations, 1);
        let report = Report::new(&[0, 3, 7, 256, 512, 768], &consumed);
        assert_eq!(report.lost, 1, "768 was never handled");
        assert_eq!(report.dead_letters, 1);
        assert_eq!(report.poison, 1);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    }
}
