use std::any::Any;
use std::fmt;

use crate::DomainEvent;

/// A recorded event with its concrete type erased, so that one aggregate can record events of
/// several types and the unit of work can collect them all in order.
pub trait RecordedEvent: Send + Sync + fmt::Debug {
    /// [`DomainEvent::EVENT_TYPE`] of the event.
    fn event_type(&self) -> &'static str;
    /// [`DomainEvent::VERSION`] of the event.
    fn version(&self) -> u32;
    /// [`DomainEvent::AGGREGATE_TYPE`] of the event.
    fn aggregate_type(&self) -> &'static str;
    /// [`DomainEvent::aggregate_id`] of the event.
    fn aggregate_id(&self) -> String;
    /// [`DomainEvent::ordering_key`] of the event.
    fn ordering_key(&self) -> String;
    /// The event as a serde value, for codecs that work through serde.
    fn as_serialize(&self) -> &dyn erased_serde::Serialize;
    /// The event itself, for codecs that need the concrete type (e.g. Protobuf).
    fn as_any(&self) -> &dyn Any;
    /// Runs the event type's `Deserialize` implementation against `deserializer` and drops
    /// what it builds: how a codec learns the shape of a type it does not know (to derive a
    /// schema for a broker's registry, say). The default, for types that are not
    /// [`DomainEvent`]s, says it cannot.
    fn deserialize_type(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<(), erased_serde::Error> {
        let _ = deserializer;
        Err(serde::de::Error::custom(format!(
            "`{}` does not say how to read it",
            self.event_type()
        )))
    }
}

impl<E: DomainEvent> RecordedEvent for E {
    fn event_type(&self) -> &'static str {
        E::EVENT_TYPE
    }
    fn version(&self) -> u32 {
        E::VERSION
    }
    fn aggregate_type(&self) -> &'static str {
        E::AGGREGATE_TYPE
    }
    fn aggregate_id(&self) -> String {
        DomainEvent::aggregate_id(self)
    }
    fn ordering_key(&self) -> String {
        DomainEvent::ordering_key(self)
    }
    fn as_serialize(&self) -> &dyn erased_serde::Serialize {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn deserialize_type(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<(), erased_serde::Error> {
        erased_serde::deserialize::<E>(deserializer).map(drop)
    }
}

/// Records the events an aggregate raises, in order, until the unit of work collects them.
///
/// Embed one in each aggregate (`EventRecorder::default()`), implement [`AggregateRoot`] by
/// returning it, and call [`EventRecorder::record`] in each method that changes the aggregate.
/// Recording publishes nothing: a unit of work (`UnitOfWork::collect` in bento-application, or
/// the outbox's) takes the events with [`EventRecorder::take`] and publishes them only once the
/// whole operation succeeded. See [`AggregateRoot`] for a complete aggregate.
#[derive(Debug, Default)]
pub struct EventRecorder {
    pending: Vec<Box<dyn RecordedEvent>>,
}

impl EventRecorder {
    /// Records an event; it is published only when the unit of work commits.
    pub fn record<E: DomainEvent>(&mut self, event: E) {
        self.pending.push(Box::new(event));
    }

    /// Takes every recorded event, oldest first, leaving the recorder empty.
    pub fn take(&mut self) -> Vec<Box<dyn RecordedEvent>> {
        std::mem::take(&mut self.pending)
    }

    /// Number of events recorded and not yet collected.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// An aggregate root: the consistency boundary that records domain events as it changes.
///
/// Implement [`AggregateRoot::events`] by returning the aggregate's [`EventRecorder`]; that is
/// how a unit of work reaches the recorded events (`uow.collect(&mut aggregate)`), and how a
/// test looks at them: `aggregate.events().len()`, or [`AggregateRoot::take_events`] and
/// [`RecordedEvent::event_type`] / [`RecordedEvent::as_any`] to downcast one. It takes
/// `&mut self`, since collecting empties the recorder.
///
/// ```
/// # use bento_domain::{AggregateRoot, DomainEvent, EventRecorder};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Serialize, Deserialize)]
/// # struct UserCreated { user_id: String }
/// # impl DomainEvent for UserCreated {
/// #     const EVENT_TYPE: &'static str = "users.user-created";
/// #     const AGGREGATE_TYPE: &'static str = "user";
/// #     fn aggregate_id(&self) -> String { self.user_id.clone() }
/// # }
/// struct User { id: String, events: EventRecorder }
///
/// impl User {
///     fn create(id: &str) -> Self {
///         let mut user = User { id: id.into(), events: EventRecorder::default() };
///         user.events.record(UserCreated { user_id: id.into() });
///         user
///     }
/// }
///
/// impl AggregateRoot for User {
///     fn events(&mut self) -> &mut EventRecorder { &mut self.events }
/// }
///
/// let mut user = User::create("u-1");
/// assert_eq!(user.events().len(), 1);
/// let events = user.take_events();
/// assert_eq!(events[0].event_type(), "users.user-created");
/// let created = events[0].as_any().downcast_ref::<UserCreated>();
/// assert_eq!(created.map(|e| e.user_id.as_str()), Some("u-1"));
/// assert!(user.take_events().is_empty());
/// ```
pub trait AggregateRoot {
    /// The aggregate's recorder.
    fn events(&mut self) -> &mut EventRecorder;

    /// Takes the recorded events, oldest first.
    fn take_events(&mut self) -> Vec<Box<dyn RecordedEvent>> {
        self.events().take()
    }
}
