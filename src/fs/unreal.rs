//! Unreal files: opening them, fetching their chunks from holders into
//! the blob cache, and copy-up. Reads of them are [`super::reads`].
//!
//! An unreal file's bytes live in a sparse cache file `DATA/cache/HASH`,
//! filled chunk by chunk ([`CHUNK`], 4 MiB) from the peers that hold the
//! blob; which chunks are present is kept in LMDB ([`crate::store::cache`]).
//! A read waits for the chunks it covers (at most `net.timeout`, then
//! EHOSTUNREACH) and, when reads follow each other, starts fetching the
//! next [`READAHEAD`] chunks so that a cold sequential read keeps the link
//! busy. A chunk is written to the cache only once it arrived whole and
//! each of its pieces matched the blob's outboard ([`super::pieces`]); a
//! chunk that does not is dropped, counted in `verify.failures`, and
//! fetched again from another holder. A blob whose chunks are all in is
//! `verified`. Chunks are spread over the blob's holders, and a holder
//! slower than [`crate::net::blobs::HEDGE`] is passed over.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Error, Fs, Result, lock, wait};
use crate::cache::chunks::{Failure, Outcome, Waiter};
use crate::ids::PeerId;
use crate::net::protocol::BlobRange;
use crate::net::{Command, Fetch, FetchOutcome};
use crate::store::Ino;
use crate::store::cache::{CHUNK, Cached};
use crate::store::namespace::Timestamp;

/// Chunks fetched ahead of a sequential reader.
pub const READAHEAD: u64 = 8;

/// How long a read waits before it asks again for a chunk whose fetch
/// failed (no holder connected, or all refused).
pub(super) const RETRY: Duration = Duration::from_millis(200);

/// The failure `e` as the readers of a chunk see it.
pub(super) fn failure(e: &Error) -> Failure {
    Failure {
        corrupt: matches!(e, Error::Corrupt(_)),
        why: e.to_string(),
    }
}

/// The error a reader gets when its deadline passes after `failure`:
/// EIO for bytes that did not verify, EHOSTUNREACH otherwise.
pub(super) fn error(failure: &Failure) -> Error {
    match failure.corrupt {
        true => Error::Corrupt(failure.why.clone()),
        false => Error::Unreachable(failure.why.clone()),
    }
}

pub use crate::cache::fetches::Transfer;

/// What copy-ups and unrealizes have in hand.
#[derive(Default)]
pub(super) struct Unreal {
    /// Inodes being copied up (see [`Fs::copy_up`]).
    copying: (Mutex<HashSet<Ino>>, Condvar),
    /// Blobs this peer is dropping from its Real (see [`Fs::keeps`]).
    pub(super) dropping: Mutex<HashSet<[u8; 32]>>,
}

/// The turn of one copy-up of an inode: taken when no other copy-up of it
/// runs, given back when dropped.
struct CopyTurn<'a> {
    copying: &'a (Mutex<HashSet<Ino>>, Condvar),
    ino: Ino,
}

impl<'a> CopyTurn<'a> {
    fn take(copying: &'a (Mutex<HashSet<Ino>>, Condvar), ino: Ino) -> CopyTurn<'a> {
        let mut running = lock(&copying.0);
        while running.contains(&ino) {
            running = wait(&copying.1, running, Duration::from_secs(1));
        }
        running.insert(ino);
        CopyTurn { copying, ino }
    }
}

impl Drop for CopyTurn<'_> {
    fn drop(&mut self) {
        lock(&self.copying.0).remove(&self.ino);
        self.copying.1.notify_all();
    }
}

/// A blob as an unreal file shows it: what a fetch needs.
#[derive(Clone)]
pub(super) struct BlobRef {
    pub(super) hash: [u8; 32],
    pub(super) size: u64,
    pub(super) area: Ino,
    pub(super) area_name: Vec<u8>,
    pub(super) path: Vec<u8>,
}

/// Unreal files of at most this size after the one opened in its
/// directory are fetched with it, so that reading a directory of small
/// files waits for the network once per batch rather than once per file.
pub const PREFETCH_FILES: usize = 32;

/// Keeps a blob pinned in the cache while it lives.
struct Pin {
    fs: std::sync::Weak<Fs>,
    hash: [u8; 32],
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.upgrade() {
            fs.cache.closed(self.hash);
        }
    }
}

/// What an open unreal file reads from. Its descriptor of the cache file
/// stays right: the file is never swapped while a handle has the blob
/// open (see [`crate::cache::Cache::with_open`]).
pub(super) struct UnrealFile {
    /// The inode: it may become real while open (see [`Fs::read_realized`]).
    pub(super) ino: Ino,
    pub(super) blob: BlobRef,
    pub(super) file: File,
    _pin: Pin,
    /// Where the last read ended: a read starting there is sequential.
    pub(super) next: AtomicU64,
}

impl Fs {
    /// Opens unreal file `ino` for reading from the cache.
    pub(super) fn open_unreal(&self, ino: Ino) -> Result<UnrealFile> {
        let txn = self.store.read()?;
        let inode = self.inode(&txn, ino)?;
        let hash = inode.hash.ok_or_else(Error::not_found)?;
        let path = self.area_path(&txn, ino)?;
        let area_name = self.inode(&txn, inode.area)?.name;
        let known = self.store.cache.get(&txn, &hash)?.is_some();
        drop(txn);
        // Counted open first: a delta edit adopts its base's file for the
        // blob only while nothing has the blob open.
        self.cache.opened(hash);
        let pin = Pin {
            fs: self.me.clone(),
            hash,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.cache.path(&hash))?;
        if !known {
            // Sparse: chunks land at their offsets as they come.
            file.set_len(inode.size)?;
        }
        Ok(UnrealFile {
            ino,
            _pin: pin,
            blob: BlobRef {
                hash,
                size: inode.size,
                area: inode.area,
                area_name,
                path,
            },
            file,
            next: AtomicU64::new(0),
        })
    }

    /// Starts fetching the small unreal files that follow entry `name` of
    /// directory `parent` (see [`PREFETCH_FILES`]); failures are left to
    /// the reads that will need them.
    pub(super) fn prefetch_after(&self, parent: Ino, name: &[u8]) -> Result<()> {
        let txn = self.store.read()?;
        let Some(cookie) = self.store.namespace.cookie(&txn, parent, name)? else {
            return Ok(());
        };
        let dir = self.inode(&txn, parent)?;
        let dir_path = self.area_path(&txn, parent)?;
        let area_name = self.inode(&txn, dir.area)?.name;
        let mut blobs = Vec::new();
        let mut seen = 0;
        self.store
            .namespace
            .children(&txn, parent, cookie + 1, |_, entry| {
                seen += 1;
                if let Some(inode) = self.store.namespace.get(&txn, entry.ino)?
                    && let Some(hash) = inode.hash
                    && inode.unreal
                    && inode.size > 0
                    && inode.size <= CHUNK
                {
                    let mut path = dir_path.clone();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(&entry.name);
                    blobs.push(BlobRef {
                        hash,
                        size: inode.size,
                        area: dir.area,
                        area_name: area_name.clone(),
                        path,
                    });
                }
                Ok(blobs.len() < PREFETCH_FILES && seen < 4 * PREFETCH_FILES)
            })?;
        drop(txn);
        for blob in blobs {
            self.start_chunk(&blob, 0)?;
        }
        Ok(())
    }

    /// Makes unreal file `ino` real (copy-up before a write, and a realize
    /// by mode): makes room, fetches it whole and moves it into the Real
    /// ([`Fs::realize_cached`]). The recorded hash stays, so a write that
    /// follows is recorded as an edit based on it. One copy-up of an inode
    /// at a time: a second one (a writer while the life thread realizes
    /// it) waits for the first and finds the file real.
    pub(super) fn copy_up(&self, ino: Ino) -> Result<()> {
        let _turn = CopyTurn::take(&self.unreal.copying, ino);
        {
            let txn = self.store.read()?;
            if !self.inode(&txn, ino)?.unreal {
                return Ok(());
            }
        }
        let uf = self.open_unreal(ino)?;
        let txn = self.store.read()?;
        let (have, _, _) = self.cached_state(&txn, &uf.blob.hash)?;
        drop(txn);
        self.make_room(uf.blob.size.saturating_sub(have))?;
        self.fetch_whole(&uf.blob)?;
        self.realize_cached(ino, &uf.blob)
    }

    /// Fetches every chunk of `blob` that the cache lacks, reading ahead,
    /// each waited for at most `net.timeout`.
    pub(super) fn fetch_whole(&self, blob: &BlobRef) -> Result<()> {
        if let Err(e) = self.build_from_base(blob) {
            tracing::info!("building a blob from its base: {e}; fetching it whole");
        }
        let count = blob.size.div_ceil(CHUNK);
        for c in 0..count {
            for ahead in c + 1..(c + 1 + READAHEAD).min(count) {
                self.start_chunk(blob, ahead)?;
            }
            self.wait_chunk(blob, c, Instant::now() + self.net_timeout())?;
        }
        Ok(())
    }

    /// Brings unreal file `ino` whole into the cache (`fetch NAME`).
    pub(crate) fn fetch_into_cache(&self, ino: Ino) -> Result<()> {
        let uf = self.open_unreal(ino)?;
        self.fetch_whole(&uf.blob)
    }

    /// `config net.timeout` (30 s when it cannot be read): how long a read
    /// or a request waits for a peer.
    pub(crate) fn net_timeout(&self) -> Duration {
        self.store
            .read()
            .and_then(|txn| {
                self.store
                    .config
                    .duration(&txn, crate::store::config::Key::NetTimeout)
            })
            .unwrap_or(Duration::from_secs(30))
    }

    pub(super) fn has_chunk(&self, hash: &[u8; 32], c: u64) -> Result<bool> {
        let txn = self.store.read()?;
        Ok(self.store.cache.get(&txn, hash)?.is_some_and(|r| r.has(c)))
    }

    /// Waits until chunk `c` is in the cache, fetching it again after a
    /// failure until `deadline`. Blocks: for the life thread and work
    /// already off the FUSE workers (copy-up, `fetch NAME`).
    fn wait_chunk(&self, blob: &BlobRef, c: u64, deadline: Instant) -> Result<()> {
        loop {
            let Some(waiter) = self.start_chunk(blob, c)? else {
                return Ok(());
            };
            match waiter.wait(deadline) {
                Some(Ok(())) => return Ok(()),
                Some(Err(failure)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(error(&failure));
                    }
                    std::thread::sleep((deadline - now).min(RETRY));
                }
                None => {
                    return Err(Error::Unreachable(
                        "no holder sent the bytes within net.timeout".into(),
                    ));
                }
            }
        }
    }

    /// Starts fetching chunk `c` unless it is cached (`None`) or on its way.
    pub(super) fn start_chunk(&self, uf: &BlobRef, c: u64) -> Result<Option<Arc<Waiter>>> {
        if self.has_chunk(&uf.hash, c)? {
            return Ok(None);
        }
        // Stored between the check above and the waiters' lock: done.
        let absent = || !self.has_chunk(&uf.hash, c).unwrap_or(false);
        let waiter = match self.cache.chunks.waiter((uf.hash, c), absent) {
            None => return Ok(None),
            Some((waiter, false)) => return Ok(Some(waiter)),
            Some((waiter, true)) => waiter,
        };
        self.cache.fetches.started(uf.hash, || Transfer {
            area: uf.area_name.clone(),
            path: uf.path.clone(),
            done: 0,
            total: uf.size,
            fetched: 0,
            started: Instant::now(),
            peer: None,
        });
        let holders = self.holders_to_ask(uf, c)?;
        let me = self.me.clone();
        let blob = uf.clone();
        let fetch = Fetch {
            holders,
            range: BlobRange {
                area: uf.area_name.clone(),
                path: uf.path.clone(),
                hash: uf.hash,
                offset: c * CHUNK,
                len: CHUNK.min(uf.size - c * CHUNK),
            },
            outboard: false,
            done: Box::new(move |outcome| {
                if let Some(fs) = me.upgrade() {
                    tokio::task::spawn_blocking(move || fs.chunk_arrived(&blob, c, outcome));
                }
            }),
        };
        if !self.household.send(Command::Fetch(fetch)) {
            let failure = Failure::unreachable("the network is not running");
            self.settle_chunk(uf.hash, c, Err(failure));
        }
        Ok(Some(waiter))
    }

    /// The peers to ask for chunk `c` of `uf`'s blob: its holders, taken
    /// in turn by chunk so that several holders send at once, then every
    /// other peer the area is shared with; peers in trouble go last.
    pub(super) fn holders_to_ask(&self, uf: &BlobRef, c: u64) -> Result<Vec<PeerId>> {
        let txn = self.store.read()?;
        let mut peers: Vec<PeerId> = match self.store.versions.get(&txn, uf.area, &uf.path)? {
            Some(record) => record
                .holders_of(uf.hash)
                .filter(|p| *p != self.peer_id)
                .collect(),
            None => Vec::new(),
        };
        if !peers.is_empty() {
            let turn = (c % peers.len() as u64) as usize;
            peers.rotate_left(turn);
        }
        if let Some(area) = self.store.areas.get(&txn, uf.area)? {
            for peer in area.shares.into_iter().map(PeerId) {
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
            }
        }
        // Stable: the order above stays among the good and the troubled.
        peers.sort_by_key(|p| self.cache.fetches.troubled(p));
        Ok(peers)
    }

    /// Stores a chunk that arrived (on the blocking pool) and wakes its
    /// readers; holders that failed or were slow are asked last for a
    /// while.
    fn chunk_arrived(&self, blob: &BlobRef, c: u64, outcome: FetchOutcome) {
        for peer in outcome.passed_over {
            self.cache.fetches.in_trouble(peer);
        }
        let outcome = match outcome.result {
            Ok((peer, bytes)) => self
                .store_chunk(blob, c, peer, &bytes)
                .map_err(|e| failure(&e)),
            Err(e) => Err(Failure::unreachable(e.to_string())),
        };
        self.settle_chunk(blob.hash, c, outcome);
    }

    fn settle_chunk(&self, hash: [u8; 32], c: u64, outcome: Outcome) {
        if outcome.is_err() {
            // A read that still needs the blob starts a new transfer.
            self.cache.fetches.ended(&hash);
        }
        self.cache.chunks.settle((hash, c), outcome);
    }

    /// Verifies chunk `c` of `blob` that `peer` sent, piece by piece,
    /// and writes it to the cache file; the blob is verified once every
    /// chunk is in.
    fn store_chunk(&self, blob: &BlobRef, c: u64, peer: PeerId, bytes: &[u8]) -> Result<()> {
        let (hash, size) = (blob.hash, blob.size);
        let expected = CHUNK.min(size - c * CHUNK);
        if bytes.len() as u64 != expected {
            self.cache.fetches.in_trouble(peer);
            return Err(Error::Unreachable(format!(
                "{peer} sent {} bytes of a {expected}-byte chunk",
                bytes.len()
            )));
        }
        let first = c * CHUNK / crate::blob::PIECE;
        let pieces = bytes.len().div_ceil(crate::blob::PIECE as usize).max(1) as u64;
        let values = self.piece_values(blob, first, pieces, peer)?;
        self.stats
            .verify_pieces
            .fetch_add(pieces, Ordering::Relaxed);
        if values
            .verify_part(&hash, size, first, first, bytes)
            .is_some()
        {
            return Err(self.failed_verification(hash, peer));
        }
        File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.cache.path(&hash))?
            .write_all_at(bytes, c * CHUNK)?;
        self.stats
            .fetch_bytes
            .fetch_add(expected, Ordering::Relaxed);
        let cached = self.chunk_stored(hash, size, c)?;
        // The chunk is stored: a failure to make room is logged, not
        // passed to the reader.
        if let Err(e) = self.cache_grew(expected) {
            tracing::warn!("keeping the cache within its bound: {e}");
        }
        if cached.verified {
            self.cache.fetches.ended(&hash);
            self.stats.fetch_blobs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache
                .fetches
                .progressed(hash, expected, cached.bytes(), peer);
        }
        Ok(())
    }

    /// Marks chunk `c` of blob `hash` present (verified bytes in the cache
    /// file), and the blob verified when it was the last.
    pub(super) fn chunk_stored(&self, hash: [u8; 32], size: u64, c: u64) -> Result<Cached> {
        let mut wtxn = self.store.write()?;
        let mut cached = self
            .store
            .cache
            .get(&wtxn, &hash)?
            .unwrap_or_else(|| Cached::new(size));
        cached.set(c);
        cached.last_read = Timestamp::now();
        cached.verified = cached.complete();
        self.store.cache.put(&mut wtxn, &hash, &cached)?;
        wtxn.commit()?;
        Ok(cached)
    }

    /// How much of blob `hash` the cache holds: (bytes, verified).
    pub(crate) fn cached_state(
        &self,
        txn: &crate::store::RoTxn,
        hash: &[u8; 32],
    ) -> Result<(u64, u64, bool)> {
        Ok(match self.store.cache.get(txn, hash)? {
            Some(c) => (c.bytes(), c.size, c.verified),
            None => (0, 0, false),
        })
    }

    /// Marks every chunk of `blob` as on its way, when none is and `may`
    /// (checked under the same lock) says so: fetches of them then wait
    /// for [`Fs::release_chunks`] instead of writing to the cache file
    /// (a delta edit swapping the file underneath). The chunks reserved.
    pub(super) fn reserve_chunks(
        &self,
        blob: &BlobRef,
        may: impl FnOnce() -> bool,
    ) -> Option<Vec<u64>> {
        self.cache
            .chunks
            .reserve(blob.hash, blob.size.div_ceil(CHUNK), may)
    }

    /// Ends a reservation of [`Fs::reserve_chunks`]: chunks now in the
    /// cache wake their readers, the others are fetched again by them.
    pub(super) fn release_chunks(&self, hash: [u8; 32], chunks: &[u64], why: Option<&Error>) {
        for &c in chunks {
            let stored = self.has_chunk(&hash, c).unwrap_or(false);
            let outcome = match (stored, why) {
                (true, _) => Ok(()),
                (false, Some(e)) => Err(failure(e)),
                (false, None) => Err(Failure::unreachable("the delta edit did not fill it")),
            };
            self.settle_chunk(hash, c, outcome);
        }
    }

    /// The blobs being fetched.
    pub fn transfers(&self) -> Vec<([u8; 32], Transfer)> {
        self.cache.fetches.transfers()
    }
}
