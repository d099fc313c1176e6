//! Message ids of the binary protocol: how the bus acknowledges a message of a batch, and how
//! it prints an id. Public for tools that read topics with the pulsar crate's own consumer and
//! must acknowledge and show messages as the bus does (the `bento` CLI's dead-letter replay).

use pulsar::proto::MessageIdData;

/// The id to acknowledge a message with, given its id and the size of the batch it came in
/// (`batch_size` of the pulsar crate's message id). A message of a batch is acknowledged by
/// its index alone (the batch's ack set minus this index): without it the broker would take the
/// whole batch as acknowledged, and the batch's other messages, not yet handled, would be lost.
pub fn ack_id(mut id: MessageIdData, batch_size: Option<i32>) -> MessageIdData {
    if let (Some(index), Some(size)) = (id.batch_index, batch_size)
        && size > 1
        && (0..size).contains(&index)
    {
        id.ack_set = ack_set(size as usize, index as usize);
        id.batch_size = Some(size);
    }
    id
}

/// Java `BitSet` words (as the broker reads them) with bits `0..size` set except `index`.
fn ack_set(size: usize, index: usize) -> Vec<i64> {
    let mut words = vec![0u64; size.div_ceil(64)];
    for bit in (0..size).filter(|bit| *bit != index) {
        words[bit / 64] |= 1 << (bit % 64);
    }
    while words.last() == Some(&0) {
        words.pop();
    }
    words.into_iter().map(|w| w as i64).collect()
}

/// A message id as the Java client prints it: `ledger:entry:partition[:batch-index]`.
pub fn format_id(id: &MessageIdData) -> String {
    let partition = id.partition.unwrap_or(-1);
    match id.batch_index {
        Some(index) if index >= 0 => {
            format!("{}:{}:{partition}:{index}", id.ledger_id, id.entry_id)
        }
        _ => format!("{}:{}:{partition}", id.ledger_id, id.entry_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(batch_index: Option<i32>) -> MessageIdData {
        MessageIdData {
            ledger_id: 12,
            entry_id: 34,
            batch_index,
            ..MessageIdData::default()
        }
    }

    #[test]
    fn batch_messages_are_acknowledged_by_index() {
        let acked = ack_id(id(Some(2)), Some(5));
        assert_eq!(acked.ack_set, vec![0b11011]);
        assert_eq!(acked.batch_size, Some(5));
        let big = ack_set(130, 64);
        assert_eq!(big.len(), 3);
        assert_eq!(big[0], -1, "bits 0..64 all still unacknowledged");
        assert_eq!(big[1], -2, "bit 64 acknowledged");
        assert_eq!(big[2], 0b11);
        let last = ack_set(2, 1);
        assert_eq!(last, vec![0b01]);
        let middle = ack_id(id(Some(1)), Some(3));
        assert_eq!(middle.ack_set, vec![0b101]);
        assert_eq!(format_id(&middle), "12:34:-1:1");
    }

    #[test]
    fn plain_messages_are_acknowledged_whole() {
        assert!(ack_id(id(None), None).ack_set.is_empty());
        assert!(
            ack_id(id(Some(0)), Some(1)).ack_set.is_empty(),
            "a batch of one is a plain entry"
        );
    }

    #[test]
    fn ids_print_like_the_java_client() {
        assert_eq!(format_id(&id(None)), "12:34:-1");
        assert_eq!(format_id(&id(Some(3))), "12:34:-1:3");
    }
}
