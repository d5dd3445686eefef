//! What is being fetched into the cache, beside the chunks themselves
//! ([`super::chunks`]): the transfers `/.ctl/transfers` shows, one lock
//! per outboard being fetched, and the peers that failed lately and are asked last.

use crate::ids::{BlobHash, PeerId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a peer that failed a fetch, sent bytes that did not verify or
/// was slower than another holder is asked after the others.
pub const TROUBLE: Duration = Duration::from_secs(60);

/// A blob being fetched, as `/.ctl/transfers` shows it.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// The area's name.
    pub area: Vec<u8>,
    /// The file's path in the area.
    pub path: Vec<u8>,
    /// Bytes of the blob in the cache.
    pub done: u64,
    /// The blob's size in bytes.
    pub total: u64,
    /// Bytes fetched since the transfer started.
    pub fetched: u64,
    /// When it started.
    pub started: Instant,
    /// The peer that sent the last chunk.
    pub peer: Option<PeerId>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fetch bookkeeping of the cache (see the module doc).
#[derive(Default)]
pub struct Fetches {
    transfers: Mutex<HashMap<BlobHash, Transfer>>,
    /// One lock per outboard being fetched, so that the readers of one
    /// blob fetch its outboard once.
    outboards: Mutex<HashMap<BlobHash, Arc<Mutex<()>>>>,
    /// Peers in trouble, since when.
    trouble: Mutex<HashMap<PeerId, Instant>>,
}

impl Fetches {
    /// Starts showing a transfer of blob `hash`, unless one is shown.
    pub fn started(&self, hash: BlobHash, transfer: impl FnOnce() -> Transfer) {
        lock(&self.transfers).entry(hash).or_insert_with(transfer);
    }

    /// A chunk of `bytes` of blob `hash` came from `peer`, and the cache
    /// now has `done` bytes of it.
    pub fn progressed(&self, hash: BlobHash, bytes: u64, done: u64, peer: PeerId) {
        if let Some(t) = lock(&self.transfers).get_mut(&hash) {
            t.done = done;
            t.fetched += bytes;
            t.peer = Some(peer);
        }
    }

    /// The transfer of blob `hash` ended (done, or failed: a reader that
    /// still needs the blob starts a new one).
    pub fn ended(&self, hash: &BlobHash) {
        lock(&self.transfers).remove(hash);
    }

    /// The transfers shown now.
    pub fn transfers(&self) -> Vec<(BlobHash, Transfer)> {
        lock(&self.transfers)
            .iter()
            .map(|(h, t)| (*h, t.clone()))
            .collect()
    }

    /// The lock of the outboard fetch of blob `hash`: hold it while
    /// fetching, then [`Fetches::outboard_fetched`].
    pub fn outboard_lock(&self, hash: BlobHash) -> Arc<Mutex<()>> {
        Arc::clone(lock(&self.outboards).entry(hash).or_default())
    }

    /// The outboard of blob `hash` was fetched (or failed).
    pub fn outboard_fetched(&self, hash: &BlobHash) {
        lock(&self.outboards).remove(hash);
    }

    /// Asks `peer` after the others for [`TROUBLE`].
    pub fn in_trouble(&self, peer: PeerId) {
        lock(&self.trouble).insert(peer, Instant::now());
    }

    /// Whether `peer` failed, was slow or sent bad bytes lately.
    pub fn troubled(&self, peer: &PeerId) -> bool {
        let mut trouble = lock(&self.trouble);
        trouble.retain(|_, at| at.elapsed() < TROUBLE);
        trouble.contains_key(peer)
    }
}
