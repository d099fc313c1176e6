//! Subscriptions: listing, creating, moving the cursor, skipping and deleting.

use reqwest::Method;
use serde::Serialize;

use super::{API, AdminError, Position, PulsarAdmin, ResetTo, segment};

impl PulsarAdmin {
    /// Names of the subscriptions of `topic`, sorted.
    pub async fn subscriptions(&self, topic: &str) -> Result<Vec<String>, AdminError> {
        let topic = self.topic_name(topic)?;
        let mut subscriptions: Vec<String> = self
            .get_json(format!("{API}/{}/subscriptions", topic.path()))
            .await?;
        subscriptions.sort();
        Ok(subscriptions)
    }

    /// Creates the durable subscription `subscription` on `topic`, its cursor at `position`.
    /// An existing subscription is an error with status 409.
    pub async fn create_subscription(
        &self,
        topic: &str,
        subscription: &str,
        position: Position,
    ) -> Result<(), AdminError> {
        let path = self.subscription_path(topic, subscription, "")?;
        match position {
            Position::Latest => self.send(Method::PUT, path, None::<&()>).await.map(drop),
            Position::Earliest => {
                let earliest = MessageIdBody {
                    ledger_id: -1,
                    entry_id: -1,
                    partition_index: -1,
                };
                self.send(Method::PUT, path, Some(&earliest))
                    .await
                    .map(drop)
            }
        }
    }

    /// Moves the cursor of `subscription` on `topic`: to the oldest stored message, or to the
    /// first message published at or after a time. Messages after the new position are
    /// delivered again (connected consumers are disconnected by the broker and reconnect).
    pub async fn reset_cursor(
        &self,
        topic: &str,
        subscription: &str,
        to: ResetTo,
    ) -> Result<(), AdminError> {
        let millis = match to {
            ResetTo::Earliest => 0,
            ResetTo::Time(at) => at.timestamp_millis().max(0),
        };
        let path =
            self.subscription_path(topic, subscription, &format!("/resetcursor/{millis}"))?;
        self.send(Method::POST, path, None::<&()>).await.map(drop)
    }

    /// Acknowledges the next `count` messages of `subscription` without delivering them.
    pub async fn skip(
        &self,
        topic: &str,
        subscription: &str,
        count: u64,
    ) -> Result<(), AdminError> {
        let path = self.subscription_path(topic, subscription, &format!("/skip/{count}"))?;
        self.send(Method::POST, path, None::<&()>).await.map(drop)
    }

    /// Acknowledges every message of `subscription`'s backlog without delivering them.
    pub async fn skip_all(&self, topic: &str, subscription: &str) -> Result<(), AdminError> {
        let path = self.subscription_path(topic, subscription, "/skip_all")?;
        self.send(Method::POST, path, None::<&()>).await.map(drop)
    }

    /// Deletes `subscription` from `topic`; with `force`, even while consumers are connected
    /// (they are disconnected), else that is an error.
    pub async fn delete_subscription(
        &self,
        topic: &str,
        subscription: &str,
        force: bool,
    ) -> Result<(), AdminError> {
        let query = if force { "?force=true" } else { "" };
        let path = self.subscription_path(topic, subscription, query)?;
        self.send(Method::DELETE, path, None::<&()>).await.map(drop)
    }

    fn subscription_path(
        &self,
        topic: &str,
        subscription: &str,
        rest: &str,
    ) -> Result<String, AdminError> {
        let topic = self.topic_name(topic)?;
        Ok(format!(
            "{API}/{}/subscription/{}{rest}",
            topic.path(),
            segment(subscription, "subscription")?
        ))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageIdBody {
    ledger_id: i64,
    entry_id: i64,
    partition_index: i32,
}
