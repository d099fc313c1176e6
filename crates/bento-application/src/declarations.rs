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

    /// Whether a publish may have a schema to declare first (the backend has a registry).
    pub(crate) fn may_declare(&self) -> bool {
        self.registry
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bento_domain::Envelope;
    use parking_lot::Mutex;

    use crate::{
        BusError, EnvelopeHandler, MessageBus, PublishOptions, SchemaDefinition, SchemaKind,
        SchemaRegistry, Subscription, SubscriptionSpec,
    };

    use super::Declarations;

    /// A backend with a registry that records what it is asked, and refuses the first
    /// declaration when told to.
    #[derive(Default)]
    struct Registry {
        declared: Mutex<Vec<String>>,
        refuse_first: bool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl MessageBus for Registry {
        fn backend(&self) -> &'static str {
            "registry"
        }
        async fn publish(&self, _: Envelope, _: PublishOptions) -> Result<(), BusError> {
            Ok(())
        }
        async fn subscribe(
            &self,
            _: SubscriptionSpec,
            _: Arc<dyn EnvelopeHandler>,
        ) -> Result<Subscription, BusError> {
            Err(BusError::Closed)
        }
        fn topic_for(&self, event_type: &str) -> String {
            event_type.to_owned()
        }
        fn as_schema_registry(&self) -> Option<&dyn SchemaRegistry> {
            Some(self)
        }
    }

    #[async_trait]
    impl SchemaRegistry for Registry {
        async fn declare_schema(&self, schema: &SchemaDefinition) -> Result<(), BusError> {
            tokio::task::yield_now().await;
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 && self.refuse_first {
                return Err(BusError::Closed);
            }
            self.declared.lock().push(schema.event_type.clone());
            Ok(())
        }
    }

    fn schema(event_type: &str) -> SchemaDefinition {
        SchemaDefinition {
            event_type: event_type.to_owned(),
            kind: SchemaKind::Json,
            definition: "{}".to_owned(),
        }
    }

    fn envelope(event_type: &'static str) -> Envelope {
        Envelope::new(event_type, 1, "application/json", &b"{}"[..])
    }

    #[tokio::test]
    async fn each_event_type_is_declared_once_before_its_first_publish() {
        let bus = Registry::default();
        let declarations = Declarations::new(&bus);
        assert!(declarations.active());
        for event_type in ["a.one", "b.two", "c.none"] {
            let described = (event_type != "c.none").then(|| schema(event_type));
            declarations
                .note(event_type, || Ok(described))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // Noting again asks the codec nothing.
        declarations
            .note("a.one", || panic!("asked twice"))
            .unwrap_or_else(|e| panic!("{e}"));
        let batch = [
            envelope("a.one"),
            envelope("a.one"),
            envelope("b.two"),
            envelope("c.none"),
            envelope("not.noted"),
        ];
        let (first, second) = futures::join!(
            declarations.declare_for(&bus, &batch),
            declarations.declare_for(&bus, &batch)
        );
        first.and(second).unwrap_or_else(|e| panic!("{e}"));
        declarations
            .declare_for(&bus, &batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(*bus.declared.lock(), ["a.one", "b.two"]);
    }

    #[tokio::test]
    async fn a_refused_declaration_fails_the_publish_and_is_tried_again() {
        let bus = Registry {
            refuse_first: true,
            ..Registry::default()
        };
        let declarations = Declarations::new(&bus);
        declarations
            .note("a.one", || Ok(Some(schema("a.one"))))
            .unwrap_or_else(|e| panic!("{e}"));
        let batch = [envelope("a.one")];
        assert!(declarations.declare_for(&bus, &batch).await.is_err());
        assert!(declarations.declare_for(&bus, &batch).await.is_ok());
        assert!(declarations.declare_for(&bus, &batch).await.is_ok());
        assert_eq!(*bus.declared.lock(), ["a.one"]);
    }
}
