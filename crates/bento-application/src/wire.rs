//! How an [`Envelope`] travels: the header (Pulsar property, Kafka record header) names every
//! backend uses, so that services in other languages can read Bento's messages with nothing but
//! these names. See `docs/envelope.md`.

use std::borrow::Cow;

use bento_domain::{Envelope, Headers, MessageId};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::{DeadLetter, DeadLetterPolicy};

/// Message id, a UUID.
pub const MESSAGE_ID: &str = "bento-message-id";
/// Event type name.
pub const EVENT_TYPE: &str = "bento-event-type";
/// Event schema version, a decimal integer.
pub const EVENT_VERSION: &str = "bento-event-version";
/// When the event happened, RFC 3339 in UTC.
pub const OCCURRED_AT: &str = "bento-occurred-at";
/// Kind of aggregate.
pub const AGGREGATE_TYPE: &str = "bento-aggregate-type";
/// Aggregate id.
pub const AGGREGATE_ID: &str = "bento-aggregate-id";
/// Ordering key; also the broker's message key.
pub const ORDERING_KEY: &str = "bento-ordering-key";
/// Correlation id.
pub const CORRELATION_ID: &str = "bento-correlation-id";
/// Causation id.
pub const CAUSATION_ID: &str = "bento-causation-id";
/// Tenant.
pub const TENANT: &str = "bento-tenant";
/// Payload media type.
pub const CONTENT_TYPE: &str = "content-type";
/// Delivery attempt of a message republished for a retry (absent means 1).
pub const ATTEMPT: &str = "bento-attempt";

/// Request/reply: the topic a request's reply goes to.
pub const REPLY_TO: &str = "bento-reply-to";
/// Request/reply: the id of the request a reply answers (the request's message id).
pub const REQUEST_ID: &str = "bento-request-id";

/// Dead letters: why ([`crate::FailureKind`] name).
pub const DLQ_FAILURE: &str = "bento-dlq-failure";
/// Dead letters: the last error message.
pub const DLQ_REASON: &str = "bento-dlq-reason";
/// Dead letters: attempts made.
pub const DLQ_ATTEMPTS: &str = "bento-dlq-attempts";
/// Dead letters: the topic the message was read from.
pub const DLQ_ORIGINAL_TOPIC: &str = "bento-dlq-original-topic";
/// Dead letters: the subscription that gave up.
pub const DLQ_SUBSCRIPTION: &str = "bento-dlq-subscription";
/// Dead letters: the broker's id of the original message.
pub const DLQ_BROKER_MESSAGE_ID: &str = "bento-dlq-broker-message-id";
/// Dead letters: when it was dead-lettered, RFC 3339.
pub const DLQ_FAILED_AT: &str = "bento-dlq-failed-at";

/// Header names Bento sets from envelope fields; any other header is the user's.
pub const RESERVED: [&str; 11] = [
    MESSAGE_ID,
    EVENT_TYPE,
    EVENT_VERSION,
    OCCURRED_AT,
    AGGREGATE_TYPE,
    AGGREGATE_ID,
    ORDERING_KEY,
    CORRELATION_ID,
    CAUSATION_ID,
    TENANT,
    CONTENT_TYPE,
];

/// The envelope's metadata as `(name, value)` pairs, user headers last.
pub fn to_headers(envelope: &Envelope) -> Vec<(Cow<'static, str>, String)> {
    let mut out: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(12 + envelope.headers.len());
    let mut put = |name: &'static str, value: String| out.push((Cow::Borrowed(name), value));
    put(MESSAGE_ID, envelope.id.to_string());
    put(EVENT_TYPE, envelope.event_type.to_string());
    put(EVENT_VERSION, envelope.version.to_string());
    put(OCCURRED_AT, format_time(envelope.occurred_at));
    put(AGGREGATE_TYPE, envelope.aggregate_type.to_string());
    put(AGGREGATE_ID, envelope.aggregate_id.clone());
    put(CORRELATION_ID, envelope.correlation_id().into_owned());
    put(CONTENT_TYPE, envelope.content_type.to_string());
    if let Some(key) = &envelope.ordering_key {
        put(ORDERING_KEY, key.clone());
    }
    if let Some(causation) = &envelope.causation_id {
        put(CAUSATION_ID, causation.clone());
    }
    if let Some(tenant) = &envelope.tenant {
        put(TENANT, tenant.clone());
    }
    for (name, value) in &envelope.headers {
        out.push((Cow::Owned(name.clone()), value.clone()));
    }
    out
}

/// Rebuilds an envelope from headers and payload.
///
/// Lenient on purpose: a message written by someone else with missing or malformed Bento
/// headers still becomes an envelope (missing event type: empty; bad id: a fresh one, the
/// original kept under its header name), so the dispatcher dead-letters it with a reason instead
/// of the backend dropping it.
///
/// Values are taken as `AsRef<str>` and copied only where the envelope keeps them as text, so a
/// backend can pass borrowed header values (`Cow<str>`) and pay nothing for the parsed ones.
pub fn from_headers<I, K, V>(headers: I, payload: Bytes) -> Envelope
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String> + AsRef<str>,
    V: Into<String> + AsRef<str>,
{
    let mut id = None;
    let mut occurred_at = None;
    // Kept borrowed until the id is known: a conversation's first message carries its own id
    // here, which is not copied only to be dropped.
    let mut correlation = None;
    let mut envelope = Envelope {
        // Filled in below; a message without them gets a fresh id and the current time.
        id: MessageId::from(uuid::Uuid::nil()),
        event_type: Cow::Borrowed(""),
        version: 1,
        occurred_at: DateTime::<Utc>::UNIX_EPOCH,
        aggregate_type: Cow::Borrowed(""),
        aggregate_id: String::new(),
        ordering_key: None,
        correlation_id: None,
        causation_id: None,
        tenant: None,
        content_type: Cow::Borrowed(""),
        headers: Headers::new(),
        payload,
    };
    let mut user = Headers::new();
    for (name, value) in headers {
        match name.as_ref() {
            MESSAGE_ID => match value.as_ref().parse::<MessageId>() {
                Ok(parsed) => id = Some(parsed),
                Err(_) => {
                    user.insert(name.into(), value.into());
                }
            },
            EVENT_TYPE => envelope.event_type = crate::names::intern(value.as_ref()),
            EVENT_VERSION => match value.as_ref().parse() {
                Ok(version) => envelope.version = version,
                Err(_) => {
                    user.insert(name.into(), value.into());
                }
            },
            OCCURRED_AT => match DateTime::parse_from_rfc3339(value.as_ref()) {
                Ok(at) => occurred_at = Some(at.with_timezone(&Utc)),
                Err(_) => {
                    user.insert(name.into(), value.into());
                }
            },
            AGGREGATE_TYPE => envelope.aggregate_type = crate::names::intern(value.as_ref()),
            AGGREGATE_ID => envelope.aggregate_id = value.into(),
            ORDERING_KEY => envelope.ordering_key = Some(value.into()),
            CORRELATION_ID => correlation = Some(value),
            CAUSATION_ID => envelope.causation_id = Some(value.into()),
            TENANT => envelope.tenant = Some(value.into()),
            CONTENT_TYPE => envelope.content_type = crate::names::intern(value.as_ref()),
            _ => {
                user.insert(name.into(), value.into());
            }
        }
    }
    envelope.id = id.unwrap_or_default();
    envelope.occurred_at = occurred_at.unwrap_or_else(Utc::now);
    // A conversation's first message is sent with its own id as correlation id; it is kept as
    // `None`, as it was before it was sent.
    envelope.correlation_id = correlation
        .filter(|c| !is_own_id(c.as_ref(), envelope.id))
        .map(Into::into);
    envelope.headers = user;
    envelope
}

/// Whether `correlation` is `id` as Bento writes it (lowercase, hyphenated).
fn is_own_id(correlation: &str, id: MessageId) -> bool {
    correlation.len() == 36
        && !correlation.bytes().any(|b| b.is_ascii_uppercase())
        && correlation.parse::<MessageId>().is_ok_and(|c| c == id)
}

/// The dead letter for `original`: same id, payload and metadata, plus the failure headers.
pub fn dead_letter_envelope(
    original: &Envelope,
    letter: &DeadLetter,
    policy: &DeadLetterPolicy,
) -> Envelope {
    let mut dead = original.clone();
    if policy.drop_original_headers {
        dead.headers.clear();
    }
    // A dead letter is a new delivery chain: a replay starts again at attempt 1.
    dead.headers.remove(ATTEMPT);
    let headers = &mut dead.headers;
    headers.insert(DLQ_FAILURE.into(), letter.failure.as_str().into());
    headers.insert(DLQ_REASON.into(), letter.reason.clone());
    headers.insert(DLQ_ATTEMPTS.into(), letter.attempts.to_string());
    headers.insert(DLQ_ORIGINAL_TOPIC.into(), letter.original_topic.clone());
    headers.insert(DLQ_SUBSCRIPTION.into(), letter.subscription.clone());
    headers.insert(DLQ_FAILED_AT.into(), format_time(Utc::now()));
    if let Some(id) = &letter.broker_message_id {
        headers.insert(DLQ_BROKER_MESSAGE_ID.into(), id.clone());
    }
    dead
}

/// Strips the dead-letter headers from a dead letter, giving back the message to replay.
pub fn replay_envelope(dead: &Envelope) -> Envelope {
    let mut replay = dead.clone();
    replay
        .headers
        .retain(|name, _| !name.starts_with("bento-dlq-"));
    replay
}

/// The topic a dead letter was read from, if it is one.
pub fn original_topic(dead: &Envelope) -> Option<&str> {
    dead.headers.get(DLQ_ORIGINAL_TOPIC).map(String::as_str)
}

fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureKind;

    fn sample() -> Envelope {
        Envelope::new("users.user-created", 3, "application/json", &b"{}"[..])
            .with_aggregate("user", "u-1")
            .with_ordering_key("u-1")
            .with_correlation_id("corr")
            .with_causation_id("cause")
            .with_tenant("acme")
            .with_header("traceparent", "00-abc-def-01")
    }

    #[test]
    fn headers_round_trip_every_field() {
        let original = sample();
        let back = from_headers(to_headers(&original), original.payload.clone());
        let mut expected = original.clone();
        // The wire keeps microseconds.
        expected.occurred_at = DateTime::parse_from_rfc3339(&format_time(original.occurred_at))
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(original.occurred_at);
        assert_eq!(back, expected);
    }

    #[test]
    fn a_conversation_starts_again_without_a_correlation_id() {
        let first = Envelope::new("users.user-created", 1, "application/json", &b"{}"[..]);
        let back = from_headers(to_headers(&first), first.payload.clone());
        assert_eq!(back.correlation_id, None, "its own id is not kept as one");
        assert_eq!(back.correlation_id(), first.id.to_string());

        // Another message's id, or its own id written another way, is kept as sent.
        let other = Envelope::new("users.user-created", 1, "application/json", &b"{}"[..]);
        let upper = first.id.to_string().to_uppercase();
        for correlation in [other.id.to_string(), upper] {
            let sent = first.clone().with_correlation_id(correlation.clone());
            let back = from_headers(to_headers(&sent), sent.payload.clone());
            assert_eq!(back.correlation_id.as_deref(), Some(correlation.as_str()));
        }
    }

    #[test]
    fn foreign_message_without_headers_still_becomes_an_envelope() {
        let env = from_headers(
            vec![("x-custom", "1"), (MESSAGE_ID, "not-a-uuid")],
            Bytes::from_static(b"?"),
        );
        assert_eq!(env.event_type, "");
        assert_eq!(
            env.headers.get(MESSAGE_ID).map(String::as_str),
            Some("not-a-uuid")
        );
        assert_eq!(env.headers.get("x-custom").map(String::as_str), Some("1"));
    }

    #[test]
    fn dead_letter_keeps_original_and_adds_failure() {
        let original = sample();
        let letter = DeadLetter {
            failure: FailureKind::RetriesExhausted,
            reason: "db down".into(),
            attempts: 3,
            original_topic: "users".into(),
            subscription: "mailer".into(),
            broker_message_id: Some("1:2:3".into()),
        };
        let dead = dead_letter_envelope(&original, &letter, &DeadLetterPolicy::default());
        assert_eq!(dead.id, original.id);
        assert_eq!(dead.payload, original.payload);
        assert_eq!(
            dead.headers.get(DLQ_REASON).map(String::as_str),
            Some("db down")
        );
        assert_eq!(
            dead.headers.get(DLQ_ATTEMPTS).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            dead.headers.get("traceparent").map(String::as_str),
            Some("00-abc-def-01")
        );
        assert_eq!(original_topic(&dead), Some("users"));
        assert_eq!(replay_envelope(&dead), original);
    }
}
