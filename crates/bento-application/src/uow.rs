use async_trait::async_trait;
use bento_domain::{AggregateRoot, DomainEvent, Envelope, MessageId, RecordedEvent};

use crate::{BoxError, Bus, BusError, Codec, Context, PublishOptions};

/// The persistence side of a unit of work: the transaction your repositories wrote through.
///
/// Implement it over your database transaction; services without one (in-memory repositories)
/// use [`UnitOfWork::new`], which has nothing to commit.
#[async_trait]
pub trait Transaction: Send {
    /// Makes the work durable. Any error converts with `?` and is kept as the cause.
    async fn commit(self: Box<Self>) -> Result<(), BoxError>;
    /// Throws the work away.
    async fn rollback(self: Box<Self>) -> Result<(), BoxError>;
}

/// Why a unit of work did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnitOfWorkError {
    /// An event could not be encoded; nothing was committed or published.
    #[error("encoding event `{event_type}` failed, nothing was committed: {source}")]
    Encode {
        /// The event type.
        event_type: &'static str,
        /// The codec's error.
        source: BusError,
    },
    /// The transaction failed to commit; nothing was published.
    #[error("commit failed, no event was published: {source}")]
    Commit {
        /// The transaction's error.
        source: BoxError,
    },
    /// Rolling the transaction back failed; nothing was published.
    #[error("rollback failed, no event was published: {source}")]
    Rollback {
        /// The transaction's error.
        source: BoxError,
    },
    /// The transaction committed but publishing failed: the events listed were not published.
    #[error("committed, but publishing failed ({unpublished} event(s) not published): {source}")]
    Publish {
        /// How many events were not published.
        unpublished: usize,
        /// The bus's error.
        source: BusError,
    },
}

/// The events one business operation recorded, in order, waiting to be encoded: what a unit
/// of work collects, whether it publishes after its commit ([`UnitOfWork`]) or stores them in
/// its transaction (an outbox).
#[derive(Default)]
pub struct RecordedEvents {
    events: Vec<Box<dyn RecordedEvent>>,
    envelopes: Vec<Envelope>,
    cause: Option<Context>,
}

impl std::fmt::Debug for RecordedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedEvents")
            .field("pending", &self.len())
            .finish_non_exhaustive()
    }
}

impl RecordedEvents {
    /// Marks every event as caused by the message handled in `ctx`.
    pub fn caused_by(&mut self, ctx: &Context) {
        self.cause = Some(ctx.clone());
    }

    /// Takes the events `aggregate` recorded so far.
    pub fn collect(&mut self, aggregate: &mut impl AggregateRoot) {
        self.events.extend(aggregate.take_events());
    }

    /// Adds an event that no aggregate recorded.
    pub fn record<E: DomainEvent>(&mut self, event: E) {
        self.events.push(Box::new(event));
    }

    /// Adds an envelope built already; its id is kept.
    pub fn record_envelope(&mut self, envelope: Envelope) {
        self.envelopes.push(envelope);
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.events.len() + self.envelopes.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every event.
    pub fn clear(&mut self) {
        self.events.clear();
        self.envelopes.clear();
    }

    /// Encodes the events with `bus`'s codec, in the order they were recorded (envelopes added
    /// ready-made last), each marked with the cause if one was given; leaves none behind.
    pub fn encode<C: Codec>(&mut self, bus: &Bus<C>) -> Result<Vec<Envelope>, UnitOfWorkError> {
        let mut envelopes = Vec::with_capacity(self.len());
        for event in self.events.drain(..) {
            let envelope = bus.recorded_envelope(event.as_ref()).map_err(|source| {
                UnitOfWorkError::Encode {
                    event_type: event.event_type(),
                    source,
                }
            })?;
            envelopes.push(envelope);
        }
        envelopes.append(&mut self.envelopes);
        Ok(match &self.cause {
            Some(cause) => envelopes
                .into_iter()
                .map(|envelope| envelope.caused_by(cause.envelope()))
                .collect(),
            None => envelopes,
        })
    }
}

/// Collects the events that aggregates record during one business operation and publishes
/// them only after the operation's transaction committed. Dropping it, or calling
/// [`UnitOfWork::rollback`], publishes nothing.
///
/// - [`UnitOfWork::new`] takes the bus by value (`bus.clone()`) and has no transaction: for
///   repositories in memory, or writes that need no atomicity with the events.
///   [`UnitOfWork::with_transaction`] commits a [`Transaction`] first.
/// - [`collect`](UnitOfWork::collect), [`record`](UnitOfWork::record) and
///   [`caused_by`](UnitOfWork::caused_by) change the unit in place (`&mut self`) and return it,
///   so they chain with each other: `uow.caused_by(&ctx).record(event)`.
/// - [`commit`](UnitOfWork::commit) and [`rollback`](UnitOfWork::rollback) take it by value:
///   keep the unit in a `let mut`, and end with `uow.commit().await?`.
///
/// Between the commit and the publish a crash loses the events; where that matters, the
/// transactional outbox (bento-sqlx) stores them in the transaction instead.
///
/// ```
/// # use bento_application::*;
/// # use bento_application::domain::*;
/// # async fn demo<C: Codec>(bus: Bus<C>, mut user: impl AggregateRoot) -> Result<(), UnitOfWorkError> {
/// let mut uow = UnitOfWork::new(bus);
/// // ... load aggregates, call domain methods that record events ...
/// uow.collect(&mut user);
/// let published = uow.commit().await?;
/// # Ok(()) }
/// ```
pub struct UnitOfWork<C: Codec> {
    bus: Bus<C>,
    transaction: Option<Box<dyn Transaction>>,
    events: RecordedEvents,
}

impl<C: Codec> std::fmt::Debug for UnitOfWork<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("events", &self.events.len())
            .field("transaction", &self.transaction.is_some())
            .finish()
    }
}

impl<C: Codec> UnitOfWork<C> {
    /// A unit of work with no transaction of its own.
    pub fn new(bus: Bus<C>) -> Self {
        Self {
            bus,
            transaction: None,
            events: RecordedEvents::default(),
        }
    }

    /// A unit of work that commits `transaction` before publishing.
    pub fn with_transaction(bus: Bus<C>, transaction: impl Transaction + 'static) -> Self {
        Self {
            transaction: Some(Box::new(transaction)),
            ..Self::new(bus)
        }
    }

    /// Marks every event of this unit as caused by the message handled in `ctx`: same
    /// correlation id and tenant, and that message's id as causation id. For a unit of work
    /// begun in a handler. Changes the unit in place; it is no constructor.
    pub fn caused_by(&mut self, ctx: &Context) -> &mut Self {
        self.events.caused_by(ctx);
        self
    }

    /// Takes the events `aggregate` recorded so far.
    pub fn collect(&mut self, aggregate: &mut impl AggregateRoot) -> &mut Self {
        self.events.collect(aggregate);
        self
    }

    /// Adds an event that no aggregate recorded.
    pub fn record<E: DomainEvent>(&mut self, event: E) -> &mut Self {
        self.events.record(event);
        self
    }

    /// Events waiting to be published.
    pub fn pending(&self) -> usize {
        self.events.len()
    }

    /// Encodes the events, commits the transaction, then publishes them in order and returns
    /// their ids. Encoding happens first so that a bad event fails the work before it commits.
    pub async fn commit(mut self) -> Result<Vec<MessageId>, UnitOfWorkError> {
        let envelopes = self.events.encode(&self.bus)?;
        if let Some(transaction) = self.transaction.take() {
            transaction
                .commit()
                .await
                .map_err(|source| UnitOfWorkError::Commit { source })?;
        }
        let ids = envelopes.iter().map(|e| e.id).collect();
        let unpublished = envelopes.len();
        if !envelopes.is_empty() {
            self.bus
                .publish_envelopes(envelopes, PublishOptions::default())
                .await
                .map_err(|source| UnitOfWorkError::Publish {
                    unpublished,
                    source,
                })?;
        }
        Ok(ids)
    }

    /// Rolls the transaction back and drops the events: nothing is published.
    pub async fn rollback(mut self) -> Result<(), UnitOfWorkError> {
        self.events.clear();
        if let Some(transaction) = self.transaction.take() {
            transaction
                .rollback()
                .await
                .map_err(|source| UnitOfWorkError::Rollback { source })?;
        }
        Ok(())
    }
}
