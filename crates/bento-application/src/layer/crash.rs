//! Crash counting: a message that takes the whole process down counts as an attempt.
//!
//! A handler that aborts, overflows its stack or is killed by the out-of-memory killer never
//! returns an outcome, so no retry policy sees it: the broker hands the message to the next
//! process, which dies the same way, forever. Brokers do not count these redeliveries either
//! (Pulsar's redelivery count stays 0 when a consumer's connection drops; Kafka replays from
//! the last commit). This layer keeps its own count in a small journal on disk: before a
//! handler runs it writes the message's key into a slot, and clears the slot when the handler
//! returns. At start, slots still written are messages that were in a handler when the process
//! died; a message found there `max_crashes` times is dead-lettered instead of handled again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tower_layer::Layer;

use crate::{Context, EnvelopeHandler, FailureKind, HandlerError, Outcome};

/// A slot: the subscription's hash (8 bytes) and the message id (16 bytes).
const SLOT: usize = 24;
const IN_FLIGHT_FILE: &str = "in-flight";
const CRASHES_FILE: &str = "crashes";

/// (subscription hash, message id)
type Key = (u64, u128);

/// Dead-letters a message after it was in a handler when the process died `max_crashes` times.
///
/// Give each running instance of a service a directory of its own (a volume that outlives the
/// process: a container's scratch layer does not), and put the layer outermost, where it sees
/// every delivery:
///
/// ```no_run
/// # use bento_application::layer::CrashGuardLayer;
/// # fn demo() -> std::io::Result<()> {
/// let guard = CrashGuardLayer::open("/var/lib/orders/crashes", 3)?;
/// // bus.layer(guard) or Bento::builder().layer(guard), or one subscription's spec.layer(guard)
/// # Ok(()) }
/// ```
///
/// The cost is two small writes to the journal file per delivery (no `fsync`: a process that
/// dies leaves its writes in the operating system's cache; a machine that dies loses them, and
/// its messages are then handled once more before the count starts).
#[derive(Clone, Debug)]
pub struct CrashGuardLayer {
    journal: Arc<Journal>,
}

impl CrashGuardLayer {
    /// Opens (or creates) the journal in `dir` and reads what the last run left in it.
    pub fn open(dir: impl AsRef<Path>, max_crashes: u32) -> io::Result<Self> {
        Ok(Self {
            journal: Arc::new(Journal::open(dir.as_ref(), max_crashes.max(1))?),
        })
    }

    /// Messages of earlier runs that were in a handler when their process died, with how many
    /// times.
    pub fn suspects(&self) -> usize {
        self.journal.suspects.load(Ordering::Acquire)
    }
}

impl<S> Layer<S> for CrashGuardLayer {
    type Service = CrashGuard<S>;

    fn layer(&self, inner: S) -> CrashGuard<S> {
        CrashGuard {
            inner,
            journal: self.journal.clone(),
        }
    }
}

/// The handler a [`CrashGuardLayer`] wraps around another.
pub struct CrashGuard<S> {
    inner: S,
    journal: Arc<Journal>,
}

impl<S: EnvelopeHandler> EnvelopeHandler for CrashGuard<S> {
    fn handle(&self, ctx: Context) -> BoxFuture<'static, Outcome> {
        let key = (
            subscription_hash(ctx.subscription()),
            ctx.message_id().as_uuid().as_u128(),
        );
        let crashes = self.journal.crashes_of(key);
        if crashes >= self.journal.max_crashes {
            self.journal.forget(key);
            let error = HandlerError::permanent(format!(
                "message {} of subscription `{}` was in a handler when the process died {crashes} time(s)",
                ctx.message_id(),
                ctx.subscription()
            ));
            return Box::pin(std::future::ready(Outcome::DeadLetter {
                failure: FailureKind::Permanent,
                error,
            }));
        }
        let journal = self.journal.clone();
        let slot = journal.enter(key);
        Box::pin(self.inner.handle(ctx).map(move |outcome| {
            journal.leave(slot);
            if crashes > 0 && !matches!(outcome, Outcome::Retry { .. }) {
                journal.forget(key);
            }
            outcome
        }))
    }
}

/// FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
fn subscription_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug)]
struct Journal {
    dir: PathBuf,
    max_crashes: u32,
    slots: Mutex<Slots>,
    /// Counts from earlier runs, for messages not yet settled since. Filled at open only:
    /// from then on entries are only removed.
    crashed: Mutex<HashMap<Key, u32>>,
    /// `crashed.len()`, read without the lock: once it is 0 (the usual case, a clean last
    /// run) it stays 0, and deliveries skip the map.
    suspects: AtomicUsize,
}

#[derive(Debug)]
struct Slots {
    file: File,
    free: Vec<u64>,
    len: u64,
    /// Set once a write failed; the guard then counts nothing rather than failing deliveries.
    broken: bool,
}

impl Journal {
    fn open(dir: &Path, max_crashes: u32) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut crashed = read_crashes(&dir.join(CRASHES_FILE))?;
        let in_flight = dir.join(IN_FLIGHT_FILE);
        let mut bytes = Vec::new();
        if let Ok(mut file) = File::open(&in_flight) {
            file.read_to_end(&mut bytes)?;
        }
        for slot in bytes.chunks_exact(SLOT) {
            if slot.iter().any(|b| *b != 0) {
                let (hash, id) = slot.split_at(8);
                let key = (
                    u64::from_le_bytes(hash.try_into().unwrap_or_default()),
                    u128::from_le_bytes(id.try_into().unwrap_or_default()),
                );
                *crashed.entry(key).or_default() += 1;
            }
        }
        write_crashes(dir, &crashed)?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&in_flight)?;
        if !crashed.is_empty() {
            tracing::warn!(
                messages = crashed.len(),
                journal = %dir.display(),
                "messages were in a handler when the last process died; they count as attempts"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_crashes,
            slots: Mutex::new(Slots {
                file,
                free: Vec::new(),
                len: 0,
                broken: false,
            }),
            suspects: AtomicUsize::new(crashed.len()),
            crashed: Mutex::new(crashed),
        })
    }

    fn crashes_of(&self, key: Key) -> u32 {
        if self.suspects.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.crashed.lock().get(&key).copied().unwrap_or(0)
    }

    fn forget(&self, key: Key) {
        if self.suspects.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut crashed = self.crashed.lock();
        if crashed.remove(&key).is_some() {
            self.suspects.store(crashed.len(), Ordering::Release);
            if let Err(error) = write_crashes(&self.dir, &crashed) {
                tracing::warn!(%error, journal = %self.dir.display(), "rewriting the crash counts failed");
            }
        }
    }

    /// Writes `key` into a free slot; `None` once the journal cannot be written.
    fn enter(&self, key: Key) -> Option<u64> {
        let mut record = [0_u8; SLOT];
        record[..8].copy_from_slice(&key.0.to_le_bytes());
        record[8..].copy_from_slice(&key.1.to_le_bytes());
        let mut slots = self.slots.lock();
        if slots.broken {
            return None;
        }
        let slot = slots.free.pop().unwrap_or_else(|| {
            slots.len += 1;
            slots.len - 1
        });
        match slots.write(slot, &record) {
            Ok(()) => Some(slot),
            Err(error) => {
                slots.broken = true;
                tracing::error!(%error, journal = %self.dir.display(), "the crash journal cannot be written; crashes are not counted from now on");
                None
            }
        }
    }

    fn leave(&self, slot: Option<u64>) {
        let Some(slot) = slot else { return };
        let mut slots = self.slots.lock();
        if slots.write(slot, &[0; SLOT]).is_ok() {
            slots.free.push(slot);
        } else {
            slots.broken = true;
        }
    }
}

impl Slots {
    fn write(&mut self, slot: u64, record: &[u8; SLOT]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(slot * SLOT as u64))?;
        self.file.write_all(record)
    }
}

fn read_crashes(path: &Path) -> io::Result<HashMap<Key, u32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(error) => return Err(error),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let hash = u64::from_str_radix(fields.next()?, 16).ok()?;
            let id = u128::from_str_radix(fields.next()?, 16).ok()?;
            let count = fields.next()?.parse().ok()?;
            Some(((hash, id), count))
        })
        .collect())
}

/// Replaces the counts file whole (write, then rename), so a crash mid-write loses nothing.
fn write_crashes(dir: &Path, crashed: &HashMap<Key, u32>) -> io::Result<()> {
    let text: String = crashed
        .iter()
        .map(|((hash, id), count)| format!("{hash:016x} {id:032x} {count}\n"))
        .collect();
    let temporary = dir.join(format!("{CRASHES_FILE}.new"));
    std::fs::write(&temporary, text)?;
    std::fs::rename(temporary, dir.join(CRASHES_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> Key {
        (subscription_hash("billing"), n)
    }

    #[test]
    fn slots_left_written_count_as_crashes_at_the_next_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path(), 2).expect("opens");
        let first = journal.enter(key(1));
        let _second = journal.enter(key(2));
        journal.leave(first);
        drop(journal); // the process "dies" with message 2 in its handler

        let journal = Journal::open(dir.path(), 2).expect("opens again");
        assert_eq!(journal.crashes_of(key(1)), 0, "message 1 finished");
        assert_eq!(journal.crashes_of(key(2)), 1);
        let _again = journal.enter(key(2));
        drop(journal);

        let journal = Journal::open(dir.path(), 2).expect("opens a third time");
        assert_eq!(journal.crashes_of(key(2)), 2, "counts add up across runs");
        journal.forget(key(2));
        drop(journal);
        let journal = Journal::open(dir.path(), 2).expect("opens a fourth time");
        assert_eq!(
            journal.crashes_of(key(2)),
            0,
            "a settled message is forgotten"
        );
    }

    #[test]
    fn without_suspects_a_delivery_does_not_take_the_crash_map_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path(), 2).expect("opens");
        let _second = journal.enter(key(2));
        drop(journal); // message 2 was in its handler
        let journal = Arc::new(Journal::open(dir.path(), 2).expect("opens again"));
        assert_eq!(journal.suspects.load(Ordering::Acquire), 1);
        journal.forget(key(2));
        assert_eq!(
            journal.suspects.load(Ordering::Acquire),
            0,
            "the last one settled"
        );

        // With the map's lock held elsewhere, looking a message up still answers at once.
        let held = journal.crashed.lock();
        let (answer, answered) = std::sync::mpsc::channel();
        let looking = journal.clone();
        std::thread::spawn(move || {
            let _ = answer.send(looking.crashes_of(key(2)));
        });
        let crashes = answered.recv_timeout(std::time::Duration::from_secs(5));
        drop(held);
        assert_eq!(crashes, Ok(0), "answered without waiting for the lock");
    }

    #[test]
    fn freed_slots_are_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path(), 1).expect("opens");
        for n in 0..100 {
            let slot = journal.enter(key(n));
            journal.leave(slot);
        }
        let size = std::fs::metadata(dir.path().join(IN_FLIGHT_FILE))
            .expect("journal file")
            .len();
        assert_eq!(size, SLOT as u64, "one slot, written and cleared 100 times");
    }

    #[test]
    fn subscription_hashes_are_stable() {
        assert_eq!(subscription_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(subscription_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
