//! The faults the scenarios inject, and how the report names them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::{Scenario, Suite};
use crate::cluster;
use crate::fixtures;
use crate::publishing::Publishing;

impl Suite {
    pub(super) fn injected(&self, scenario: Scenario) -> String {
        let secs = self.args.fault_secs;
        match scenario {
            Scenario::Latency => format!("toxiproxy: +100 ms ±50 ms each way for {secs} s"),
            Scenario::Bandwidth => format!("toxiproxy: 64 KiB/s each way for {secs} s"),
            Scenario::Reset => {
                format!("toxiproxy: every connection reset 500 ms after it opens, for {secs} s")
            }
            Scenario::Outage => format!(
                "toxiproxy: broker unreachable (connections cut and refused) for {} s",
                self.args.outage_secs
            ),
            Scenario::BrokerKill => "broker SIGKILLed, restarted with its data".to_string(),
            // The report says how many kills were made.
            Scenario::ConsumerKill => format!(
                "consumer process SIGKILLed up to {} times at random points, restarted",
                self.args.consumer_kills
            ),
            Scenario::ClusterBrokerKill => {
                format!("1 of 3 Kafka brokers SIGKILLed, down {secs} s, restarted with its data")
            }
        }
    }

    /// Injects the fault, waits for it to end, removes it; returns what happened, for the notes.
    pub(super) async fn inject(
        &mut self,
        backend: &str,
        scenario: Scenario,
        publishing: &Publishing,
    ) -> Result<String> {
        let hold = Duration::from_secs(self.args.fault_secs);
        let proxy = &self.toxiproxy;
        let at = publishing.acked.load(Ordering::Relaxed);
        match scenario {
            Scenario::Latency => {
                proxy.add_toxic(backend, "latency", json!({ "latency": 100, "jitter": 50 }))?;
                tokio::time::sleep(hold).await;
                proxy.remove_toxic(backend, "latency")?;
            }
            Scenario::Bandwidth => {
                proxy.add_toxic(backend, "bandwidth", json!({ "rate": 64 }))?;
                tokio::time::sleep(hold).await;
                proxy.remove_toxic(backend, "bandwidth")?;
            }
            Scenario::Reset => {
                proxy.add_toxic(backend, "reset_peer", json!({ "timeout": 500 }))?;
                tokio::time::sleep(hold).await;
                proxy.remove_toxic(backend, "reset_peer")?;
            }
            Scenario::Outage => {
                proxy.enable(backend, false)?;
                tokio::time::sleep(Duration::from_secs(self.args.outage_secs)).await;
                proxy.enable(backend, true)?;
            }
            Scenario::BrokerKill => {
                let broker = backend.to_string();
                tokio::task::spawn_blocking(move || -> Result<()> {
                    fixtures::xtask(&["dev-env", "kill", &broker])?;
                    std::thread::sleep(Duration::from_secs(2));
                    fixtures::xtask(&["dev-env", "up", &broker])
                })
                .await
                .context("killing and restarting the broker")??;
                publishing.mark_restart();
            }
            Scenario::ConsumerKill => return Ok(String::from("consumer kills planned")),
            Scenario::ClusterBrokerKill => {
                let Some(cluster) = self.kafka_cluster.as_mut() else {
                    bail!("the cluster is not running");
                };
                let node = fastrand::usize(..cluster::NODES);
                let which = cluster.describe(node);
                cluster.kill(node);
                publishing.mark_restart();
                tokio::time::sleep(hold).await;
                tokio::task::block_in_place(|| cluster.restart(node))
                    .with_context(|| format!("restarting {which}"))?;
                let after = publishing.acked.load(Ordering::Relaxed);
                return Ok(format!(
                    "{which} SIGKILLed after {at} acknowledged publishes; {after} acknowledged when it was back"
                ));
            }
        }
        let after = publishing.acked.load(Ordering::Relaxed);
        Ok(format!(
            "fault injected after {at} acknowledged publishes; {after} acknowledged when it ended"
        ))
    }
}
