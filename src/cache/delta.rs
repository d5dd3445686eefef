//! Delta edits (DESIGN.md "Sync"): a blob that a peer's edit made from a
//! blob this peer has is built from it. The two outboards say which pieces
//! are equal ([`crate::blob`]: a piece's chaining value depends on its
//! bytes and its place, so equal values mean equal bytes); those are
//! taken from the base, only the others are fetched, each verified.
//!
//! The base is the blob the edited path showed here before the pull that
//! brought the edit, kept in the cache by that pull
//! ([`crate::sync::remote::Pull`]). When no open file reads the base, its cache
//! file becomes the new blob's (renamed, then patched in place), so a
//! small edit of a large file costs neither a copy nor a hash of it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::fetch::BlobRef;
use super::{Cache, Result};
use crate::blob::{Outboard, PIECE};
use crate::ids::BlobHash;
use crate::store::cache::CHUNK;

/// Largest run of differing pieces fetched in one request.
const RUN: u64 = CHUNK;

impl Cache {
    /// Notes that blob `new` was edited from `base`, which this peer has in
    /// its cache.
    pub(crate) fn note_base(&self, new: BlobHash, base: BlobHash) {
        self.fetches.note_base(new, base);
    }

    /// Fills the cache file of `blob` from its base when there is one:
    /// chunks whose pieces all equal the base's are marked present,
    /// differing pieces are fetched and verified. Does nothing (and the
    /// chunks are fetched whole) when the base is gone or not verified.
    pub(crate) fn build_from_base(&self, blob: &BlobRef) -> Result<()> {
        let Some(base) = self.fetches.base_of(&blob.hash) else {
            return Ok(());
        };
        if blob.size <= PIECE {
            self.fetches.forget_base(&blob.hash);
            return Ok(());
        }
        // The base stays while it is read from; its file can become the
        // new blob's only when no open file reads it.
        let alone = self.pin_alone(base);
        let result = self.patch_base(blob, base, alone);
        self.closed(base);
        self.fetches.forget_base(&blob.hash);
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
        let adopted = match alone && !started {
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
        let file = File::options()
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
}
