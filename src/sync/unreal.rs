//! Unreal files: opening them from the blob cache, prefetching the small
//! files that follow one in its directory, and copy-up (making one real
//! before a write).
//!
//! An unreal file's bytes live in a sparse cache file `DATA/cache/HASH`,
//! filled chunk by chunk from the peers that hold the blob
//! ([`crate::cache::fetch`]); an open unreal file pins its blob there.
//! Reads of it are the dispatcher's (`fs/reads.rs`).

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{Error, Result, Tree, lock, wait};
use crate::cache::BlobRef;
use crate::ids::BlobHash;
use crate::store::Ino;
use crate::store::cache::CHUNK;

pub use crate::cache::fetches::Transfer;

/// What copy-ups and unrealizes have in hand.
#[derive(Default)]
pub(crate) struct Unreal {
    /// Inodes being copied up (see [`Tree::copy_up`]).
    copying: (Mutex<HashSet<Ino>>, Condvar),
    /// Blobs this peer is dropping from its Real (see [`Tree::keeps`]).
    pub(crate) dropping: Mutex<HashSet<BlobHash>>,
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

/// Unreal files of at most this size after the one opened in its
/// directory are fetched with it, so that reading a directory of small
/// files waits for the network once per batch rather than once per file.
pub const PREFETCH_FILES: usize = 32;

/// Keeps a blob pinned in the cache while it lives.
struct Pin {
    fs: std::sync::Weak<Tree>,
    hash: BlobHash,
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
pub(crate) struct UnrealFile {
    /// The inode: it may become real while open (see [`Tree::read_realized`]).
    pub(crate) ino: Ino,
    pub(crate) blob: BlobRef,
    pub(crate) file: File,
    _pin: Pin,
    /// Where the last read ended: a read starting there is sequential.
    pub(crate) next: AtomicU64,
}

impl Tree {
    /// Opens unreal file `ino` for reading from the cache.
    pub(crate) fn open_unreal(&self, ino: Ino) -> Result<UnrealFile> {
        let txn = self.store.read()?;
        let inode = self.inode(&txn, ino)?;
        let hash = inode.hash.ok_or_else(Error::not_found)?;
        let path = self.area_path(&txn, ino)?;
        let area_name = self.inode(&txn, inode.area)?.name;
        // No peer noted as holding the blob here, and not in the cache:
        // this peer may hold it real at another path (a realize took the
        // cache file another unreal file of the blob read from). Copied
        // into the cache from there; a scan of the area's records, only
        // in this case.
        let orphan = !self.store.cache.verified(&txn, &hash)?
            && self
                .store
                .versions
                .get(&txn, inode.area, &path)?
                .is_none_or(|r| r.holders_of(hash).all(|p| p == self.peer_id));
        drop(txn);
        if orphan {
            let wanted = std::collections::HashMap::from([(hash, vec![(inode.area, ino)])]);
            if let Err(e) = self.cache_held_elsewhere(wanted) {
                tracing::warn!("looking for a real copy of an unreal file's blob here: {e}");
            }
        }
        let blob = BlobRef {
            hash,
            size: inode.size,
            area: inode.area,
            area_name,
            path,
        };
        self.open_blob(ino, blob)
    }

    /// Opens `blob` for reading from the cache, as unreal file `ino`
    /// shows it (`Ino::NONE` for a version no inode shows: `/.ctl/dump`).
    pub(crate) fn open_blob(&self, ino: Ino, blob: BlobRef) -> Result<UnrealFile> {
        let hash = blob.hash;
        let txn = self.store.read()?;
        let known = self.store.cache.get(&txn, &hash)?.is_some();
        drop(txn);
        // Counted open first: a delta edit adopts its base's file for the
        // blob only while nothing has the blob open.
        self.cache.opened(hash);
        let pin = Pin {
            fs: self.me.clone(),
            hash,
        };
        let file = crate::private::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.cache.path(&hash))?;
        // Sparse: chunks land at their offsets as they come. A file shorter
        // than its record says (dropped or cut by a power loss) loses the
        // record's claims past its end first: those chunks are fetched
        // again, not read as the zeros the new length shows.
        let len = file.metadata()?.len();
        if len < blob.size {
            if known {
                self.cache.cache_cut(hash, len)?;
            }
            file.set_len(blob.size)?;
        }
        Ok(UnrealFile {
            ino,
            _pin: pin,
            blob,
            file,
            next: AtomicU64::new(0),
        })
    }

    /// Starts fetching the small unreal files that follow entry `name` of
    /// directory `parent` (see [`PREFETCH_FILES`]); failures are left to
    /// the reads that will need them.
    pub(crate) fn prefetch_after(&self, parent: Ino, name: &[u8]) -> Result<()> {
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
            self.cache.start_chunk(&blob, 0)?;
        }
        Ok(())
    }

    /// Makes unreal file `ino` real (copy-up before a write, and a realize
    /// by mode): makes room, fetches it whole and moves it into the Real
    /// ([`Tree::realize_cached`]). The recorded hash stays, so a write that
    /// follows is recorded as an edit based on it. One copy-up of an inode
    /// at a time: a second one (a writer while the life thread realizes
    /// it) waits for the first and finds the file real.
    pub(crate) fn copy_up(&self, ino: Ino) -> Result<()> {
        let _turn = CopyTurn::take(&self.unreal.copying, ino);
        {
            let txn = self.store.read()?;
            if !self.inode(&txn, ino)?.unreal {
                return Ok(());
            }
        }
        let uf = self.open_unreal(ino)?;
        // The blob may leave the cache before it is taken (another file of
        // the same blob realized with it): fetched again, a few times.
        for _ in 0..3 {
            let txn = self.store.read()?;
            let (have, _, _) = self.cache.cached_state(&txn, &uf.blob.hash)?;
            drop(txn);
            self.make_room(uf.blob.size.saturating_sub(have))?;
            self.cache.fetch_whole(&uf.blob)?;
            if self.realize_cached(ino, &uf.blob)? {
                return Ok(());
            }
        }
        Err(Error::Unreachable(
            "the blob kept leaving the cache before it could be realized".into(),
        ))
    }

    /// Brings unreal file `ino` whole into the cache (`fetch NAME`).
    pub(crate) fn fetch_into_cache(&self, ino: Ino) -> Result<()> {
        let uf = self.open_unreal(ino)?;
        Ok(self.cache.fetch_whole(&uf.blob)?)
    }
}
