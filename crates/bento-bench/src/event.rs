//! The event every side publishes: a typed JSON event padded to a payload size.

use std::time::{SystemTime, UNIX_EPOCH};

use bento_domain::DomainEvent;
use serde::{Deserialize, Serialize};

/// Ordering keys the events are spread over.
pub const KEYS: u64 = 100;

/// Sequence numbers from here on mark warm-up events, which latency runs do not record.
pub const WARM_UP: u64 = u64::MAX / 2;

/// A typed event; `memo` pads its JSON to the size under test.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payment {
    /// Position in the run.
    pub seq: u64,
    /// The ordering key.
    pub account: String,
    /// When it was handed to the client, in microseconds since the Unix epoch.
    pub sent_at_micros: u64,
    /// Random words, different per event, so compression sees what real events give it.
    pub memo: String,
}

impl DomainEvent for Payment {
    const EVENT_TYPE: &'static str = "bench.payment";
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account.clone()
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn memo(seq: u64, len: usize) -> String {
    const WORDS: [&str; 16] = [
        "invoice", "settled", "account", "transfer", "pending", "approved", "merchant", "refund",
        "currency", "balance", "ledger", "posted", "customer", "order", "shipping", "tax",
    ];
    let mut rng = fastrand::Rng::with_seed(seq);
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        text.push_str(WORDS[rng.usize(..WORDS.len())]);
        text.push(' ');
        text.push_str(&rng.u32(..).to_string());
        text.push(' ');
    }
    text.truncate(len);
    text
}

impl Payment {
    /// Event `seq` whose JSON is about `size` bytes (at least the fields themselves).
    pub fn sized(seq: u64, size: usize) -> Self {
        let mut event = Payment {
            seq,
            account: format!("account-{}", seq % KEYS),
            sent_at_micros: now_micros(),
            memo: String::new(),
        };
        let bare = serde_json::to_vec(&event).map_or(0, |json| json.len());
        event.memo = memo(seq, size.saturating_sub(bare));
        event
    }

    /// Its JSON, as every side sends it.
    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Stamps the send time now (latency runs build events ahead of time).
    pub fn stamped(mut self) -> Self {
        self.sent_at_micros = now_micros();
        self
    }
}

/// Events `0..count` of `size` bytes, built before the clock starts.
pub fn prepared(count: u64, size: usize) -> Vec<Payment> {
    (0..count).map(|seq| Payment::sized(seq, size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_take_the_size_asked_for() {
        for size in [100, 1024] {
            let len = Payment::sized(7, size).json().len();
            assert!(len.abs_diff(size) <= 2, "{size} B asked, {len} B made");
        }
    }
}
