//! Fetching a blob's chunks from its holders into the cache file
//! (DESIGN.md "Waiting on peers"): each chunk ([`CHUNK`], 4 MiB) is
//! asked of the blob's holders in turn, verified piece by piece against
//! the blob's outboard ([`super::verify`]) and written at its offset of
//! the sparse cache file; its waiters ([`super::chunks`]) are then woken.
//! A chunk that does not verify is dropped, counted in
//! `verify.failures`, and fetched again from another holder; a holder
//! slower than the hedge delay (`net::blobs::HEDGE`) is passed over.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::chunks::{Failure, Outcome, Waiter};
use super::fetches::Transfer;
use super::{Cache, Error, Result};
use crate::ids::{BlobHash, PeerId};
use crate::net::protocol::BlobRange;
use crate::net::{Command, Fetch, FetchOutcome};
use crate::store::Ino;
use crate::store::cache::{CHUNK, Cached};
use crate::store::namespace::Timestamp;

/// Chunks fetched ahead of a sequential reader.
pub const READAHEAD: u64 = 8;

/// How long a read waits before it asks again for a chunk whose fetch
/// failed (no holder connected, or all refused).
pub(crate) const RETRY: Duration = Duration::from_millis(200);

/// The failure `e` as the readers of a chunk see it.
pub(crate) fn failure(e: &Error) -> Failure {
    let no_space = match e {
        Error::NoSpace(_) => true,
        Error::Io(io) => matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)),
        _ => false,
    };
    Failure {
        corrupt: matches!(e, Error::Corrupt(_)),
        no_space,
        why: e.to_string(),
    }
}

/// The error a reader gets after `failure`: ENOSPC at once for a full
/// disk; when its deadline passes, EIO for bytes that did not verify,
/// EHOSTUNREACH otherwise.
pub(crate) fn error(failure: &Failure) -> Error {
    if failure.no_space {
        return Error::NoSpace(failure.why.clone());
    }
    match failure.corrupt {
        true => Error::Corrupt(failure.why.clone()),
        false => Error::Unreachable(failure.why.clone()),
    }
}

/// A blob as an unreal file shows it: what a fetch needs. Holders serve
/// bytes only through a path of an area shared with the asking peer, so
/// a fetch names both the blob and where it is shown.
#[derive(Clone, Debug)]
pub struct BlobRef {
    /// The blob's BLAKE3 hash.
    pub hash: BlobHash,
    /// Its size in bytes.
    pub size: u64,
    /// The area's inode on this peer (for the holders recorded there).
    pub area: Ino,
    /// The area's name, as peers know it.
    pub area_name: Vec<u8>,
    /// The path inside the area (`/`-separated, no leading `/`).
    pub path: Vec<u8>,
}

impl Cache {
    /// Fetches every chunk of `blob` that the cache lacks, reading ahead,
    /// each waited for at most `net.timeout`.
    pub(crate) fn fetch_whole(&self, blob: &BlobRef) -> Result<()> {
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

    /// `config net.timeout` (30 s when it cannot be read): how long a read
    /// or a request waits for a peer.
    pub(crate) fn net_timeout(&self) -> Duration {
        self.store.duration_or(
            crate::store::config::Key::NetTimeout,
            Duration::from_secs(30),
        )
    }

    pub(crate) fn has_chunk(&self, hash: &BlobHash, c: u64) -> Result<bool> {
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
                    if now >= deadline || failure.no_space {
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
    pub(crate) fn start_chunk(&self, uf: &BlobRef, c: u64) -> Result<Option<Arc<Waiter>>> {
        if self.has_chunk(&uf.hash, c)? {
            return Ok(None);
        }
        // Stored between the check above and the waiters' lock: done.
        let absent = || !self.has_chunk(&uf.hash, c).unwrap_or(false);
        let waiter = match self.chunks.waiter((uf.hash, c), absent) {
            None => return Ok(None),
            Some((waiter, false)) => return Ok(Some(waiter)),
            Some((waiter, true)) => waiter,
        };
        self.fetches.started(uf.hash, || Transfer {
            area: uf.area_name.clone(),
            path: uf.path.clone(),
            done: 0,
            total: uf.size,
            fetched: 0,
            started: Instant::now(),
            peer: None,
        });
        if !self.start_delta_chunk(uf, c)? {
            self.ask_holders(uf, c)?;
        }
        Ok(Some(waiter))
    }

    /// Asks the holders of `uf`'s blob for chunk `c`, whose waiter this
    /// caller made: it is stored and settled when it arrives.
    pub(crate) fn ask_holders(&self, uf: &BlobRef, c: u64) -> Result<()> {
        let holders = match self.holders_to_ask(uf, c) {
            Ok(holders) => holders,
            Err(e) => {
                self.settle_chunk(uf.hash, c, Err(failure(&e)));
                return Err(e);
            }
        };
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
        Ok(())
    }

    /// The peers to ask for chunk `c` of `uf`'s blob: its holders, taken
    /// in turn by chunk so that several holders send at once, then every
    /// other peer the area is shared with; peers in trouble go last.
    pub(crate) fn holders_to_ask(&self, uf: &BlobRef, c: u64) -> Result<Vec<PeerId>> {
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
            for peer in area.shares {
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
            }
        }
        // Stable: the order above stays among the good and the troubled.
        peers.sort_by_key(|p| self.fetches.troubled(p));
        Ok(peers)
    }

    /// Stores a chunk that arrived (on the blocking pool) and wakes its
    /// readers; holders that failed or were slow are asked last for a
    /// while.
    fn chunk_arrived(&self, blob: &BlobRef, c: u64, outcome: FetchOutcome) {
        for peer in outcome.passed_over {
            self.fetches.in_trouble(peer);
        }
        let outcome = match outcome.result {
            Ok((peer, bytes)) => self
                .store_chunk(blob, c, peer, &bytes)
                .map_err(|e| failure(&e)),
            Err(e) => Err(Failure::unreachable(e.to_string())),
        };
        self.settle_chunk(blob.hash, c, outcome);
    }

    pub(crate) fn settle_chunk(&self, hash: BlobHash, c: u64, outcome: Outcome) {
        if outcome.is_err() {
            // A read that still needs the blob starts a new transfer.
            self.fetches.ended(&hash);
        }
        self.chunks.settle((hash, c), outcome);
    }

    /// Verifies chunk `c` of `blob` that `peer` sent, piece by piece,
    /// and writes it to the cache file; the blob is verified once every
    /// chunk is in.
    fn store_chunk(&self, blob: &BlobRef, c: u64, peer: PeerId, bytes: &[u8]) -> Result<()> {
        let (hash, size) = (blob.hash, blob.size);
        let expected = CHUNK.min(size - c * CHUNK);
        if bytes.len() as u64 != expected {
            self.fetches.in_trouble(peer);
            return Err(Error::Unreachable(format!(
                "{peer} sent {} bytes of a {expected}-byte chunk",
                bytes.len()
            )));
        }
        let first = c * CHUNK / crate::blob::PIECE;
        let pieces = bytes.len().div_ceil(crate::blob::PIECE as usize).max(1) as u64;
        let values = self.piece_values(blob, first, pieces, Some(peer))?;
        self.stats
            .verify_pieces
            .fetch_add(pieces, Ordering::Relaxed);
        if values
            .verify_part(&hash, size, first, first, bytes)
            .is_some()
        {
            return Err(self.failed_verification(hash, peer));
        }
        self.stats
            .fetch_bytes
            .fetch_add(expected, Ordering::Relaxed);
        self.write_chunk(blob, c, peer, bytes)
    }

    /// Writes the verified bytes of chunk `c` of `blob` (the last of them
    /// sent by `peer`) to its cache file, marks the chunk present, keeps
    /// the cache within its bound and shows the transfer's progress.
    pub(crate) fn write_chunk(
        &self,
        blob: &BlobRef,
        c: u64,
        peer: PeerId,
        bytes: &[u8],
    ) -> Result<()> {
        let (hash, size, len) = (blob.hash, blob.size, bytes.len() as u64);
        crate::private::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(&hash))?
            .write_all_at(bytes, c * CHUNK)?;
        let cached = self.chunk_stored(hash, size, c)?;
        // The chunk is stored: a failure to make room is logged, not
        // passed to the reader.
        if let Err(e) = self.cache_grew(len) {
            tracing::warn!("keeping the cache within its bound: {e}");
        }
        if cached.verified {
            self.fetches.ended(&hash);
            self.stats.fetch_blobs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.fetches.progressed(hash, len, cached.bytes(), peer);
        }
        Ok(())
    }

    /// Marks chunk `c` of blob `hash` present (verified bytes in the cache
    /// file), and the blob verified when it was the last.
    pub(crate) fn chunk_stored(&self, hash: BlobHash, size: u64, c: u64) -> Result<Cached> {
        // Chunks of many blobs arrive at once (prefetches, two holders):
        // their records share a commit, and its flush.
        Ok(self.store.write_grouped(move |store, wtxn| {
            let mut cached = store
                .cache
                .get(wtxn, &hash)?
                .unwrap_or_else(|| Cached::new(size));
            cached.set(c);
            cached.last_read = Timestamp::now();
            cached.verified = cached.complete();
            store.cache.put(wtxn, &hash, &cached)?;
            if cached.verified {
                store.cache.remove_base(wtxn, &hash)?;
            }
            Ok(cached)
        })?)
    }

    /// How much of blob `hash` the cache holds: (bytes, verified).
    pub(crate) fn cached_state(
        &self,
        txn: &crate::store::RoTxn,
        hash: &BlobHash,
    ) -> Result<(u64, u64, bool)> {
        Ok(match self.store.cache.get(txn, hash)? {
            Some(c) => (c.bytes(), c.size, c.verified),
            None => (0, 0, false),
        })
    }

    /// Marks every chunk of `blob` as on its way, when none is and `may`
    /// (checked under the same lock) says so: fetches of them then wait
    /// for [`Cache::release_chunks`] instead of writing to the cache file
    /// (a delta edit swapping the file underneath). The chunks reserved.
    pub(crate) fn reserve_chunks(
        &self,
        blob: &BlobRef,
        may: impl FnOnce() -> bool,
    ) -> Option<Vec<u64>> {
        self.chunks
            .reserve(blob.hash, blob.size.div_ceil(CHUNK), may)
    }

    /// Ends a reservation of [`Cache::reserve_chunks`]: chunks now in the
    /// cache wake their readers, the others are fetched again by them.
    pub(crate) fn release_chunks(&self, hash: BlobHash, chunks: &[u64], why: Option<&Error>) {
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
    pub fn transfers(&self) -> Vec<(BlobHash, Transfer)> {
        self.fetches.transfers()
    }
}
