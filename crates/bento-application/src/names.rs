//! The names every message of a kind repeats (event types, content types, aggregate types),
//! kept once for the life of the process.
//!
//! A consumer reading a backlog builds an envelope per message, and copying these three
//! names was three allocations per message, freed again on another thread. The first sight
//! of a name keeps one copy for good; later messages borrow it. The table is bounded, so a
//! producer sending ever-new names cannot grow it past [`CAPACITY`]: from then on new names
//! are copied per message, as before.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use parking_lot::RwLock;

/// Most names kept. A service reads a few dozen event types; 1,024 names of at most
/// [`LONGEST`] bytes are 256 KiB at worst.
const CAPACITY: usize = 1024;

/// Longest name kept; longer ones are copied per message.
const LONGEST: usize = 256;

type Names = HashSet<&'static str, foldhash::fast::RandomState>;

static NAMES: LazyLock<RwLock<Names>> = LazyLock::new(|| RwLock::new(Names::default()));

/// `name`, borrowed from the table when it is (or now becomes) one of its names.
pub(crate) fn intern(name: &str) -> Cow<'static, str> {
    if let Some(kept) = NAMES.read().get(name) {
        return Cow::Borrowed(kept);
    }
    if name.len() > LONGEST {
        return Cow::Owned(name.to_owned());
    }
    let mut names = NAMES.write();
    if let Some(kept) = names.get(name) {
        return Cow::Borrowed(kept);
    }
    if names.len() >= CAPACITY {
        return Cow::Owned(name.to_owned());
    }
    // Kept for the life of the process, on purpose: see the module's comment.
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(kept);
    Cow::Borrowed(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_seen_twice_is_borrowed_from_one_copy() {
        let first = intern("names.test.seen-twice");
        let second = intern(&String::from("names.test.seen-twice"));
        let (Cow::Borrowed(a), Cow::Borrowed(b)) = (first, second) else {
            panic!("both borrowed");
        };
        assert_eq!(a, "names.test.seen-twice");
        assert!(std::ptr::eq(a, b), "the same copy");
    }

    #[test]
    fn a_long_name_is_copied_not_kept() {
        let long = "x".repeat(LONGEST + 1);
        assert!(matches!(intern(&long), Cow::Owned(copy) if copy == long));
        assert!(NAMES.read().get(long.as_str()).is_none());
    }
}
