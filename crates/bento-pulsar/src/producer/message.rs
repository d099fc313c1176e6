//! The Pulsar message for an envelope: payload, metadata properties, key and times.

use std::collections::HashMap;

use bento_application::wire;
use bento_domain::Envelope;
use chrono::{DateTime, Utc};
use pulsar::producer::Message;

/// The Pulsar message for `envelope`: payload, the envelope's metadata as properties (names
/// from [`wire`]), the ordering key as message key, the occurrence time as event time.
///
/// Takes the envelope by value so that its strings and payload move into the message: a payload
/// the codec just encoded becomes the message's without a copy.
pub(crate) fn message(
    mut envelope: Envelope,
    deliver_at: Option<DateTime<Utc>>,
    attempt: Option<u32>,
) -> Message {
    let event_time = u64::try_from(envelope.occurred_at.timestamp_millis()).ok();
    let payload = Vec::from(std::mem::take(&mut envelope.payload));
    let partition_key = envelope.ordering_key.clone();
    let stale_attempt = attempt.is_none() && envelope.headers.contains_key(wire::ATTEMPT);
    let mut properties = properties(envelope);
    match attempt {
        Some(attempt) => {
            properties.insert(wire::ATTEMPT.to_owned(), attempt.to_string());
        }
        // A user header may carry an attempt over from an earlier delivery; a fresh publish
        // is attempt 1, which is written as no attempt at all.
        None if stale_attempt => {
            properties.remove(wire::ATTEMPT);
        }
        None => {}
    }
    Message {
        payload,
        properties,
        partition_key,
        event_time,
        // Rounded up: the broker counts in milliseconds, and a message is never due early.
        deliver_at_time: deliver_at.map(|at| {
            let millis = at.timestamp_millis();
            if at.timestamp_subsec_nanos() % 1_000_000 == 0 {
                millis
            } else {
                millis + 1
            }
        }),
        ..Message::default()
    }
}

/// The envelope's metadata as message properties: exactly what [`wire::to_headers`] gives
/// (a test holds them equal), built straight into the map the pulsar crate takes, moving the
/// envelope's strings rather than copying them, with a faster timestamp.
fn properties(envelope: Envelope) -> HashMap<String, String> {
    let mut properties = HashMap::with_capacity(12 + envelope.headers.len());
    let mut put = |name: &str, value: String| {
        properties.insert(name.to_owned(), value);
    };
    let id = envelope.id.to_string();
    put(
        wire::CORRELATION_ID,
        envelope.correlation_id.unwrap_or_else(|| id.clone()),
    );
    put(wire::MESSAGE_ID, id);
    put(wire::EVENT_TYPE, envelope.event_type.into_owned());
    put(wire::EVENT_VERSION, envelope.version.to_string());
    put(wire::OCCURRED_AT, rfc3339_micros(envelope.occurred_at));
    put(wire::AGGREGATE_TYPE, envelope.aggregate_type.into_owned());
    put(wire::AGGREGATE_ID, envelope.aggregate_id);
    put(wire::CONTENT_TYPE, envelope.content_type.into_owned());
    if let Some(key) = envelope.ordering_key {
        put(wire::ORDERING_KEY, key);
    }
    if let Some(causation) = envelope.causation_id {
        put(wire::CAUSATION_ID, causation);
    }
    if let Some(tenant) = envelope.tenant {
        put(wire::TENANT, tenant);
    }
    // User headers last, as in `to_headers`: one named like a Bento property replaces it.
    for (name, value) in envelope.headers {
        properties.insert(name, value);
    }
    properties
}

/// `at` as RFC 3339 in UTC with microseconds (`2026-01-02T03:04:05.000006Z`), as `wire` writes
/// it; chrono's general formatter for years it cannot write this way.
fn rfc3339_micros(at: DateTime<Utc>) -> String {
    use chrono::{Datelike, SecondsFormat, Timelike};
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return at.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    let mut out = [0u8; 27];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut value = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    put(20, nanos / 1000, 6);
    for (index, separator) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[index] = separator;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_what_wire_writes() {
        let full = Envelope::new("orders.placed", 7, "application/json", &b"{}"[..])
            .with_aggregate("order", "o-1")
            .with_ordering_key("o-1")
            .with_correlation_id("corr")
            .with_causation_id("cause")
            .with_tenant("acme")
            .with_header("traceparent", "00-abc-def-01")
            .with_header(wire::EVENT_TYPE, "a user header named like a Bento one");
        let bare = Envelope::new("", 1, "", &b""[..]);
        let old = Envelope::new("e", 1, "text/plain", &b""[..]).with_occurred_at(
            DateTime::<Utc>::from_timestamp_micros(-62_135_596_800_000_000).unwrap_or_default(),
        );
        for envelope in [full, bare, old] {
            let expected: HashMap<String, String> = wire::to_headers(&envelope)
                .into_iter()
                .map(|(name, value)| (name.into_owned(), value))
                .collect();
            assert_eq!(properties(envelope.clone()), expected, "{envelope:?}");
        }
    }

    #[test]
    fn timestamps_are_formatted_like_chrono() {
        use chrono::SecondsFormat;
        let mut micros: i64 = -62_167_219_200_000_000; // year 0
        let step = 3_141_592_653_589; // odd step: every field changes
        while micros < 253_402_300_799_999_999 {
            if let Some(at) = DateTime::<Utc>::from_timestamp_micros(micros) {
                assert_eq!(
                    rfc3339_micros(at),
                    at.to_rfc3339_opts(SecondsFormat::Micros, true)
                );
            }
            micros += step;
        }
        let far =
            DateTime::<Utc>::from_timestamp_micros(300_000_000_000_000_000).unwrap_or_default();
        assert_eq!(
            rfc3339_micros(far),
            far.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
    }

    #[test]
    fn message_carries_metadata_key_and_times() {
        let envelope = Envelope::new("orders.placed", 2, "application/json", &b"{}"[..])
            .with_ordering_key("order-1")
            .with_tenant("acme")
            .with_header(wire::ATTEMPT, "3");
        let at = Utc::now();
        let plain = message(envelope.clone(), None, None);
        assert_eq!(plain.partition_key.as_deref(), Some("order-1"));
        assert_eq!(plain.payload, b"{}");
        assert_eq!(
            plain.properties.get(wire::EVENT_TYPE).map(String::as_str),
            Some("orders.placed")
        );
        assert_eq!(
            plain.properties.get(wire::TENANT).map(String::as_str),
            Some("acme")
        );
        assert_eq!(
            plain.properties.get(wire::ATTEMPT),
            None,
            "a fresh publish is attempt 1"
        );
        assert_eq!(
            plain.event_time,
            u64::try_from(envelope.occurred_at.timestamp_millis()).ok()
        );
        assert_eq!(plain.deliver_at_time, None);

        let retry = message(envelope.clone(), Some(at), Some(4));
        assert_eq!(
            retry.properties.get(wire::ATTEMPT).map(String::as_str),
            Some("4")
        );
        let due = retry.deliver_at_time.unwrap_or_default();
        assert!(due >= at.timestamp_millis() && due <= at.timestamp_millis() + 1);
        let exact = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_123).unwrap_or_default();
        assert_eq!(
            message(envelope.clone(), Some(exact), None).deliver_at_time,
            Some(1_700_000_000_123)
        );
        let later = exact + chrono::Duration::microseconds(1);
        assert_eq!(
            message(envelope, Some(later), None).deliver_at_time,
            Some(1_700_000_000_124),
            "never early"
        );
    }
}
