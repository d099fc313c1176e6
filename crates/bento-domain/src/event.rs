use serde::Serialize;
use serde::de::DeserializeOwned;

/// Something that happened in the domain, named in the past tense (`UserCreated`).
///
/// The type name and version are the event's stable identity on the wire: other services (in
/// other languages) route and decode by them, so change them only with a new version.
///
/// ```
/// use bento_domain::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct UserCreated { user_id: String, email: String }
///
/// impl DomainEvent for UserCreated {
///     const EVENT_TYPE: &'static str = "users.user-created";
///     const AGGREGATE_TYPE: &'static str = "user";
///     fn aggregate_id(&self) -> String { self.user_id.clone() }
/// }
/// ```
pub trait DomainEvent:
    std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Stable, globally unique event type name, e.g. `"users.user-created"`.
    const EVENT_TYPE: &'static str;
    /// Schema version of this event type; bump it on incompatible changes.
    const VERSION: u32 = 1;
    /// The kind of aggregate that records this event, e.g. `"user"`.
    const AGGREGATE_TYPE: &'static str;

    /// Identity of the aggregate instance that recorded the event.
    fn aggregate_id(&self) -> String;

    /// Key that orders events: two events with the same key are handled one after the other, in
    /// publish order. Defaults to the aggregate id, which keeps each aggregate's history in order.
    fn ordering_key(&self) -> String {
        self.aggregate_id()
    }
}
