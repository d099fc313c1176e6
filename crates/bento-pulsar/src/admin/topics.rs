//! Topics: listing, creating, partitions, deleting and statistics.

use reqwest::Method;

use super::names::{NamespaceName, TopicName};
use super::types::PartitionedMetadata;
use super::{API, AdminError, PulsarAdmin, TopicStats, ns};

impl PulsarAdmin {
    /// Persistent topics of `namespace`, full names, sorted: partitioned topics by their own
    /// name (not their `-partition-<n>` parts), and the other topics.
    pub async fn topics(&self, namespace: &str) -> Result<Vec<String>, AdminError> {
        let namespace = ns(namespace)?;
        let (all, partitioned) = futures::try_join!(
            self.get_json::<Vec<String>>(format!("{API}/persistent/{}", namespace.path())),
            self.partitioned_topics_of(&namespace),
        )?;
        let mut topics: Vec<String> = all
            .into_iter()
            .filter(|topic| !partitioned.iter().any(|p| partition_of(topic, p)))
            .chain(partitioned.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        Ok(topics)
    }

    /// Partitioned persistent topics of `namespace`, full names.
    pub async fn partitioned_topics(&self, namespace: &str) -> Result<Vec<String>, AdminError> {
        self.partitioned_topics_of(&ns(namespace)?).await
    }

    async fn partitioned_topics_of(
        &self,
        namespace: &NamespaceName,
    ) -> Result<Vec<String>, AdminError> {
        self.get_json(format!("{API}/persistent/{}/partitioned", namespace.path()))
            .await
    }

    /// Creates `topic`: partitioned with `partitions` partitions, or not partitioned if 0.
    /// An existing topic is an error with status 409.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), AdminError> {
        let topic = self.topic_name(topic)?;
        if partitions == 0 {
            let path = format!("{API}/{}", topic.path());
            self.send(Method::PUT, path, None::<&()>).await.map(drop)
        } else {
            let path = format!("{API}/{}/partitions", topic.path());
            self.send(Method::PUT, path, Some(&partitions))
                .await
                .map(drop)
        }
    }

    /// Partitions of `topic` (0: not partitioned). A topic that does not exist is a 404.
    pub async fn partitions(&self, topic: &str) -> Result<u32, AdminError> {
        let topic = self.topic_name(topic)?;
        self.partitions_of(&topic).await
    }

    async fn partitions_of(&self, topic: &TopicName) -> Result<u32, AdminError> {
        let path = format!("{API}/{}/partitions", topic.path());
        let metadata: PartitionedMetadata = self.get_json(path).await?;
        Ok(metadata.partitions)
    }

    /// Deletes `topic` (all partitions of a partitioned one); with `force`, even while
    /// producers or consumers are connected and subscriptions exist.
    pub async fn delete_topic(&self, topic: &str, force: bool) -> Result<(), AdminError> {
        let topic = self.topic_name(topic)?;
        let partitioned = self.partitions_of(&topic).await? > 0;
        let path = format!(
            "{API}/{}{}{}",
            topic.path(),
            if partitioned { "/partitions" } else { "" },
            if force { "?force=true" } else { "" }
        );
        self.send(Method::DELETE, path, None::<&()>).await.map(drop)
    }

    /// Statistics of `topic` (for a partitioned topic, of all partitions together): rates,
    /// storage, and each subscription's backlog.
    pub async fn topic_stats(&self, topic: &str) -> Result<TopicStats, AdminError> {
        let topic = self.topic_name(topic)?;
        let partitions = self.partitions_of(&topic).await?;
        let path = if partitions > 0 {
            format!("{API}/{}/partitioned-stats", topic.path())
        } else {
            format!("{API}/{}/stats", topic.path())
        };
        let mut stats: TopicStats = self.get_json(path).await?;
        stats.partitions = partitions;
        Ok(stats)
    }
}

/// Whether `topic` is a partition (`<base>-partition-<n>`) of the partitioned topic `base`.
fn partition_of(topic: &str, base: &str) -> bool {
    topic
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix("-partition-"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_recognised() {
        assert!(partition_of(
            "persistent://a/b/t-partition-0",
            "persistent://a/b/t"
        ));
        assert!(partition_of(
            "persistent://a/b/t-partition-12",
            "persistent://a/b/t"
        ));
        assert!(!partition_of(
            "persistent://a/b/t-partition-x",
            "persistent://a/b/t"
        ));
        assert!(!partition_of(
            "persistent://a/b/t2-partition-0",
            "persistent://a/b/t"
        ));
        assert!(!partition_of("persistent://a/b/t", "persistent://a/b/t"));
    }
}
