//! The per-name cache of handles the layers look their figures up in.

use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::RwLock;

/// A bounded map from a name (event type, topic) to a value built once per name (usually an
/// `Arc`, cheap to clone).
///
/// The first name seen is kept apart and found with one string compare and no lock (most
/// subscriptions and most publishers see one event type); the others sit behind a read lock.
/// Past `capacity` names, values are built on each call and not kept, so an unbounded stream
/// of names cannot grow memory (their metric labels are folded into
/// [`OTHER`](super::OTHER) anyway).
pub(crate) struct HandleCache<T> {
    first: OnceLock<(Box<str>, T)>,
    rest: RwLock<HashMap<Box<str>, T>>,
    capacity: usize,
}

impl<T: Clone> HandleCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            first: OnceLock::new(),
            rest: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Like [`HandleCache::get`], but borrows the first entry instead of cloning it.
    pub(crate) fn get_ref(&self, key: &str, make: impl FnOnce(&str) -> T) -> Cached<'_, T> {
        match self.first.get() {
            Some((first_key, first)) if **first_key == *key => Cached::Borrowed(first),
            _ => Cached::Owned(self.get(key, make)),
        }
    }

    pub(crate) fn get(&self, key: &str, make: impl FnOnce(&str) -> T) -> T {
        match self.first.get() {
            Some((first_key, first)) if **first_key == *key => first.clone(),
            Some(_) => self.rest(key, || make(key)),
            None => {
                let value = make(key);
                let (first_key, first) = self.first.get_or_init(|| (key.into(), value.clone()));
                if **first_key == *key {
                    first.clone()
                } else {
                    // Another thread claimed the first slot with another name meanwhile.
                    self.rest(key, || value)
                }
            }
        }
    }

    fn rest(&self, key: &str, make: impl FnOnce() -> T) -> T {
        if let Some(found) = self.rest.read().get(key) {
            return found.clone();
        }
        let mut rest = self.rest.write();
        if let Some(found) = rest.get(key) {
            return found.clone();
        }
        let value = make();
        if rest.len() + 1 < self.capacity {
            rest.insert(key.into(), value.clone());
        }
        value
    }
}

/// An entry of a [`HandleCache`], borrowed or cloned.
pub(crate) enum Cached<'a, T> {
    Borrowed(&'a T),
    Owned(T),
}

impl<T> std::ops::Deref for Cached<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Cached::Borrowed(value) => value,
            Cached::Owned(value) => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_first_and_bounds_the_rest() {
        let cache: HandleCache<String> = HandleCache::new(2);
        let built = std::cell::Cell::new(0);
        let make = |k: &str| {
            built.set(built.get() + 1);
            k.to_uppercase()
        };
        assert_eq!(cache.get("a", make), "A");
        assert_eq!(cache.get("a", make), "A");
        assert_eq!(cache.get("b", make), "B");
        assert_eq!(cache.get("b", make), "B");
        assert_eq!(built.get(), 2);
        // Capacity 2: "a" (first) and "b" are kept, "c" is built on every call.
        assert_eq!(cache.get("c", make), "C");
        assert_eq!(cache.get("c", make), "C");
        assert_eq!(built.get(), 4);
    }
}
