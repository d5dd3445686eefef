//! The blob cache's own state: where its files are (`DATA/cache/HASH`,
//! one sparse file per blob), which blobs open handles pin, and how many
//! bytes it holds. [`Cache`] owns these and their lock; the records of
//! which chunks are present live in LMDB ([`crate::store::cache`]).
//!
//! Every change of which file a cache path names (a realize moving the
//! file into the Real, a delta edit adopting its base's file, an
//! eviction) happens inside [`Cache::with_open`], after a look at the open
//! counts, and a handle is counted ([`Cache::opened`]) before it opens the
//! file: so no open handle ever reads a file swapped under it.
//!
//! - [`fetch`]: fetching chunks from holders into cache files;
//! - [`verify`]: outboards and pieces verified before use;
//! - [`delta`]: building an edited blob from its base;
//! - [`evict`]: the cache's bound, eviction and `/.ctl/cache`;
//! - [`chunks`]: the chunks on their way and their waiters;
//! - [`fetches`]: the bookkeeping of fetches (transfers,
//!   outboard fetches, peers in trouble).
//!
//! The cache reads and writes LMDB ([`crate::store`]) and asks the
//! network ([`crate::net::Household`]) for bytes; it knows nothing of the
//! namespace: a fetch names its blob by [`BlobRef`] (hash, size, and the
//! area and path a holder serves it at).

pub mod chunks;
pub mod delta;
mod error;
pub mod evict;
pub mod fetch;
pub mod fetches;
pub mod verify;

pub use error::{Error, Result};
pub use fetch::BlobRef;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::ids::{BlobHash, PeerId};
use crate::net::Household;
use crate::stats::Stats;
use crate::store::Store;

/// Open unreal handles (and pins) per blob.
pub type OpenCounts = HashMap<BlobHash, u32>;

/// How many handles (and pins) of `counts` have blob `hash` open.
pub fn count(counts: &OpenCounts, hash: &BlobHash) -> u32 {
    counts.get(hash).copied().unwrap_or(0)
}

/// The blob cache: its directory, open counts and usage, and the fetches
/// that fill it.
pub struct Cache {
    store: Arc<Store>,
    household: Arc<Household>,
    stats: Arc<Stats>,
    peer_id: PeerId,
    /// This cache, for fetches that outlive a call.
    me: Weak<Cache>,
    dir: PathBuf,
    /// Open unreal handles per blob: these are pinned.
    open: Mutex<OpenCounts>,
    /// Bytes present in cache files; `u64::MAX` until first counted.
    pub used: AtomicU64,
    /// Blobs evicted since the mount.
    pub evicted: AtomicU64,
    /// Chunks on their way, and the readers waiting for them.
    pub chunks: chunks::Chunks,
    /// Transfers, outboard fetches, peers in trouble.
    pub fetches: fetches::Fetches,
    /// Whether something the cache does not know of (an unreal file of
    /// the namespace) still shows a blob: set by the core at start.
    shown: std::sync::OnceLock<Shown>,
}

/// Whether an unreal file still shows blob `hash` (see [`Cache::set_shown`]).
pub type Shown = Box<dyn Fn(&BlobHash) -> bool + Send + Sync>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// The cache in `dir` (`DATA/cache`, created when absent) of peer
    /// `peer_id`, its records in `store`, fetching through `household` and
    /// counting into `stats`.
    pub fn open(
        dir: &Path,
        store: Arc<Store>,
        household: Arc<Household>,
        stats: Arc<Stats>,
        peer_id: PeerId,
    ) -> std::io::Result<Arc<Cache>> {
        crate::private::dir(dir)?;
        Ok(Arc::new_cyclic(|me| Cache {
            store,
            household,
            stats,
            peer_id,
            me: me.clone(),
            dir: dir.to_path_buf(),
            open: Mutex::default(),
            used: AtomicU64::new(u64::MAX),
            evicted: AtomicU64::new(0),
            chunks: chunks::Chunks::default(),
            fetches: fetches::Fetches::default(),
            shown: std::sync::OnceLock::new(),
        }))
    }

    /// Tells the cache how to ask whether an unreal file still shows a
    /// blob (the core knows; the cache does not know the namespace). Set
    /// once; later calls are ignored.
    pub fn set_shown(&self, shown: Shown) {
        let _ = self.shown.set(shown);
    }

    /// Whether blob `hash` must keep its own cache file: a kept version
    /// names it, or an unreal file shows it (a delta edit then copies from
    /// it instead of taking its file).
    pub(crate) fn still_wanted(&self, hash: &BlobHash) -> Result<bool> {
        Ok(self.kept(hash)? || self.shown.get().is_some_and(|shown| shown(hash)))
    }

    /// `DATA/cache`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache file of blob `hash`: `DATA/cache/HASH` (64 hex digits).
    pub fn path(&self, hash: &BlobHash) -> PathBuf {
        self.dir.join(crate::format::format_hash(Some(hash)))
    }

    /// Whether the cache file of blob `hash` is there and `size` bytes
    /// long, as its record says: a power loss may drop or cut a file the
    /// database still lists.
    pub(crate) fn file_is_whole(&self, hash: &BlobHash, size: u64) -> bool {
        std::fs::metadata(self.path(hash)).is_ok_and(|m| m.len() == size)
    }

    /// A handle on blob `hash` opened (count it before opening the file).
    pub fn opened(&self, hash: BlobHash) {
        *lock(&self.open).entry(hash).or_default() += 1;
    }

    /// A handle on blob `hash` closed.
    pub fn closed(&self, hash: BlobHash) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&hash) {
            *n -= 1;
            if *n == 0 {
                open.remove(&hash);
            }
        }
    }

    /// Pins blob `hash` like an open handle (undone by [`Cache::closed`]);
    /// whether no handle had it open before.
    pub fn pin_alone(&self, hash: BlobHash) -> bool {
        let mut open = lock(&self.open);
        let alone = !open.contains_key(&hash);
        *open.entry(hash).or_default() += 1;
        alone
    }

    /// Whether a handle has blob `hash` open.
    pub fn pinned(&self, hash: &BlobHash) -> bool {
        lock(&self.open).contains_key(hash)
    }

    /// Runs `swap` with the open counts, no handle opening meanwhile (see
    /// the module doc). Lock order: the open counts, then chunk waiters,
    /// then LMDB.
    pub fn with_open<R>(&self, swap: impl FnOnce(&OpenCounts) -> R) -> R {
        swap(&lock(&self.open))
    }

    /// Counts `bytes` fewer in the cache (a blob left it).
    pub fn shrank(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u != u64::MAX).then(|| u.saturating_sub(bytes))
            });
    }
}
