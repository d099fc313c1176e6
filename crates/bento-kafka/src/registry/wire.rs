//! The Confluent wire format of a record value written with a schema registry: magic byte `0`,
//! the schema id (4 bytes, big-endian), for Protobuf the index path of the message type in the
//! schema's file, then the payload as the codec wrote it (Avro binary datum, JSON text,
//! Protobuf message).

/// The first byte of a framed value.
pub(crate) const MAGIC: u8 = 0;

/// Magic byte and schema id.
const HEADER: usize = 5;

/// The framing of a value: its schema id, and for Protobuf the message indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The registry's id of the writer schema.
    pub(crate) schema_id: u32,
    /// For Protobuf: the path of the message type among the file's messages (`[0]`, the first
    /// top-level message, is written as one byte `0`); `None` for Avro and JSON Schema.
    pub(crate) message_indexes: Option<Vec<u32>>,
}

impl Frame {
    /// `payload` framed: header, message indexes (Protobuf), payload.
    pub(crate) fn wrap(&self, payload: &[u8]) -> Vec<u8> {
        let mut framed = Vec::with_capacity(HEADER + 2 + payload.len());
        framed.push(MAGIC);
        framed.extend_from_slice(&self.schema_id.to_be_bytes());
        if let Some(indexes) = &self.message_indexes {
            if indexes.as_slice() == [0] {
                // The common case, as Confluent's serializers write it.
                framed.push(0);
            } else {
                put_zigzag(&mut framed, indexes.len() as i64);
                for &index in indexes {
                    put_zigzag(&mut framed, i64::from(index));
                }
            }
        }
        framed.extend_from_slice(payload);
        framed
    }
}

/// Splits a framed value into its framing and its payload; `protobuf` says whether message
/// indexes follow the header. `None` when `value` is not framed (too short, another first
/// byte, or indexes that do not parse).
pub(crate) fn unwrap(value: &[u8], protobuf: bool) -> Option<(Frame, &[u8])> {
    if value.len() < HEADER || value[0] != MAGIC {
        return None;
    }
    let schema_id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    let mut rest = &value[HEADER..];
    let message_indexes = if protobuf {
        let count = take_zigzag(&mut rest)?;
        if count == 0 {
            Some(vec![0])
        } else {
            let count = usize::try_from(count).ok().filter(|&c| c <= rest.len())?;
            let mut indexes = Vec::with_capacity(count);
            for _ in 0..count {
                indexes.push(u32::try_from(take_zigzag(&mut rest)?).ok()?);
            }
            Some(indexes)
        }
    } else {
        None
    };
    Some((
        Frame {
            schema_id,
            message_indexes,
        },
        rest,
    ))
}

fn put_zigzag(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_zigzag(input: &mut &[u8]) -> Option<i64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((n >> 1) as i64) ^ -((n & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avro_and_json_values_are_magic_id_payload() {
        let frame = Frame {
            schema_id: 0x0102_0304,
            message_indexes: None,
        };
        let framed = frame.wrap(b"{}");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'{', b'}']);
        assert_eq!(unwrap(&framed, false), Some((frame, &b"{}"[..])));
    }

    #[test]
    fn the_first_protobuf_message_is_one_zero_byte() {
        let frame = Frame {
            schema_id: 7,
            message_indexes: Some(vec![0]),
        };
        let framed = frame.wrap(&[0x08, 0x01]);
        assert_eq!(framed, [0, 0, 0, 0, 7, 0, 0x08, 0x01]);
        assert_eq!(unwrap(&framed, true), Some((frame, &[0x08, 0x01][..])));
    }

    #[test]
    fn nested_protobuf_messages_carry_their_index_path() {
        let frame = Frame {
            schema_id: 300,
            message_indexes: Some(vec![1, 0, 70]),
        };
        let framed = frame.wrap(&[0x08]);
        // count 3 -> 6, 1 -> 2, 0 -> 0, 70 -> 140 (two bytes), zig-zag varints.
        assert_eq!(framed, [0, 0, 0, 1, 44, 6, 2, 0, 0x8c, 0x01, 0x08]);
        assert_eq!(unwrap(&framed, true), Some((frame, &[0x08][..])));
    }

    #[test]
    fn values_that_are_not_framed_are_left_alone() {
        assert_eq!(unwrap(b"{\"a\":1}", false), None);
        assert_eq!(unwrap(&[0, 0, 0], false), None);
        // A count of message indexes longer than the value.
        assert_eq!(unwrap(&[0, 0, 0, 0, 1, 40], true), None);
        // A varint that never ends.
        assert_eq!(unwrap(&[0, 0, 0, 0, 1, 0x80, 0x80], true), None);
    }
}
