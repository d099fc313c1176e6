//! Acknowledging the messages of a batch when the broker cannot take them one by one.
//!
//! A broker without `acknowledgmentAtBatchIndexLevelEnabled` reads any acknowledgement of a
//! batched message as "the whole batch is done", so acknowledging the first message handled
//! would lose the rest of its batch on a crash. In that case the consumer keeps count of each
//! batch's unsettled messages and acknowledges the batch once, when the last one is settled,
//! as the Java client does.

use std::collections::HashMap;

use pulsar::proto::MessageIdData;

/// How the messages of a batch are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchAcknowledgement {
    /// Each message by its batch index (the broker has batch-index acknowledgement on).
    ByIndex,
    /// The whole batch once all its messages are settled (any broker).
    WholeBatch,
}

/// The batches a consumer is in the middle of, in [`BatchAcknowledgement::WholeBatch`] mode.
#[derive(Debug, Default)]
pub(crate) struct OpenBatches {
    unsettled: HashMap<(u64, u64, i32), u32>,
}

fn entry(id: &MessageIdData) -> (u64, u64, i32) {
    (id.ledger_id, id.entry_id, id.partition.unwrap_or(-1))
}

impl OpenBatches {
    /// A message arrived; `batch_size` is its batch's size (absent or 1: not a batch).
    pub(crate) fn received(&mut self, id: &MessageIdData, batch_size: Option<i32>) {
        if let Some(size) = batch_size.filter(|size| *size > 1) {
            self.unsettled
                .entry(entry(id))
                .or_insert(u32::try_from(size).unwrap_or(u32::MAX));
        }
    }

    /// A message is settled (handled, retried, dead-lettered or skipped): the id to
    /// acknowledge now, if any: the message itself when it is not part of an open batch, its
    /// whole entry when it was its batch's last unsettled message, nothing otherwise.
    pub(crate) fn settled(&mut self, id: MessageIdData) -> Option<MessageIdData> {
        let key = entry(&id);
        let Some(unsettled) = self.unsettled.get_mut(&key) else {
            // Not a batch: acknowledged as it is. A message of a batch no longer open (handed
            // back, or received before a reconnect) is not: its batch comes again, and its
            // acknowledgement would be taken for the whole batch's.
            return (id.batch_size.unwrap_or(1) <= 1).then_some(id);
        };
        *unsettled = unsettled.saturating_sub(1);
        if *unsettled > 0 {
            return None;
        }
        self.unsettled.remove(&key);
        Some(MessageIdData {
            batch_index: None,
            batch_size: None,
            ack_set: Vec::new(),
            ..id
        })
    }

    /// A message is handed back for redelivery: the broker redelivers its whole batch, which
    /// is counted afresh when it comes.
    pub(crate) fn released(&mut self, id: &MessageIdData) {
        self.unsettled.remove(&entry(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(entry_id: u64, batch_index: Option<i32>) -> MessageIdData {
        MessageIdData {
            ledger_id: 7,
            entry_id,
            batch_index,
            batch_size: batch_index.map(|_| 3),
            ..MessageIdData::default()
        }
    }

    #[test]
    fn a_batch_is_acknowledged_once_its_last_message_is_settled() {
        let mut open = OpenBatches::default();
        for index in 0..3 {
            open.received(&id(1, Some(index)), Some(3));
        }
        assert_eq!(open.settled(id(1, Some(2))), None);
        assert_eq!(open.settled(id(1, Some(0))), None);
        let whole = open.settled(id(1, Some(1))).expect("the batch is done");
        assert_eq!((whole.entry_id, whole.batch_index), (1, None));
        assert!(whole.ack_set.is_empty());
    }

    #[test]
    fn a_single_message_is_acknowledged_at_once() {
        let mut open = OpenBatches::default();
        open.received(&id(2, None), None);
        assert_eq!(open.settled(id(2, None)), Some(id(2, None)));
    }

    #[test]
    fn a_released_batch_is_counted_afresh_when_redelivered() {
        let mut open = OpenBatches::default();
        for index in 0..3 {
            open.received(&id(3, Some(index)), Some(3));
        }
        assert_eq!(open.settled(id(3, Some(0))), None);
        open.released(&id(3, Some(1)));
        // The earlier copy of a message of the released batch acknowledges nothing.
        assert_eq!(open.settled(id(3, Some(2))), None);
        // Redelivered: all three come again and are counted afresh.
        for index in 0..3 {
            open.received(&id(3, Some(index)), Some(3));
        }
        assert_eq!(open.settled(id(3, Some(0))), None);
        assert_eq!(open.settled(id(3, Some(1))), None);
        assert!(open.settled(id(3, Some(2))).is_some());
    }
}
