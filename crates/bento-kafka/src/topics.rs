//! Topic names: event topics, and the delay, retry and dead-letter topics derived from them.

use bento_application::layer::retry::Policy;

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_LEN: usize = 249;

/// Most retry tiers a subscription gets: the retry after attempt `n` goes to tier
/// `min(n, MAX_RETRY_TIERS)`.
pub const MAX_RETRY_TIERS: u32 = 8;

/// Whether `name` is a legal Kafka topic name; `Err` says why not.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name must not be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a legal topic name"));
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic name `{name}` is {} characters long, Kafka allows {MAX_TOPIC_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` contains `{bad}`; Kafka allows only ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// Replaces characters Kafka does not allow in topic names with `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where delayed publishes to `topic` wait: `<topic>.delayed`.
pub fn delayed_topic(topic: &str) -> String {
    format!("{topic}.delayed")
}

/// How many retry tiers a subscription with `policy` uses.
/// A policy that does not bound its attempts gets every tier.
pub fn retry_tiers(policy: &dyn Policy) -> u32 {
    policy
        .max_attempts()
        .map_or(MAX_RETRY_TIERS, |attempts| attempts.saturating_sub(1))
        .min(MAX_RETRY_TIERS)
}

/// The tier the retry after a failed `attempt` goes to.
pub fn retry_tier(attempt: u32, tiers: u32) -> u32 {
    attempt.clamp(1, tiers.max(1))
}

/// Retry topic of tier `tier` of subscription (consumer group) `group` on `topic`:
/// `<topic>.<group>.retry.<tier>`.
pub fn retry_topic(topic: &str, group: &str, tier: u32) -> String {
    format!("{topic}.{}.retry.{tier}", sanitize(group))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use bento_application::RetryPolicy;

    #[test]
    fn names() {
        assert_eq!(delayed_topic("orders"), "orders.delayed");
        assert_eq!(
            retry_topic("orders", "billing svc", 2),
            "orders.billing_svc.retry.2"
        );
        assert_eq!(sanitize("users/UserCreated"), "users_UserCreated");
        assert!(check_name("bento.conformance.ping").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn tiers_follow_the_policy() {
        let policy = RetryPolicy::exponential(5, Duration::from_millis(10));
        assert_eq!(retry_tiers(&policy), 4);
        assert_eq!(retry_tiers(&RetryPolicy::none()), 0);
        assert_eq!(
            retry_tiers(&RetryPolicy::exponential(50, Duration::ZERO)),
            8
        );
        assert_eq!(retry_tier(1, 4), 1);
        assert_eq!(retry_tier(7, 4), 4);
    }
}
