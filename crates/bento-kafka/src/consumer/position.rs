//! Where a new consumer group starts: at the end of its topics, committed before `subscribe`
//! returns.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::Tp;
use crate::context::BentoContext;

/// Positions a new consumer group at the end of `topics` (partitions without a committed
/// offset get the current high watermark), so that it sees exactly what is published after
/// `subscribe` returns. Blocking.
pub(crate) fn position_new_group(
    consumer: &StreamConsumer<BentoContext>,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<usize, String> {
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let partitions =
            crate::admin::partition_ids(consumer, topic, timeout).map_err(|e| e.to_string())?;
        for (partition, _) in partitions {
            all.add_partition(topic, partition);
        }
    }
    let missing = |committed: &TopicPartitionList| -> Vec<Tp> {
        committed
            .elements()
            .iter()
            .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect()
    };
    let deadline = std::time::Instant::now() + timeout;
    let committed = retrying(deadline, || {
        consumer.committed_offsets(all.clone(), timeout)
    })
    .map_err(|e| format!("reading the committed offsets of group `{group}` failed: {e}"))?;
    let unset = missing(&committed);
    if unset.is_empty() {
        return Ok(0);
    }
    let mut start = TopicPartitionList::new();
    for (topic, partition) in &unset {
        let (_, high) = retrying(deadline, || {
            consumer.fetch_watermarks(topic, *partition, timeout)
        })
        .map_err(|e| {
            format!("reading the end offset of `{topic}` partition {partition} failed: {e}")
        })?;
        let _ = start.add_partition_offset(topic, *partition, Offset::Offset(high));
    }
    if let Err(error) = retrying(deadline, || consumer.commit(&start, CommitMode::Sync)) {
        // Another member may have positioned the group meanwhile; only a gap is an error.
        let again = retrying(deadline, || {
            consumer.committed_offsets(all.clone(), timeout)
        })
        .map_err(|e| format!("reading the committed offsets of group `{group}` failed: {e}"))?;
        let still: HashSet<Tp> = missing(&again).into_iter().collect();
        if !still.is_empty() {
            return Err(format!(
                "setting the start offsets of new consumer group `{group}` failed: {error}"
            ));
        }
    }
    Ok(unset.len())
}

/// Runs a blocking broker call again until it succeeds or `deadline` passes: right after a
/// broker start or a topic creation, coordinators and leaders take a moment to be known.
fn retrying<T>(
    deadline: std::time::Instant,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match call() {
            Ok(value) => return Ok(value),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => return Err(error),
        }
    }
}
