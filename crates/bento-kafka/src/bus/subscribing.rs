//! Starting a subscription: its topics checked or created, its consumer-group members
//! positioned, subscribed and handed to the dispatcher; stopping their pollers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bento_application::{BusError, SubscriptionKind, SubscriptionSpec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::{mpsc, watch};

use super::{KafkaBus, SECOND_ROUND_WAIT};
use crate::consumer::{
    Assignment, Burst, Deliveries, Poller, Settler, SubscriptionState, commit_and_leave,
    position_new_group,
};
use crate::context::BentoContext;
use crate::topics;

impl KafkaBus {
    /// Creates a consumer in `group`, positions the group at the end of `position` if it is
    /// new, and subscribes it to `topics`.
    pub(super) async fn member(
        &self,
        group: &str,
        topics: &[String],
        position: Vec<String>,
        settler: &Arc<Settler>,
    ) -> Result<(Arc<StreamConsumer<BentoContext>>, Arc<SubscriptionState>), String> {
        let config = &self.inner.config;
        let state = Arc::new(SubscriptionState::new(group, settler.clone()));
        let consumer: StreamConsumer<BentoContext> = config
            .consumer_config(group)
            .create_with_context(BentoContext::for_subscription(state.clone()))
            .map_err(|e| format!("cannot create a consumer in group `{group}`: {e}"))?;
        let consumer = Arc::new(consumer);
        let positioned = {
            let consumer = consumer.clone();
            let group = group.to_owned();
            let timeout = config.connect_timeout();
            tokio::task::spawn_blocking(move || {
                position_new_group(&consumer, &group, &position, timeout)
            })
            .await
            .map_err(|e| e.to_string())??
        };
        if positioned > 0 {
            tracing::debug!(%group, partitions = positioned, "new consumer group positioned at the end of its topic");
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| format!("subscribing group `{group}` to {names:?} failed: {e}"))?;
        Ok((consumer, state))
    }
}

/// A consumer-group member: its consumer and its offset bookkeeping.
pub(super) type Member = (Arc<StreamConsumer<BentoContext>>, Arc<SubscriptionState>);

/// A subscription's members, and each member's group with how far its assignment came.
type Members = (Vec<Member>, Vec<(String, watch::Receiver<Assignment>)>);

/// The pieces of `subscribe` before the dispatcher starts: what a subscription may be, the
/// topics it reads and writes, and its consumer-group members.
impl KafkaBus {
    /// Refuses what a Kafka subscription cannot be: exclusive, or without a name.
    pub(super) fn check_spec(topic: &str, spec: &SubscriptionSpec) -> Result<(), BusError> {
        if spec.kind == SubscriptionKind::Exclusive {
            return Err(BusError::Unsupported {
                backend: "kafka",
                what: format!("exclusive subscription `{}` on `{topic}`", spec.name),
                reason: "a Kafka consumer group cannot refuse a second member; use \
                         SubscriptionKind::Failover (one active consumer per partition)"
                    .into(),
            });
        }
        if spec.name.trim().is_empty() {
            return Err(Self::subscribe_error(
                topic,
                spec,
                "the subscription name (consumer group) must not be empty",
            ));
        }
        Ok(())
    }

    /// The topics the subscription reads (the event topic first, then its delay topic and
    /// retry tiers) and its dead-letter topic, all checked and, where allowed, created.
    pub(super) async fn subscription_topics(
        &self,
        topic: &str,
        spec: &SubscriptionSpec,
        tiers: u32,
    ) -> Result<(Vec<String>, String), BusError> {
        let group = &spec.name;
        let mut read = vec![topic.to_owned(), topics::delayed_topic(topic)];
        read.extend((1..=tiers).map(|tier| topics::retry_topic(topic, group, tier)));
        let existing: HashSet<String> = self
            .admin()
            .list_topics()
            .await
            .map_err(|e| Self::subscribe_error(topic, spec, e.to_string()))?
            .into_iter()
            .collect();
        read.extend(leftover_retry_tiers(&existing, topic, group, tiers));
        for name in &read {
            topics::check_name(name)
                .map_err(|reason| Self::subscribe_error(topic, spec, reason))?;
        }
        let dead_letter_topic = topics::sanitize(&spec.dead_letter.topic_for(topic, group));
        topics::check_name(&dead_letter_topic).map_err(|reason| {
            Self::subscribe_error(topic, spec, format!("dead-letter topic: {reason}"))
        })?;
        // The retry tiers and the dead-letter topic are checked (or created) now, so a missing
        // one is an error at start, not at the first failure or poison message.
        let mut needed = read.clone();
        needed.push(dead_letter_topic.clone());
        self.inner
            .producer
            .ensure_topics(&needed)
            .await
            .map_err(|e| Self::subscribe_error(topic, spec, e.to_string()))?;
        if !self.inner.config.create_topics {
            require_topics(&existing, &needed[2..])
                .map_err(|reason| Self::subscribe_error(topic, spec, reason))?;
        }
        Ok((read, dead_letter_topic))
    }

    /// Starts the subscription's consumer-group members, each with its poller feeding the
    /// hand-off `tx` when `deliveries` are read; on failure the members already started leave
    /// their groups.
    pub(super) async fn start_members(
        &self,
        spec: &SubscriptionSpec,
        read: &[String],
        settler: &Arc<Settler>,
        tx: mpsc::Sender<Burst>,
        deliveries: &mut Deliveries,
    ) -> Result<Members, BusError> {
        // Two members per subscription: the event topic alone in group `<name>`, so the
        // assignor spreads its partitions evenly over the subscription's consumers; the delay
        // and retry topics in group `<name>.deferred`.
        let (topic, group) = (&settler.topic, &spec.name);
        let deferred_group = format!("{group}.deferred");
        let (event_topics, deferred_topics) = read.split_at(1);
        let mut started_members = Vec::with_capacity(2);
        let mut assignments = Vec::with_capacity(2);
        let members = [
            (group.clone(), event_topics.to_vec()),
            (deferred_group, deferred_topics.to_vec()),
        ];
        for (member_group, member_topics) in members {
            // A new group starts at the end of the event topic and of its delay topic; the
            // retry topics belong to this subscription alone and are read from the start.
            let position = member_topics[..1].to_vec();
            let started = self
                .member(&member_group, &member_topics, position, settler)
                .await
                .map_err(|reason| Self::subscribe_error(topic, spec, reason));
            let (consumer, state) = match started {
                Ok(started) => started,
                Err(error) => {
                    leave(started_members).await;
                    return Err(error);
                }
            };
            assignments.push((member_group, state.watch_assignment()));
            let poller = Poller {
                consumer: consumer.clone(),
                state: state.clone(),
                commit_interval: self.inner.config.commit_interval(),
                unframe: self.inner.registry.is_some(),
            };
            deliveries.run(poller.run(tx.clone()));
            started_members.push((consumer, state));
        }
        Ok((started_members, assignments))
    }
}

/// Waits until every member of `assignments` had its first assignment, within `timeout`, and
/// then (cooperative rebalancing may hand partitions over in a second round) briefly for the
/// first member to hold partitions. The partitions the first member holds, or the group that
/// did not join in time.
pub(super) async fn wait_for_partitions(
    assignments: &mut [(String, watch::Receiver<Assignment>)],
    timeout: Duration,
) -> Result<usize, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    for (member_group, assignment) in assignments.iter_mut() {
        let joined = tokio::time::timeout_at(deadline, assignment.wait_for(|a| a.rounds > 0))
            .await
            .is_ok_and(|r| r.is_ok());
        if !joined {
            return Err(member_group.clone());
        }
    }
    let (_, main) = &mut assignments[0];
    if main.borrow().partitions == 0 {
        let _ = tokio::time::timeout(
            SECOND_ROUND_WAIT.min(timeout),
            main.wait_for(|a| a.partitions > 0),
        )
        .await
        .is_ok_and(|r| r.is_ok());
    }
    let partitions = main.borrow().partitions;
    Ok(partitions)
}

/// Commits what the `members` finished and leaves their groups: when the subscription stopped
/// (its pollers dropped with the dispatcher's deliveries), or failed to start.
pub(super) async fn leave(members: Vec<Member>) {
    for (consumer, state) in members {
        commit_and_leave(consumer, state).await;
    }
}

/// Retry tiers of subscription `group` on `topic` among the `existing` topics beyond the `tiers`
/// its policy uses now: left by an earlier configuration with more attempts. They are read as
/// well, so that what is parked there is handled instead of stranded.
fn leftover_retry_tiers(
    existing: &HashSet<String>,
    topic: &str,
    group: &str,
    tiers: u32,
) -> Vec<String> {
    ((tiers + 1)..=topics::MAX_RETRY_TIERS)
        .map(|tier| topics::retry_topic(topic, group, tier))
        .filter(|name| existing.contains(name))
        .collect()
}

/// Fails, naming them, if some of `topics` are not among the `existing` ones (with
/// `create_topics` off).
fn require_topics(existing: &HashSet<String>, topics: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = topics
        .iter()
        .filter(|t| !existing.contains(*t))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "topics {missing:?} (retry tiers and dead-letter topic) do not exist and \
             messaging.kafka.create_topics is off: create them, or turn create_topics on"
        ))
    }
}
