//! Chunks on their way into the cache, and the readers waiting for them.
//!
//! A chunk (4 MiB of a blob, [`crate::store::cache::CHUNK`]) being fetched
//! has one [`Waiter`]: readers that may block wait on it ([`Waiter::wait`]:
//! the life thread, a copy-up), FUSE reads subscribe to it
//! ([`Waiter::subscribe`]) and are answered by the thread that settles it.
//! [`Chunks`] owns the waiters of every chunk on its way, and remembers
//! for [`GAVE_UP`] the chunks a read gave up on.

use crate::ids::BlobHash;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// After a read gave up on a chunk at its deadline, reads of that chunk
/// fail at once for this long: the kernel follows a failed readahead with
/// a read of its own, which would otherwise wait `net.timeout` again.
pub const GAVE_UP: Duration = Duration::from_secs(1);

/// A chunk of a blob: (BLAKE3 hash, index from 0).
pub type ChunkKey = (BlobHash, u64);

/// Why a fetch of a chunk failed, as every reader waiting for it sees it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The bytes that came did not match the blob's hash (EIO to a reader
    /// whose deadline passes with this as the last failure); otherwise no
    /// holder sent them (EHOSTUNREACH).
    pub corrupt: bool,
    /// The bytes came but the disk of DATA had no room for them (ENOSPC
    /// to a reader at once: asking again would only fetch them again).
    pub no_space: bool,
    /// What happened, for the reader's error and the log.
    pub why: String,
}

impl Failure {
    /// No holder sent the bytes, for `why`.
    pub fn unreachable(why: impl Into<String>) -> Failure {
        Failure {
            corrupt: false,
            no_space: false,
            why: why.into(),
        }
    }
}

/// How a fetch of a chunk ended.
pub type Outcome = Result<(), Failure>;

/// Called once a chunk's fetch ended, on the thread that settled it.
pub type Subscriber = Box<dyn FnOnce(&Outcome) + Send>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fetch of one chunk that readers wait for.
#[derive(Default)]
pub struct Waiter {
    state: Mutex<WaiterState>,
    cv: Condvar,
}

#[derive(Default)]
struct WaiterState {
    outcome: Option<Outcome>,
    subscribers: Vec<Subscriber>,
}

impl Waiter {
    /// Ends the fetch: wakes the blocked readers and calls the
    /// subscribers, outside the lock.
    pub fn settle(&self, outcome: Outcome) {
        let subscribers = {
            let mut state = lock(&self.state);
            state.outcome = Some(outcome.clone());
            std::mem::take(&mut state.subscribers)
        };
        self.cv.notify_all();
        for subscriber in subscribers {
            subscriber(&outcome);
        }
    }

    /// Calls `f` when the fetch ends (at once, on this thread, when it
    /// has).
    pub fn subscribe(&self, f: Subscriber) {
        let mut state = lock(&self.state);
        match state.outcome.clone() {
            Some(outcome) => {
                drop(state);
                f(&outcome);
            }
            None => state.subscribers.push(f),
        }
    }

    /// Blocks until the fetch ends or `deadline` passes (`None`).
    pub fn wait(&self, deadline: Instant) -> Option<Outcome> {
        let mut state = lock(&self.state);
        loop {
            if let Some(outcome) = state.outcome.clone() {
                return Some(outcome);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .cv
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The chunks on their way, and those a read gave up on lately.
#[derive(Default)]
pub struct Chunks {
    waiters: Mutex<HashMap<ChunkKey, Arc<Waiter>>>,
    gave_up: Mutex<HashMap<ChunkKey, (Instant, Failure)>>,
}

impl Chunks {
    /// The waiter of chunk `key`: the one of a fetch on its way (`false`),
    /// or a new one (`true`: the caller starts the fetch) when `absent`
    /// says, under the lock, that the cache still lacks the chunk; `None`
    /// when it has it.
    pub fn waiter(
        &self,
        key: ChunkKey,
        absent: impl FnOnce() -> bool,
    ) -> Option<(Arc<Waiter>, bool)> {
        let mut waiters = lock(&self.waiters);
        if let Some(w) = waiters.get(&key) {
            return Some((Arc::clone(w), false));
        }
        if !absent() {
            return None;
        }
        let w = Arc::new(Waiter::default());
        waiters.insert(key, Arc::clone(&w));
        Some((w, true))
    }

    /// Ends the fetch of chunk `key` with `outcome`.
    pub fn settle(&self, key: ChunkKey, outcome: Outcome) {
        let waiter = lock(&self.waiters).remove(&key);
        if let Some(waiter) = waiter {
            waiter.settle(outcome);
        }
    }

    /// Whether a chunk of blob `hash` is on its way.
    pub fn fetching(&self, hash: &BlobHash) -> bool {
        lock(&self.waiters).keys().any(|(h, _)| h == hash)
    }

    /// Marks chunks `0..count` of blob `hash` as on their way, when none
    /// is and `may` (under the same lock) says so; the chunks reserved.
    /// Fetches of them then wait until each is settled.
    pub fn reserve(
        &self,
        hash: BlobHash,
        count: u64,
        may: impl FnOnce() -> bool,
    ) -> Option<Vec<u64>> {
        let mut waiters = lock(&self.waiters);
        if waiters.keys().any(|(h, _)| *h == hash) || !may() {
            return None;
        }
        let chunks: Vec<u64> = (0..count).collect();
        for c in &chunks {
            waiters.insert((hash, *c), Arc::new(Waiter::default()));
        }
        Some(chunks)
    }

    /// Why a read gave up on chunk `key` less than [`GAVE_UP`] ago.
    pub fn gave_up(&self, key: &ChunkKey) -> Option<Failure> {
        lock(&self.gave_up)
            .get(key)
            .filter(|(at, _)| at.elapsed() < GAVE_UP)
            .map(|(_, failure)| failure.clone())
    }

    /// A read gave up on chunk `key` for `failure`.
    pub fn give_up(&self, key: ChunkKey, failure: Failure) {
        let now = Instant::now();
        let mut gave_up = lock(&self.gave_up);
        gave_up.retain(|_, (at, _)| now.duration_since(*at) < GAVE_UP);
        gave_up.insert(key, (now, failure));
    }
}
