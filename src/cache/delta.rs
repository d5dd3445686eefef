//! Delta edits (DESIGN.md "Sync"): a blob that a peer's edit made from a
//! blob this peer has is built from it. The two outboards say which pieces
//! are equal ([`crate::blob`]: a piece's chaining value depends on its
//! bytes and its place, so equal values mean equal bytes); those are
//! taken from the base, only the others are fetched, each verified.
//!
//! The base is the blob the edited path showed here before the pull that
//! brought the edit, kept in the cache by that pull
//! ([`crate::sync::remote::Pull`]); the link is kept in LMDB (database
//! `bases`, [`crate::store::cache`]) until the new blob is whole, so it
//! outlives a restart. Both ways of filling a blob use it:
//!
//! - a whole fetch (realize, copy-up, `fetch NAME`): when no open file
//!   reads the base, its cache file becomes the new blob's (renamed, then
//!   patched in place), so a small edit of a large file costs neither a
//!   copy nor a hash of it; otherwise the base's bytes are copied;
//! - a chunk a read needs ([`Cache::start_chunk`]): when the base has that
//!   chunk, it is assembled from the base's equal pieces and the differing
//!   ones fetched, verified whole, and stored like a fetched chunk, on a
//!   thread of its own (never a FUSE worker). A failure falls back to
//!   asking the holders for the whole chunk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::fetch::BlobRef;
use super::{Cache, Result};
use crate::blob::{Outboard, PIECE};
use crate::ids::{BlobHash, PeerId};
use crate::store::cache::{CHUNK, Cached};

/// Largest run of differing pieces fetched in one request.
const RUN: u64 = CHUNK;

impl Cache {
    /// Notes (in LMDB) that blob `new` was edited from `base`, which this
    /// peer has in its cache.
    pub(crate) fn note_base(&self, new: BlobHash, base: BlobHash) -> Result<()> {
        if new == base {
            return Ok(());
        }
        let mut wtxn = self.store.write()?;
        self.store.cache.put_base(&mut wtxn, &new, &base)?;
        wtxn.commit()?;
        Ok(())
    }

    /// The base blob `new` can be built from: noted, and with a record in
    /// the cache.
    pub(crate) fn base_of(&self, new: &BlobHash) -> Result<Option<(BlobHash, Cached)>> {
        let txn = self.store.read()?;
        let Some(base) = self.store.cache.base(&txn, new)? else {
            return Ok(None);
        };
        Ok(self.store.cache.get(&txn, &base)?.map(|c| (base, c)))
    }

    /// Forgets the base of blob `new` (whole, or too small to share pieces).
    fn forget_base(&self, new: &BlobHash) -> Result<()> {
        let mut wtxn = self.store.write()?;
        self.store.cache.remove_base(&mut wtxn, new)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Fills the cache file of `blob` from its base when there is one:
    /// chunks whose pieces all equal the base's are marked present,
    /// differing pieces are fetched and verified. Does nothing (and the
    /// chunks are fetched whole) when the base is gone or not verified.
    pub(crate) fn build_from_base(&self, blob: &BlobRef) -> Result<()> {
        let Some((base, _)) = self.base_of(&blob.hash)? else {
            return Ok(());
        };
        if blob.size <= PIECE {
            return self.forget_base(&blob.hash);
        }
        // The base stays while it is read from; its file can become the
        // new blob's only when no open file reads it.
        let alone = self.pin_alone(base);
        let result = self.patch_base(blob, base, alone);
        self.closed(base);
        result
    }

    fn patch_base(&self, blob: &BlobRef, base: BlobHash, alone: bool) -> Result<()> {
        let txn = self.store.read()?;
        let Some(based) = self.store.cache.get(&txn, &base)?.filter(|c| c.verified) else {
            return Ok(());
        };
        let started = self.store.cache.get(&txn, &blob.hash)?.is_some();
        drop(txn);
        let base_path = self.path(&base);
        let Some(old) = self.local_outboard(base, based.size, &File::open(&base_path)?)? else {
            return Ok(());
        };
        let new = self.outboard_for(blob, None)?;
        // Adopt the base's file unless someone reads it or the new blob's
        // file is already being filled (only the caller has it open, no
        // chunk of it is on its way). The check, the reservation of the
        // new blob's chunks (no fetch writes into the file while it is
        // patched) and the swap happen with no handle opening meanwhile.
        let target = self.path(&blob.hash);
        // A base another file still shows (or a kept version names) stays
        // whole: its bytes may be the only copy there is.
        let adopt = alone && !started && !self.still_wanted(&base)?;
        let adopted = match adopt {
            false => None,
            true => self.with_open(|open| -> Result<Option<Vec<u64>>> {
                let untouched =
                    super::count(open, &blob.hash) <= 1 && super::count(open, &base) <= 1 && {
                        let txn = self.store.read()?;
                        self.store.cache.get(&txn, &blob.hash)?.is_none()
                    };
                let Some(chunks) = self.reserve_chunks(blob, || untouched) else {
                    return Ok(None);
                };
                // Not renamed over the empty placeholder: ext4 would flush
                // the whole base first (its replace-by-rename heuristic).
                let swapped = (|| -> Result<()> {
                    std::fs::remove_file(&target).or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })?;
                    let mut wtxn = self.store.write()?;
                    self.store.cache.remove(&mut wtxn, &base)?;
                    std::fs::rename(&base_path, &target)?;
                    wtxn.commit()?;
                    Ok(())
                })();
                if let Err(e) = swapped {
                    self.release_chunks(blob.hash, &chunks, Some(&e));
                    return Err(e);
                }
                Ok(Some(chunks))
            })?,
        };
        if adopted.is_some() {
            self.shrank(based.bytes());
        }
        let from = match adopted {
            Some(_) => None,
            None => Some(File::open(&base_path)?),
        };
        let result = self.patch_into(blob, &old, &new, from.as_ref());
        if let Some(chunks) = &adopted {
            self.release_chunks(blob.hash, chunks, result.as_ref().err());
        }
        result
    }

    /// Patches the cache file of `blob`: pieces equal in `old` (the base's
    /// outboard) and `new` are copied from `from` (or are in place already
    /// when the base's file was adopted), the others are fetched.
    fn patch_into(
        &self,
        blob: &BlobRef,
        old: &Outboard,
        new: &Outboard,
        from: Option<&File>,
    ) -> Result<()> {
        let target = self.path(&blob.hash);
        let file = crate::private::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)?;
        file.set_len(blob.size)?;
        for c in 0..blob.size.div_ceil(CHUNK) {
            self.patch_chunk(blob, old, new, c, &file, from)?;
        }
        Ok(())
    }

    /// Makes chunk `c` of `blob`'s cache file `file` whole: pieces equal
    /// in `old` (the base's outboard) stay (or are copied from `from`),
    /// runs of other pieces are fetched and verified.
    fn patch_chunk(
        &self,
        blob: &BlobRef,
        old: &Outboard,
        new: &Outboard,
        c: u64,
        file: &File,
        from: Option<&File>,
    ) -> Result<()> {
        if self.has_chunk(&blob.hash, c)? {
            return Ok(());
        }
        let first = c * CHUNK / PIECE;
        let end = ((c + 1) * CHUNK).min(blob.size).div_ceil(PIECE);
        let same = |i: u64| old.pieces.get(i as usize) == new.pieces.get(i as usize);
        let mut i = first;
        while i < end {
            let run_end = (i..end).find(|&j| same(j) != same(i)).unwrap_or(end);
            let (offset, stop) = (i * PIECE, (run_end * PIECE).min(blob.size));
            if same(i) {
                if let Some(from) = from {
                    let mut bytes = vec![0; (stop - offset) as usize];
                    from.read_exact_at(&mut bytes, offset)?;
                    file.write_all_at(&bytes, offset)?;
                }
                self.stats
                    .fetch_reused
                    .fetch_add(stop - offset, Ordering::Relaxed);
            } else {
                let mut at = offset;
                while at < stop {
                    let len = (stop - at).min(RUN);
                    let (peer, bytes) = self.fetch_range(blob, at, len, false, None)?;
                    let pieces = (bytes.len() as u64).div_ceil(PIECE);
                    self.stats
                        .verify_pieces
                        .fetch_add(pieces, Ordering::Relaxed);
                    if bytes.len() as u64 != len
                        || new
                            .verify_span(&blob.hash, blob.size, at / PIECE, &bytes)
                            .is_some()
                    {
                        return Err(self.failed_verification(blob.hash, peer));
                    }
                    file.write_all_at(&bytes, at)?;
                    self.stats.fetch_bytes.fetch_add(len, Ordering::Relaxed);
                    at += len;
                }
            }
            i = run_end;
        }
        let cached = self.chunk_stored(blob.hash, blob.size, c)?;
        if cached.verified {
            self.stats.fetch_blobs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Starts building chunk `c` of `blob`, whose waiter this caller made,
    /// from its base on a thread of its own, when the base has that chunk
    /// in the cache; whether it started (otherwise the caller asks the
    /// holders).
    pub(crate) fn start_delta_chunk(&self, blob: &BlobRef, c: u64) -> Result<bool> {
        if blob.size <= PIECE {
            return Ok(false);
        }
        let Some((base, based)) = self.base_of(&blob.hash)? else {
            return Ok(false);
        };
        let Some(cache) = self.me.upgrade() else {
            return Ok(false);
        };
        if !based.has(c) {
            return Ok(false);
        }
        let owned = blob.clone();
        let spawned = std::thread::Builder::new()
            .name("delta".into())
            .spawn(move || {
                let built = cache.delta_chunk(&owned, base, &based, c);
                match built {
                    Ok(Some(())) => cache.settle_chunk(owned.hash, c, Ok(())),
                    Ok(None) => {
                        let _ = cache.ask_holders(&owned, c);
                    }
                    Err(e) => {
                        tracing::info!("building a chunk from its base: {e}; fetching it whole");
                        let _ = cache.ask_holders(&owned, c);
                    }
                }
            });
        Ok(spawned.is_ok())
    }

    /// Chunk `c` of `blob` built from the same chunk of `base` (whose
    /// record is `based`): equal pieces read from the base's cache file,
    /// the others fetched, the whole verified against `blob`'s outboard
    /// and stored. `None` when the base cannot help (no equal piece, its
    /// outboard unknown, its file gone or damaged).
    fn delta_chunk(
        &self,
        blob: &BlobRef,
        base: BlobHash,
        based: &Cached,
        c: u64,
    ) -> Result<Option<()>> {
        let first = c * CHUNK / PIECE;
        let end = ((c + 1) * CHUNK).min(blob.size).div_ceil(PIECE);
        let Some(old) = self.base_pieces(base, based, first, end)? else {
            return Ok(None);
        };
        let new = self.piece_values(blob, first, end - first, None)?;
        let same = |i: u64| {
            let k = (i - first) as usize;
            old.pieces.get(k).is_some() && old.pieces.get(k) == new.pieces.get(k)
        };
        if !(first..end).any(same) {
            return Ok(None);
        }
        // Pinned: no eviction, realize or adoption takes the base's file
        // while its pieces are read.
        self.opened(base);
        let built = self.assemble(blob, base, c, (first, end), &same);
        self.closed(base);
        let Some((bytes, peer, reused)) = built? else {
            return Ok(None);
        };
        let pieces = (end - first).max(1);
        self.stats
            .verify_pieces
            .fetch_add(pieces, Ordering::Relaxed);
        if let Some(piece) = new.verify_part(&blob.hash, blob.size, first, first, &bytes) {
            if same(piece) {
                // The base's bytes did not match: its cache file is damaged.
                self.cache_damaged(base, piece)?;
                return Ok(None);
            }
            return Err(self.failed_verification(blob.hash, peer));
        }
        self.stats.fetch_reused.fetch_add(reused, Ordering::Relaxed);
        self.write_chunk(blob, c, peer, &bytes)?;
        Ok(Some(()))
    }

    /// Chaining values `first..end` of `base`'s outboard, as far as the
    /// base reaches (fewer when it is shorter), computed from its file
    /// when whole and unknown; `None` when not known.
    fn base_pieces(
        &self,
        base: BlobHash,
        based: &Cached,
        first: u64,
        end: u64,
    ) -> Result<Option<Outboard>> {
        if based.size <= PIECE {
            return Ok(None);
        }
        let end = end.min(based.size.div_ceil(PIECE));
        if end <= first {
            return Ok(None);
        }
        let txn = self.store.read()?;
        if let Some(part) = self
            .store
            .outboards
            .pieces(&txn, &base, first, end - first)?
        {
            return Ok(Some(part));
        }
        drop(txn);
        if !based.verified {
            return Ok(None);
        }
        let Ok(file) = File::open(self.path(&base)) else {
            return Ok(None);
        };
        Ok(self
            .local_outboard(base, based.size, &file)?
            .map(|o| Outboard {
                pieces: o
                    .pieces
                    .get(first as usize..end as usize)
                    .unwrap_or_default()
                    .to_vec(),
            }))
    }

    /// The bytes of chunk `c` of `blob` (pieces `first..end`): pieces
    /// where `same` read from `base`'s cache file, runs of the others
    /// fetched. With the peer that sent the last bytes (this peer when
    /// none) and the bytes reused; `None` when the base's file is gone.
    fn assemble(
        &self,
        blob: &BlobRef,
        base: BlobHash,
        c: u64,
        (first, end): (u64, u64),
        same: &dyn Fn(u64) -> bool,
    ) -> Result<Option<(Vec<u8>, PeerId, u64)>> {
        let Ok(from) = File::open(self.path(&base)) else {
            return Ok(None);
        };
        let start = c * CHUNK;
        let mut bytes = vec![0; (CHUNK.min(blob.size - start)) as usize];
        let (mut peer, mut reused) = (self.peer_id, 0);
        let mut i = first;
        while i < end {
            let run_end = (i..end).find(|&j| same(j) != same(i)).unwrap_or(end);
            let (offset, stop) = (i * PIECE, (run_end * PIECE).min(blob.size));
            let span = (offset - start) as usize..(stop - start) as usize;
            if same(i) {
                from.read_exact_at(&mut bytes[span], offset)?;
                reused += stop - offset;
            } else {
                let (sender, got) = self.fetch_range(blob, offset, stop - offset, false, None)?;
                if got.len() != span.len() {
                    return Err(self.failed_verification(blob.hash, sender));
                }
                bytes[span].copy_from_slice(&got);
                self.stats
                    .fetch_bytes
                    .fetch_add(stop - offset, Ordering::Relaxed);
                peer = sender;
            }
            i = run_end;
        }
        Ok(Some((bytes, peer, reused)))
    }
}
