//! Envelopes as outbox rows and back: the wire headers as a JSON object, the payload as bytes.

use bento_application::domain::Envelope;
use bento_application::wire;
use bytes::Bytes;
use chrono::Utc;

use crate::SqlError;

/// An event on its way into the outbox.
#[derive(Debug, Clone)]
#[doc(hidden)]
pub struct NewRow {
    pub message_id: String,
    pub event_type: String,
    pub ordering_key: Option<String>,
    pub headers: String,
    pub payload: Vec<u8>,
    pub created_at: i64,
}

impl NewRow {
    pub(crate) fn from_envelope(envelope: &Envelope) -> Self {
        let headers: serde_json::Map<String, serde_json::Value> = wire::to_headers(envelope)
            .into_iter()
            .map(|(name, value)| (name.into_owned(), serde_json::Value::String(value)))
            .collect();
        Self {
            message_id: envelope.id.to_string(),
            event_type: envelope.event_type.to_string(),
            ordering_key: envelope.key().map(str::to_string),
            headers: serde_json::Value::Object(headers).to_string(),
            payload: envelope.payload.to_vec(),
            created_at: now_millis(),
        }
    }
}

/// A committed event the relay has not published yet.
#[derive(Debug, Clone)]
#[doc(hidden)]
pub struct PendingRow {
    pub seq: i64,
    pub headers: String,
    pub payload: Vec<u8>,
    pub created_at: i64,
}

impl PendingRow {
    /// The envelope as it was recorded, id included, so that a row published twice is the same
    /// message twice (and a durable inbox drops the second).
    pub(crate) fn envelope(&self) -> Result<Envelope, SqlError> {
        let corrupt = |reason: String| SqlError::CorruptRow {
            seq: self.seq,
            reason,
        };
        let headers: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.headers)
                .map_err(|e| corrupt(format!("headers are not a JSON object: {e}")))?;
        let mut pairs = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            match value {
                serde_json::Value::String(value) => pairs.push((name, value)),
                other => return Err(corrupt(format!("header `{name}` is {other}, not a string"))),
            }
        }
        let envelope = wire::from_headers(pairs, Bytes::from(self.payload.clone()));
        if envelope.event_type.is_empty() {
            return Err(corrupt(format!("no `{}` header", wire::EVENT_TYPE)));
        }
        Ok(envelope)
    }
}

/// Now, in Unix milliseconds: how every time in Bento's tables is stored, so that SQLite and
/// PostgreSQL (and sqlx's `Any` over either) read them the same way.
pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_table() {
        let envelope = Envelope::new(
            "orders.order-placed",
            2,
            "application/json",
            Bytes::from_static(b"{\"id\":1}"),
        )
        .with_aggregate("order", "o-1")
        .with_ordering_key("o-1")
        .with_correlation_id("c-1")
        .with_tenant("t-1")
        .with_header("x-origin", "web");
        let row = NewRow::from_envelope(&envelope);
        assert_eq!(row.ordering_key.as_deref(), Some("o-1"));
        let pending = PendingRow {
            seq: 1,
            headers: row.headers,
            payload: row.payload,
            created_at: row.created_at,
        };
        let back = pending.envelope().expect("readable");
        assert_eq!(back.id, envelope.id);
        assert_eq!(back.event_type, envelope.event_type);
        assert_eq!(back.version, envelope.version);
        assert_eq!(back.key(), Some("o-1"));
        assert_eq!(back.tenant.as_deref(), Some("t-1"));
        assert_eq!(
            back.headers.get("x-origin").map(String::as_str),
            Some("web")
        );
        assert_eq!(back.payload, envelope.payload);
    }

    #[test]
    fn a_damaged_row_is_an_error_naming_it() {
        let row = PendingRow {
            seq: 42,
            headers: "[1]".into(),
            payload: vec![],
            created_at: 0,
        };
        let error = row.envelope().expect_err("not an object");
        assert!(error.to_string().contains("outbox row 42"), "{error}");
    }
}
