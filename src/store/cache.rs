//! The blob cache's records. Database `cache`: blob hash (32 bytes) →
//! [`Cached`]: which chunks of the blob's cache file `DATA/cache/HASH` are
//! present, and whether the whole was verified against its hash.
//! Outboards have a module of their own ([`super::outboards`]). Database
//! `bases`: blob hash → the
//! hash of the blob it was edited from (32 bytes each), when this peer had
//! the latter: a fetch of the former takes the pieces they share from it
//! (delta edits, [`crate::cache::delta`]); kept until the former is whole.

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::namespace::Timestamp;
use super::{Error, Postcard, Result};
use crate::ids::BlobHash;

/// Size of a cached chunk in bytes: the unit of fetching and of the
/// presence map.
pub const CHUNK: u64 = 4 << 20;

/// What the cache holds of one blob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Cached {
    /// The blob's size in bytes.
    pub size: u64,
    /// One bit per [`CHUNK`], set when the chunk is in the cache file.
    pub chunks: Vec<u8>,
    /// Every chunk is present and the whole matches the hash.
    pub verified: bool,
    /// Last read, for eviction.
    pub last_read: Timestamp,
}

impl Cached {
    /// An empty record for a blob of `size` bytes.
    pub fn new(size: u64) -> Cached {
        Cached {
            size,
            chunks: vec![0; size.div_ceil(CHUNK).div_ceil(8) as usize],
            verified: false,
            last_read: Timestamp::now(),
        }
    }

    /// The record of a blob of `size` bytes whose cache file is whole and
    /// verified (a file moved in from the Real).
    pub fn whole(size: u64) -> Cached {
        let mut cached = Cached::new(size);
        for c in 0..cached.count() {
            cached.set(c);
        }
        cached.verified = true;
        cached
    }

    /// Number of chunks of the blob.
    pub fn count(&self) -> u64 {
        self.size.div_ceil(CHUNK)
    }

    /// Whether chunk `i` is present.
    pub fn has(&self, i: u64) -> bool {
        self.chunks
            .get((i / 8) as usize)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks chunk `i` present.
    pub fn set(&mut self, i: u64) {
        if let Some(b) = self.chunks.get_mut((i / 8) as usize) {
            *b |= 1 << (i % 8);
        }
    }

    /// Marks chunk `i` absent (its bytes failed verification).
    pub fn unset(&mut self, i: u64) {
        if let Some(b) = self.chunks.get_mut((i / 8) as usize) {
            *b &= !(1 << (i % 8));
        }
    }

    /// Whether every chunk is present.
    pub fn complete(&self) -> bool {
        (0..self.count()).all(|i| self.has(i))
    }

    /// Bytes present.
    pub fn bytes(&self) -> u64 {
        (0..self.count())
            .filter(|&i| self.has(i))
            .map(|i| CHUNK.min(self.size - i * CHUNK))
            .sum()
    }
}

/// The cache and bases databases.
pub struct Cache {
    db: Database<'static, Bytes, Postcard<Cached>>,
    bases: Database<'static, Bytes, Bytes>,
}

impl Cache {
    pub(super) fn new(
        db: Database<'static, Bytes, Postcard<Cached>>,
        bases: Database<'static, Bytes, Bytes>,
    ) -> Cache {
        Cache { db, bases }
    }

    /// The blob `new` was edited from, when noted.
    pub fn base(&self, txn: &RoTxn, new: &BlobHash) -> Result<Option<BlobHash>> {
        match self.bases.get(txn, new.as_slice())? {
            Some(bytes) => Ok(Some(BlobHash(
                bytes.try_into().map_err(|_| Error::Corrupt("bases"))?,
            ))),
            None => Ok(None),
        }
    }

    /// Notes that blob `new` was edited from `base`.
    pub fn put_base(&self, wtxn: &mut RwTxn, new: &BlobHash, base: &BlobHash) -> Result<()> {
        Ok(self.bases.put(wtxn, new.as_slice(), base.as_slice())?)
    }

    /// Forgets the base of blob `new`.
    pub fn remove_base(&self, wtxn: &mut RwTxn, new: &BlobHash) -> Result<()> {
        self.bases.delete(wtxn, new.as_slice())?;
        Ok(())
    }

    /// Forgets every edit based on blob `base` (it left the cache).
    pub fn remove_edits_of(&self, wtxn: &mut RwTxn, base: &BlobHash) -> Result<()> {
        let mut edits = Vec::new();
        for item in self.bases.iter(wtxn)? {
            let (new, of) = item?;
            if of == base.as_slice() {
                edits.push(new.to_vec());
            }
        }
        for new in edits {
            self.bases.delete(wtxn, &new)?;
        }
        Ok(())
    }

    /// The record of blob `hash`.
    pub fn get(&self, txn: &RoTxn, hash: &BlobHash) -> Result<Option<Cached>> {
        self.db
            .get(txn, hash.as_slice())
            .map_err(|_| Error::Corrupt("cache"))
    }

    /// Whether the cache holds blob `hash` whole and verified.
    pub fn verified(&self, txn: &RoTxn, hash: &BlobHash) -> Result<bool> {
        Ok(self.get(txn, hash)?.is_some_and(|c| c.verified))
    }

    /// Writes the record of blob `hash`.
    pub fn put(&self, wtxn: &mut RwTxn, hash: &BlobHash, cached: &Cached) -> Result<()> {
        Ok(self.db.put(wtxn, hash.as_slice(), cached)?)
    }

    /// Every blob the cache holds something of.
    pub fn all(&self, txn: &RoTxn) -> Result<Vec<(BlobHash, Cached)>> {
        let mut out = Vec::new();
        for item in self.db.iter(txn)? {
            let (key, cached) = item.map_err(|_| Error::Corrupt("cache"))?;
            let hash = BlobHash(key.try_into().map_err(|_| Error::Corrupt("cache"))?);
            out.push((hash, cached));
        }
        Ok(out)
    }

    /// Forgets blob `hash`, and the edits based on it.
    pub fn remove(&self, wtxn: &mut RwTxn, hash: &BlobHash) -> Result<()> {
        self.db.delete(wtxn, hash.as_slice())?;
        self.remove_edits_of(wtxn, hash)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_counted_and_marked() {
        let mut c = Cached::new(2 * CHUNK + 1);
        assert_eq!(c.count(), 3);
        assert!(!c.complete());
        c.set(0);
        c.set(2);
        assert!(c.has(0) && !c.has(1) && c.has(2));
        assert_eq!(c.bytes(), CHUNK + 1);
        c.set(1);
        assert!(c.complete());
        assert!(Cached::new(0).complete());
    }
}
