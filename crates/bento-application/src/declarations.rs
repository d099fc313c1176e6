//! The schemas a typed [`crate::Bus`] declares to its backend's schema registry: each event
//! type's, once, before the first publish of that type, so that a topic's schema is in the
//! registry before its first message and a mismatch fails that publish.

use std::collections::HashMap;
use std::sync::Arc;

use bento_domain::Envelope;
use parking_lot::RwLock;
use tokio::sync::OnceCell;

use crate::{BusError, CodecError, MessageBus, SchemaDefinition};

/// The event types a bus has encoded, with their schemas and whether those are declared yet.
/// Shared by the clones of a bus.
pub(crate) struct Declarations {
    /// Whether the backend has a schema registry; without one nothing here does anything.
    registry: bool,
    by_type: RwLock<HashMap<&'static str, Arc<Declaration>>>,
}

struct Declaration {
    /// `None`: the codec has no schema for the type (configured without one).
    schema: Option<SchemaDefinition>,
    /// Set once the backend took the declaration.
    declared: OnceCell<()>,
}

impl Declarations {
    pub(crate) fn new(bus: &dyn MessageBus) -> Self {
        Self {
            registry: bus.as_schema_registry().is_some(),
            by_type: RwLock::new(HashMap::new()),
        }
    }

    /// Whether the backend has a schema registry.
    pub(crate) fn active(&self) -> bool {
        self.registry
    }

    /// Notes the schema of `event_type` (from `schema`, asked only the first time) for the
    /// first publish of that type to declare. An event type whose schema the codec cannot
    /// describe fails here, when it is encoded.
    pub(crate) fn note(
        &self,
        event_type: &'static str,
        schema: impl FnOnce() -> Result<Option<SchemaDefinition>, CodecError>,
    ) -> Result<(), CodecError> {
        if !self.registry || self.by_type.read().contains_key(event_type) {
            return Ok(());
        }
        let schema = schema()?;
        self.by_type.write().entry(event_type).or_insert_with(|| {
            Arc::new(Declaration {
                schema,
                declared: OnceCell::new(),
            })
        });
        Ok(())
    }

    /// Declares, before they are published, the schemas of the event types of `envelopes` that
    /// this bus encoded and has not declared yet. Concurrent first publishes of a type wait
    /// for one declaration; a failed one is tried again by the next publish.
    pub(crate) async fn declare_for<'e>(
        &self,
        bus: &dyn MessageBus,
        envelopes: impl IntoIterator<Item = &'e Envelope>,
    ) -> Result<(), BusError> {
        if !self.registry {
            return Ok(());
        }
        let mut previous: Option<&str> = None;
        for envelope in envelopes {
            let event_type = envelope.event_type.as_ref();
            if previous == Some(event_type) {
                continue;
            }
            previous = Some(event_type);
            let Some(declaration) = self.by_type.read().get(event_type).cloned() else {
                continue;
            };
            let Some(schema) = &declaration.schema else {
                continue;
            };
            if declaration.declared.initialized() {
                continue;
            }
            declaration
                .declared
                .get_or_try_init(|| bus.declare_schema(schema))
                .await?;
        }
        Ok(())
    }

    /// Records that `schema` was declared (by [`crate::Bus::declare`]).
    pub(crate) fn declared(&self, event_type: &'static str, schema: SchemaDefinition) {
        let declaration = Declaration {
            schema: Some(schema),
            declared: OnceCell::new_with(Some(())),
        };
        self.by_type
            .write()
            .insert(event_type, Arc::new(declaration));
    }
}
