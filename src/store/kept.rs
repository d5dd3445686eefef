//! Kept versions (DESIGN.md "Sync"): the versions of files that a write,
//! a truncation, a rename over them, a delete or a peer's record replaced
//! here, restorable for `versions.keep` within `versions.max`.
//!
//! - Database `kept`: key = area inode (8 bytes, big-endian) ‖ the first
//!   16 bytes of the BLAKE3 hash of the directory path in the area (`""`
//!   for the area's top) ‖ the entry's name ‖ `0x00` ‖ when it was
//!   replaced (nanoseconds since the epoch, 8 bytes big-endian) → [`Kept`].
//!   A directory's versions are one prefix; a path's versions follow each
//!   other oldest first. Names hold no NUL, so the separator is unique;
//!   keys stay under LMDB's 511 bytes (8 + 16 + 255 + 1 + 8).
//! - Database `kept_times`: key = replaced-at (8 bytes) ‖ the `kept` key →
//!   nothing: every kept version, oldest first, for expiry.
//! - Database `kept_blobs`: blob hash → how many kept versions name it (4
//!   bytes, big-endian): the cache keeps these blobs (pinned).

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::namespace::Timestamp;
use super::{Error, Postcard, Result};
use crate::ids::{BlobHash, Ino, PeerId};

/// One kept version of a file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Its path in the area, components joined by `/`.
    pub path: Vec<u8>,
    /// Its blob.
    pub hash: BlobHash,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, seconds since the epoch (UTC).
    pub mtime: i64,
    /// The peer that wrote it.
    pub author: PeerId,
    /// When it stopped being the current version here.
    pub until: Timestamp,
}

impl Kept {
    /// The name part of its path.
    pub fn name(&self) -> &[u8] {
        self.path
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(&self.path)
    }
}

/// Nanoseconds since the epoch of `t`, as the keys order them (times
/// before 1970 count as 0).
fn nanos(t: Timestamp) -> u64 {
    u64::try_from(t.secs)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(t.nanos))
}

/// The key prefix of the directory `dir` (a path in the area) of `area`.
fn dir_prefix(area: Ino, dir: &[u8]) -> Vec<u8> {
    let mut key = area.0.to_be_bytes().to_vec();
    key.extend_from_slice(&blake3::hash(dir).as_bytes()[..16]);
    key
}

/// The key prefix of the versions of `path` in `area`.
fn path_prefix(area: Ino, path: &[u8]) -> Vec<u8> {
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let mut key = dir_prefix(area, dir);
    key.extend_from_slice(name);
    key.push(0);
    key
}

/// The kept-version databases.
pub struct KeptDb {
    db: Database<'static, Bytes, Postcard<Kept>>,
    times: Database<'static, Bytes, Bytes>,
    blobs: Database<'static, Bytes, Bytes>,
}

impl KeptDb {
    pub(super) fn new(
        db: Database<'static, Bytes, Postcard<Kept>>,
        times: Database<'static, Bytes, Bytes>,
        blobs: Database<'static, Bytes, Bytes>,
    ) -> KeptDb {
        KeptDb { db, times, blobs }
    }

    /// Keeps `kept`, a version of a file of `area`; false when a version
    /// of its path replaced at the same nanosecond is kept already.
    pub fn put(&self, wtxn: &mut RwTxn, area: Ino, kept: &Kept) -> Result<bool> {
        let mut key = path_prefix(area, &kept.path);
        key.extend_from_slice(&nanos(kept.until).to_be_bytes());
        if self.db.get(wtxn, &key)?.is_some() {
            return Ok(false);
        }
        self.db.put(wtxn, &key, kept)?;
        let mut time = nanos(kept.until).to_be_bytes().to_vec();
        time.extend_from_slice(&key);
        self.times.put(wtxn, &time, &[])?;
        let count = self.count(wtxn, &kept.hash)?;
        self.blobs
            .put(wtxn, kept.hash.as_slice(), &(count + 1).to_be_bytes())?;
        Ok(true)
    }

    /// How many kept versions name blob `hash`: the cache keeps it while
    /// this is not 0.
    pub fn count(&self, txn: &RoTxn, hash: &BlobHash) -> Result<u32> {
        Ok(match self.blobs.get(txn, hash.as_slice())? {
            Some(b) => u32::from_be_bytes(b.try_into().map_err(|_| Error::Corrupt("kept_blobs"))?),
            None => 0,
        })
    }

    fn scan(&self, txn: &RoTxn, prefix: &[u8]) -> Result<Vec<Kept>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iter(txn, prefix)? {
            let (_, kept) = item.map_err(|_| Error::Corrupt("kept"))?;
            out.push(kept);
        }
        Ok(out)
    }

    /// The kept versions of the entries of directory `dir` (a path in the
    /// area, `""` for its top) of `area`, by name, oldest first.
    pub fn in_dir(&self, txn: &RoTxn, area: Ino, dir: &[u8]) -> Result<Vec<Kept>> {
        let mut all = self.scan(txn, &dir_prefix(area, dir))?;
        // Two directories may share the 16-byte prefix of their hashes.
        all.retain(|k| {
            let parent = match k.path.iter().rposition(|&b| b == b'/') {
                Some(i) => &k.path[..i],
                None => &b""[..],
            };
            parent == dir
        });
        Ok(all)
    }

    /// The kept versions of `path` in `area`, oldest first.
    pub fn of_path(&self, txn: &RoTxn, area: Ino, path: &[u8]) -> Result<Vec<Kept>> {
        let mut all = self.scan(txn, &path_prefix(area, path))?;
        all.retain(|k| k.path == path);
        Ok(all)
    }

    /// Every kept version.
    pub fn all(&self, txn: &RoTxn) -> Result<Vec<Kept>> {
        let mut out = Vec::new();
        for item in self.db.iter(txn)? {
            out.push(item.map_err(|_| Error::Corrupt("kept"))?.1);
        }
        Ok(out)
    }

    /// Every kept version of `area`.
    pub fn in_area(&self, txn: &RoTxn, area: Ino) -> Result<Vec<Kept>> {
        self.scan(txn, &area.0.to_be_bytes())
    }

    /// The oldest kept version: (its `kept_times` key, it).
    pub fn oldest(&self, txn: &RoTxn) -> Result<Option<(Vec<u8>, Option<Kept>)>> {
        let Some(item) = self.times.first(txn)? else {
            return Ok(None);
        };
        let time = item.0.to_vec();
        let key = time.get(8..).ok_or(Error::Corrupt("kept_times"))?;
        let kept = self.db.get(txn, key).map_err(|_| Error::Corrupt("kept"))?;
        Ok(Some((time, kept)))
    }

    /// The sum of the sizes of every kept version, in bytes.
    pub fn total(&self, txn: &RoTxn) -> Result<u64> {
        let mut total = 0u64;
        for item in self.db.iter(txn)? {
            let (_, kept) = item.map_err(|_| Error::Corrupt("kept"))?;
            total = total.saturating_add(kept.size);
        }
        Ok(total)
    }

    /// Forgets the kept version whose `kept_times` key is `time` (from
    /// [`KeptDb::oldest`]); the blob it named, when no other kept version
    /// names it any more.
    pub fn remove(&self, wtxn: &mut RwTxn, time: &[u8]) -> Result<Option<BlobHash>> {
        let key = time.get(8..).ok_or(Error::Corrupt("kept_times"))?.to_vec();
        self.times.delete(wtxn, time)?;
        let Some(kept) = self
            .db
            .get(wtxn, &key)
            .map_err(|_| Error::Corrupt("kept"))?
        else {
            return Ok(None);
        };
        self.db.delete(wtxn, &key)?;
        let count = self.count(wtxn, &kept.hash)?;
        if count <= 1 {
            self.blobs.delete(wtxn, kept.hash.as_slice())?;
            return Ok(Some(kept.hash));
        }
        self.blobs
            .put(wtxn, kept.hash.as_slice(), &(count - 1).to_be_bytes())?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_separate_directories_and_names() {
        let area = Ino(7);
        assert!(path_prefix(area, b"d/a").starts_with(&dir_prefix(area, b"d")));
        assert!(!path_prefix(area, b"d/ab").starts_with(&path_prefix(area, b"d/a")));
        assert!(path_prefix(area, b"top").starts_with(&dir_prefix(area, b"")));
        assert_ne!(dir_prefix(area, b"d"), dir_prefix(Ino(8), b"d"));
    }
}
