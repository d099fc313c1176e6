//! Values a layer hands to the layers and the handler inside it, by type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// A map from type to one value of that type, carried by a [`crate::Context`].
///
/// A layer that opens something for the handler inside it (a database transaction, a
/// tenant's settings, an authenticated principal) puts it here with
/// [`crate::Context::with_extension`], and the handler reads it back with
/// [`crate::Context::extension`]. Empty costs nothing; cloning shares the values.
#[derive(Clone, Default)]
pub struct Extensions {
    map: Option<Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Extensions {
    /// The value of type `T`, if one was inserted.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map
            .as_ref()?
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref())
    }

    /// Inserts `value`, replacing the value of the same type; other clones keep theirs.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let map = self.map.get_or_insert_with(Arc::default);
        Arc::make_mut(map).insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.as_ref().is_none_or(|map| map.is_empty())
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.as_ref().map_or(0, |map| map.len());
        f.debug_struct("Extensions").field("values", &len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type_and_clones_are_independent() {
        let mut outer = Extensions::default();
        assert!(outer.is_empty() && outer.get::<u32>().is_none());
        outer.insert(7_u32);
        let mut inner = outer.clone();
        inner.insert("tenant-a".to_string());
        inner.insert(8_u32);
        assert_eq!(outer.get::<u32>(), Some(&7));
        assert!(outer.get::<String>().is_none());
        assert_eq!(inner.get::<u32>(), Some(&8));
        assert_eq!(inner.get::<String>().map(String::as_str), Some("tenant-a"));
    }
}
