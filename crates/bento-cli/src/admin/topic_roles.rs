//! What each topic of a Pulsar namespace or a Kafka cluster is to Bento, from its name alone:
//! an event topic, or the retry topic, dead-letter topic or replay log of one subscription on
//! another topic, or where a topic's delayed messages wait.
//!
//! Bento names them after the topic and the subscription (Pulsar: `<topic>-<subscription>-RETRY`;
//! Kafka: `<topic>.<group>.retry.<tier>` and `<topic>.delayed`; both: `<topic>-<subscription>-DLQ`
//! by default and `<dead-letter topic>-REPLAYED`), so `bento admin topics list` can show each
//! one under the topic it belongs to, saying whose it is.

use serde::Serialize;

/// A topic's role, as its name tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub(crate) enum TopicRole {
    /// An ordinary topic (events), or one whose name follows none of Bento's conventions.
    Topic,
    /// The retry topic of `subscription` reading `of_topic`.
    Retry {
        /// The topic the subscription reads.
        of_topic: String,
        /// The subscription.
        subscription: String,
    },
    /// The default dead-letter topic of `subscription` reading `of_topic`.
    DeadLetter {
        /// The topic the subscription reads.
        of_topic: String,
        /// The subscription.
        subscription: String,
    },
    /// Where `bento dlq replay` records what it replayed from the dead-letter topic `of_topic`.
    ReplayLog {
        /// The dead-letter topic.
        of_topic: String,
    },
    /// Kafka: where messages published to `of_topic` with a delivery time wait for it.
    Delayed {
        /// The topic they are for.
        of_topic: String,
    },
}

impl TopicRole {
    /// The topic this one belongs to, if any.
    fn parent(&self) -> Option<&str> {
        match self {
            TopicRole::Topic => None,
            TopicRole::Retry { of_topic, .. }
            | TopicRole::DeadLetter { of_topic, .. }
            | TopicRole::ReplayLog { of_topic }
            | TopicRole::Delayed { of_topic } => Some(of_topic),
        }
    }

    /// What the `OF` column says: whose topic it is, or nothing for an event topic.
    pub(crate) fn describe(&self) -> String {
        match self {
            TopicRole::Topic => String::new(),
            TopicRole::Retry { subscription, .. } => format!("retries of {subscription}"),
            TopicRole::DeadLetter { subscription, .. } => {
                format!("dead letters of {subscription}")
            }
            TopicRole::ReplayLog { of_topic } => format!("replay log of {of_topic}"),
            TopicRole::Delayed { .. } => "delayed messages".to_owned(),
        }
    }
}

/// The role of each of `topics`, ordered so that each topic comes first and the retry,
/// dead-letter and replay-log topics that belong to it follow it.
pub(crate) fn classify(topics: Vec<String>) -> Vec<(String, TopicRole)> {
    let roles: Vec<(String, TopicRole)> = topics
        .iter()
        .map(|name| (name.clone(), role_of(name, &topics)))
        .collect();
    let mut keyed: Vec<((String, String), (String, TopicRole))> = roles
        .iter()
        .map(|(name, role)| {
            (
                (group_of(name, role, &roles), name.clone()),
                (name.clone(), role.clone()),
            )
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, row)| row).collect()
}

/// The topic `name` is listed under: the topic at the top of its parents, or itself. (A replay
/// log belongs to a dead-letter topic, which belongs to a topic; each parent's name is shorter
/// than its child's, so the climb ends.)
fn group_of(name: &str, role: &TopicRole, roles: &[(String, TopicRole)]) -> String {
    let mut group = role.parent().unwrap_or(name).to_owned();
    while let Some(parent) = roles
        .iter()
        .find(|(topic, _)| *topic == group)
        .and_then(|(_, role)| role.parent())
    {
        group = parent.to_owned();
    }
    group
}

/// What `name` is, given the other topics of its namespace.
fn role_of(name: &str, topics: &[String]) -> TopicRole {
    if let Some(dead_letters) = name.strip_suffix("-REPLAYED")
        && topics.iter().any(|topic| topic == dead_letters)
    {
        return TopicRole::ReplayLog {
            of_topic: dead_letters.to_owned(),
        };
    }
    if let Some(of_topic) = name.strip_suffix(".delayed")
        && topics.iter().any(|topic| topic == of_topic)
    {
        return TopicRole::Delayed {
            of_topic: of_topic.to_owned(),
        };
    }
    if let Some((base, tier)) = name.rsplit_once(".retry.")
        && !tier.is_empty()
        && tier.bytes().all(|b| b.is_ascii_digit())
        && let Some((of_topic, subscription)) = split_topic_and_subscription(base, '.', topics)
    {
        return TopicRole::Retry {
            of_topic,
            subscription,
        };
    }
    for (suffix, retry) in [("-RETRY", true), ("-DLQ", false)] {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        if let Some((of_topic, subscription)) = split_topic_and_subscription(base, '-', topics) {
            return if retry {
                TopicRole::Retry {
                    of_topic,
                    subscription,
                }
            } else {
                TopicRole::DeadLetter {
                    of_topic,
                    subscription,
                }
            };
        }
    }
    TopicRole::Topic
}

/// Splits `<topic><separator><subscription>` at the longest listed topic it starts with: topic
/// names and subscription names both may contain the separator, so the listed topics decide.
fn split_topic_and_subscription(
    base: &str,
    separator: char,
    topics: &[String],
) -> Option<(String, String)> {
    topics
        .iter()
        .filter_map(|topic| {
            let subscription = base.strip_prefix(topic.as_str())?.strip_prefix(separator)?;
            (!subscription.is_empty()).then(|| (topic.clone(), subscription.to_owned()))
        })
        .max_by_key(|(topic, _)| topic.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter()
            .map(|s| format!("persistent://shop/orders/{s}"))
            .collect()
    }

    #[test]
    fn retry_and_dead_letter_topics_are_listed_under_their_topic() {
        let listed = classify(names(&[
            "orders.order-placed-billing-RETRY",
            "payments",
            "orders.order-placed-billing-DLQ-REPLAYED",
            "orders.order-placed",
            "orders.order-placed-billing-DLQ",
            "orders.order-placed-ship-ping-RETRY",
        ]));
        let order: Vec<&str> = listed
            .iter()
            .map(|(name, _)| name.trim_start_matches("persistent://shop/orders/"))
            .collect();
        assert_eq!(
            order,
            [
                "orders.order-placed",
                "orders.order-placed-billing-DLQ",
                "orders.order-placed-billing-DLQ-REPLAYED",
                "orders.order-placed-billing-RETRY",
                "orders.order-placed-ship-ping-RETRY",
                "payments",
            ]
        );
        let topic = "persistent://shop/orders/orders.order-placed".to_string();
        assert_eq!(listed[0].1, TopicRole::Topic);
        assert_eq!(
            listed[1].1,
            TopicRole::DeadLetter {
                of_topic: topic.clone(),
                subscription: "billing".into()
            }
        );
        assert_eq!(
            listed[2].1.describe(),
            format!("replay log of {topic}-billing-DLQ")
        );
        assert_eq!(listed[3].1.describe(), "retries of billing");
        assert_eq!(listed[4].1.describe(), "retries of ship-ping");
        assert_eq!(listed[5].1.describe(), "");
    }

    #[test]
    fn the_longest_listed_topic_names_the_subscription() {
        let listed = classify(names(&["a", "a-b", "a-b-c-RETRY"]));
        assert_eq!(
            listed[2].1,
            TopicRole::Retry {
                of_topic: "persistent://shop/orders/a-b".into(),
                subscription: "c".into()
            }
        );
    }

    #[test]
    fn kafka_retry_tiers_and_delayed_topics_are_listed_under_their_topic() {
        let topics: Vec<String> = [
            "orders.placed.billing.retry.2",
            "orders.placed.delayed",
            "orders.placed",
            "orders.placed-billing-DLQ",
            "orders.placed.billing.retry.1",
            "payments.retry.x",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let listed = classify(topics);
        let order: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            order,
            [
                "orders.placed",
                "orders.placed-billing-DLQ",
                "orders.placed.billing.retry.1",
                "orders.placed.billing.retry.2",
                "orders.placed.delayed",
                "payments.retry.x",
            ]
        );
        assert_eq!(
            listed[2].1,
            TopicRole::Retry {
                of_topic: "orders.placed".into(),
                subscription: "billing".into()
            }
        );
        assert_eq!(listed[1].1.describe(), "dead letters of billing");
        assert_eq!(listed[4].1.describe(), "delayed messages");
        assert_eq!(listed[5].1, TopicRole::Topic, "not a tier number");
    }

    #[test]
    fn a_retry_topic_whose_topic_is_gone_is_listed_as_a_topic() {
        let listed = classify(names(&["gone-billing-RETRY"]));
        assert_eq!(listed[0].1, TopicRole::Topic);
    }
}
