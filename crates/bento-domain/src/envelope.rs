use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::{ContextV7, Timestamp, Uuid};

use crate::RecordedEvent;

/// Free-form string headers carried next to the payload (trace context, user metadata).
pub type Headers = BTreeMap<String, String>;

/// Unique, time-ordered identity of one message (a UUID v7).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

/// The clock sequence of every [`MessageId`] of the process: within one millisecond, a
/// counter keeps later ids sorting after earlier ones.
static SEQUENCE: Mutex<ContextV7> = Mutex::new(ContextV7::new());

impl MessageId {
    /// A new id; ids created later sort after ids created earlier.
    pub fn new() -> Self {
        Self::at(SystemTime::now())
    }

    /// A new id for a message created at `time`, read from the clock by the caller (an
    /// envelope reads it once for its id and its time).
    fn at(time: SystemTime) -> Self {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let timestamp =
            Timestamp::from_unix(&SEQUENCE, since_epoch.as_secs(), since_epoch.subsec_nanos());
        Self(Uuid::new_v7(timestamp))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for MessageId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl std::str::FromStr for MessageId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

/// An encoded domain event and everything a consumer needs to route, order and trace it.
///
/// The payload is opaque bytes produced by a codec named by `content_type`; the rest is
/// metadata that every backend carries in message properties or headers under the same names.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Unique message id.
    pub id: MessageId,
    /// Event type name ([`crate::DomainEvent::EVENT_TYPE`]).
    pub event_type: Cow<'static, str>,
    /// Schema version of the event type.
    pub version: u32,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
    /// Kind of aggregate that recorded the event.
    pub aggregate_type: Cow<'static, str>,
    /// Identity of the aggregate that recorded the event.
    pub aggregate_id: String,
    /// Events with the same ordering key are handled one at a time, in order.
    pub ordering_key: Option<String>,
    /// Id shared by every message of one conversation or request; `None` means this message
    /// starts a conversation, and its own id serves (see [`Envelope::correlation_id`]).
    pub correlation_id: Option<String>,
    /// Id of the message that caused this one, if any.
    pub causation_id: Option<String>,
    /// Tenant the event belongs to, if the service is multi-tenant.
    pub tenant: Option<String>,
    /// Media type of the payload, e.g. `application/json`.
    pub content_type: Cow<'static, str>,
    /// Free-form headers.
    pub headers: Headers,
    /// The encoded event.
    pub payload: Bytes,
}

impl Envelope {
    /// An envelope for a freshly encoded event, with a new id and the current time.
    pub fn new(
        event_type: impl Into<Cow<'static, str>>,
        version: u32,
        content_type: impl Into<Cow<'static, str>>,
        payload: impl Into<Bytes>,
    ) -> Self {
        let now = SystemTime::now();
        Self {
            id: MessageId::at(now),
            event_type: event_type.into(),
            version,
            occurred_at: DateTime::from(now),
            aggregate_type: Cow::Borrowed(""),
            aggregate_id: String::new(),
            ordering_key: None,
            correlation_id: None,
            causation_id: None,
            tenant: None,
            content_type: content_type.into(),
            headers: Headers::new(),
            payload: payload.into(),
        }
    }

    /// An envelope for `event` once encoded as `payload` of `content_type`: the event's type,
    /// version, aggregate and ordering key (left unset when the event gives an empty one), with
    /// a new id and the current time.
    ///
    /// Takes any [`RecordedEvent`]: a typed [`crate::DomainEvent`], or one an aggregate recorded.
    pub fn for_event<E: RecordedEvent + ?Sized>(
        event: &E,
        content_type: impl Into<Cow<'static, str>>,
        payload: impl Into<Bytes>,
    ) -> Self {
        let mut envelope = Self::new(event.event_type(), event.version(), content_type, payload)
            .with_aggregate(event.aggregate_type(), event.aggregate_id());
        let ordering_key = event.ordering_key();
        if !ordering_key.is_empty() {
            envelope.ordering_key = Some(ordering_key);
        }
        envelope
    }

    /// Sets the aggregate this event belongs to.
    pub fn with_aggregate(
        mut self,
        aggregate_type: impl Into<Cow<'static, str>>,
        aggregate_id: impl Into<String>,
    ) -> Self {
        self.aggregate_type = aggregate_type.into();
        self.aggregate_id = aggregate_id.into();
        self
    }

    /// Sets the ordering key.
    pub fn with_ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Marks this envelope as caused by `cause`: same correlation id, causation id = its id.
    pub fn caused_by(self, cause: &Envelope) -> Self {
        let correlation = cause.correlation_id().into_owned();
        self.with_correlation_id(correlation)
            .with_causation_id(cause.id.to_string())
            .with_tenant_opt(cause.tenant.clone())
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    fn with_tenant_opt(mut self, tenant: Option<String>) -> Self {
        if tenant.is_some() {
            self.tenant = tenant;
        }
        self
    }

    /// Sets the time the event happened.
    pub fn with_occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = at;
        self
    }

    /// Adds one header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The conversation this message belongs to: the correlation id, or the message's own id
    /// when it starts the conversation.
    pub fn correlation_id(&self) -> Cow<'_, str> {
        match &self.correlation_id {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(self.id.to_string()),
        }
    }

    /// The key that orders this message: the ordering key if set, otherwise none.
    pub fn key(&self) -> Option<&str> {
        self.ordering_key.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainEvent;

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "v7 ids must be unique and increasing");
    }

    #[test]
    fn ids_of_many_threads_are_unique() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| MessageId::new()).collect::<Vec<_>>()))
            .collect();
        let mut ids: Vec<MessageId> = threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("thread"))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4000, "no id twice");
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Shipped {
        order: String,
        lane: String,
    }

    impl DomainEvent for Shipped {
        const EVENT_TYPE: &'static str = "orders.shipped";
        const VERSION: u32 = 3;
        const AGGREGATE_TYPE: &'static str = "order";
        fn aggregate_id(&self) -> String {
            self.order.clone()
        }
        fn ordering_key(&self) -> String {
            self.lane.clone()
        }
    }

    #[test]
    fn for_event_takes_the_events_identity() {
        let event = Shipped {
            order: "o-7".into(),
            lane: "east".into(),
        };
        let envelope = Envelope::for_event(&event, "application/json", "{}");
        assert_eq!(envelope.event_type, "orders.shipped");
        assert_eq!(envelope.version, 3);
        assert_eq!(envelope.aggregate_type, "order");
        assert_eq!(envelope.aggregate_id, "o-7");
        assert_eq!(envelope.ordering_key.as_deref(), Some("east"));
        assert_eq!(envelope.content_type, "application/json");
        assert_eq!(&envelope.payload[..], b"{}");

        // An empty ordering key means none.
        let unkeyed = Shipped {
            order: "o-8".into(),
            lane: String::new(),
        };
        let envelope = Envelope::for_event(&unkeyed, "application/json", "{}");
        assert_eq!(envelope.ordering_key, None);
    }

    #[test]
    fn caused_by_carries_correlation_and_tenant() {
        let cause = Envelope::new("a", 1, "application/json", "{}")
            .with_correlation_id("corr-1")
            .with_tenant("acme");
        let effect = Envelope::new("b", 1, "application/json", "{}").caused_by(&cause);
        assert_eq!(effect.correlation_id(), "corr-1");
        assert_eq!(effect.causation_id, Some(cause.id.to_string()));
        assert_eq!(effect.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn new_envelope_correlates_with_itself() {
        let env = Envelope::new("a", 1, "application/json", "{}");
        assert_eq!(env.correlation_id(), env.id.to_string());
    }
}
