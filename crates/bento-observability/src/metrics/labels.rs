//! The bound on distinct label values.

use std::collections::HashSet;

use parking_lot::Mutex;

use super::{OTHER, UNKNOWN};

/// Keeps at most `max` distinct values of one label; later ones become [`OTHER`].
pub(super) struct LabelLimit {
    pub(super) max: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelLimit {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Runs once per new handle, never per message.
    pub(super) fn admit(&self, value: &str) -> String {
        let value = if value.is_empty() { UNKNOWN } else { value };
        let mut seen = self.seen.lock();
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            value.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_limit_fold_into_other() {
        let limit = LabelLimit::new(2);
        assert_eq!(limit.admit("a"), "a");
        assert_eq!(limit.admit("b"), "b");
        assert_eq!(limit.admit("c"), OTHER);
        assert_eq!(limit.admit("a"), "a");
        assert_eq!(limit.admit(""), OTHER);
    }
}
