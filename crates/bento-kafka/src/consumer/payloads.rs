//! Where received payloads are copied to: shared blocks rather than one allocation each.
//!
//! A record's payload lives in librdkafka's fetch buffer only until the record is released, so
//! the poller copies it. One allocation per payload took about a twentieth of a consuming
//! process when the dispatcher freed them on another thread (glibc's per-thread cache never
//! saw the memory come back to the thread that allocated it), and is still one allocation per
//! record where a block serves dozens. Small payloads are instead appended to a block of
//! [`BLOCK`] bytes and handed out as slices of it; the block is freed when the last of them is
//! dropped.

use bytes::{Bytes, BytesMut};

/// Size of one block of payloads.
const BLOCK: usize = 32 * 1024;

/// Payloads larger than this get an allocation of their own, so that at least eight share a
/// block and a payload kept for long (a parked record, an envelope a handler keeps) holds at
/// most a block's worth of others' memory with it.
const SHARED_UP_TO: usize = BLOCK / 8;

/// The block payloads are being copied into.
#[derive(Default)]
pub(crate) struct Payloads {
    block: BytesMut,
}

impl Payloads {
    /// `payload`, copied.
    pub(crate) fn copy(&mut self, payload: &[u8]) -> Bytes {
        if payload.len() > SHARED_UP_TO {
            return Bytes::copy_from_slice(payload);
        }
        if self.block.capacity() < payload.len() {
            // The old block stays alive in the payloads handed out from it.
            self.block = BytesMut::with_capacity(BLOCK);
        }
        self.block.extend_from_slice(payload);
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_payload_keeps_its_own_bytes() {
        let mut payloads = Payloads::default();
        let copies: Vec<Bytes> = (0..100u8).map(|i| payloads.copy(&vec![i; 1000])).collect();
        for (i, copy) in copies.iter().enumerate() {
            assert_eq!(copy.len(), 1000);
            assert!(copy.iter().all(|b| usize::from(*b) == i), "payload {i}");
        }
    }

    #[test]
    fn small_payloads_share_a_block_and_large_ones_do_not() {
        let mut payloads = Payloads::default();
        let a = payloads.copy(b"first");
        let b = payloads.copy(b"second");
        assert_eq!(
            a.as_ptr().wrapping_add(a.len()),
            b.as_ptr(),
            "the second follows the first in one block"
        );
        let large = vec![7u8; SHARED_UP_TO + 1];
        let copy = payloads.copy(&large);
        assert_eq!(copy, large);
        let c = payloads.copy(b"third");
        assert_eq!(b.as_ptr().wrapping_add(b.len()), c.as_ptr());
    }

    #[test]
    fn empty_payloads_are_empty() {
        let mut payloads = Payloads::default();
        assert!(payloads.copy(b"").is_empty());
        assert_eq!(payloads.copy(b"x"), Bytes::from_static(b"x"));
    }
}
