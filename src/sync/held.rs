//! What this peer serves (DESIGN.md "Sync"): the bytes and outboards of
//! blobs it holds, real or verified in the cache, and whether it keeps a
//! blob a peer is about to drop. Bytes from the cache are verified first
//! ([`crate::cache::verify`]); real files are the user's files and are
//! read as they are (the peer that receives them verifies them).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{Result, Tree, lock};
use crate::ids::BlobHash;
use crate::store::Ino;
use crate::store::namespace::Kind;

impl Tree {
    /// The file that holds blob `hash`, shown at `path` of `area`: the
    /// real file there (its recorded content, no write pending), or the
    /// blob's verified copy in the cache when the file there is unreal
    /// (`true`), or when a kept version of `path` has that blob.
    /// Nothing otherwise: a peer gets bytes only through a path of an area
    /// shared with it. Opened for reading.
    fn held_file(&self, area: Ino, path: &[u8], hash: BlobHash) -> Result<Option<(File, bool)>> {
        let txn = self.store.read()?;
        let inode = match self.ino_at(&txn, area, path)? {
            Some(ino) => Some((ino, self.inode(&txn, ino)?)),
            None => None,
        };
        let Some((ino, inode)) =
            inode.filter(|(_, i)| i.kind == Kind::File && i.hash == Some(hash))
        else {
            let kept = self.kept_version(&txn, area, path, hash).is_ok();
            let cached = self.store.cache.verified(&txn, &hash)?;
            return Ok(match kept && cached {
                true => Some((File::open(self.cache.path(&hash))?, true)),
                false => None,
            });
        };
        if !inode.unreal {
            if self.recorder.is_pending(ino) {
                return Ok(None);
            }
            let path = self.real_path(&txn, ino)?;
            let file = self.real.open_file(&path, crate::real::Open::read())?;
            return Ok(Some((file, false)));
        }
        let verified = self.store.cache.verified(&txn, &hash)?;
        if verified {
            return Ok(Some((File::open(self.cache.path(&hash))?, true)));
        }
        Ok(None)
    }

    /// Up to `len` bytes at `offset` of blob `hash` held at `path` of
    /// `area` (see [`Tree::held_file`]), for a peer. Bytes from the cache
    /// are verified first; a damaged cache file is dropped and nothing is
    /// sent (`None`, as when the blob is not held here).
    pub fn read_held(
        &self,
        area: Ino,
        path: &[u8],
        hash: BlobHash,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some((file, cached)) = self.held_file(area, path, hash)? else {
            return Ok(None);
        };
        let size = file.metadata()?.len();
        let len = len.min(size.saturating_sub(offset));
        if !cached {
            let mut bytes = vec![0; len as usize];
            file.read_exact_at(&mut bytes, offset)?;
            return Ok(Some(bytes));
        }
        let mut bytes = vec![0; len as usize];
        match self
            .cache
            .read_verified(&file, hash, size, offset, &mut bytes)?
        {
            Ok(()) => Ok(Some(bytes)),
            Err(piece) => {
                self.cache.cache_damaged(hash, piece)?;
                Ok(None)
            }
        }
    }

    /// Bytes `offset..offset + len` of the outboard of blob `hash` held
    /// at `path` of `area`, for a peer (cut at its end): read from LMDB,
    /// the outboard computed from the file (and kept) first when it is
    /// unknown and the file matches the hash; `None` when not held.
    pub fn outboard_held(
        &self,
        area: Ino,
        path: &[u8],
        hash: BlobHash,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some((file, _)) = self.held_file(area, path, hash)? else {
            return Ok(None);
        };
        let size = file.metadata()?.len();
        if !self.cache.know_local_outboard(hash, size, &file)? {
            return Ok(None);
        }
        let total = match size.div_ceil(crate::blob::PIECE) {
            0 | 1 => 0,
            n => n * 32,
        };
        let end = offset.saturating_add(len).min(total);
        if offset >= end {
            return Ok(Some(Vec::new()));
        }
        let (first, last) = (offset / 32, end.div_ceil(32));
        let txn = self.store.read()?;
        let Some(values) = self
            .store
            .outboards
            .pieces(&txn, &hash, first, last - first)?
        else {
            return Ok(None);
        };
        let bytes = values.to_bytes();
        let skip = (offset - first * 32) as usize;
        Ok(Some(bytes[skip..skip + (end - offset) as usize].to_vec()))
    }

    /// Whether this peer holds blob `hash` real at `path` of `area` and
    /// keeps it: asked by a peer before it drops its own copy, so `false`
    /// while this peer is dropping the blob itself.
    pub fn keeps(&self, area: Ino, path: &[u8], hash: BlobHash) -> Result<bool> {
        if lock(&self.unreal.dropping).contains(&hash) {
            return Ok(false);
        }
        let txn = self.store.read()?;
        let Some(ino) = self.ino_at(&txn, area, path)? else {
            return Ok(false);
        };
        let inode = self.inode(&txn, ino)?;
        Ok(inode.kind == Kind::File
            && !inode.unreal
            && inode.hash == Some(hash)
            && !self.recorder.is_pending(ino))
    }
}
