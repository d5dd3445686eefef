//! What this peer knows of every path of every area: its versions (the
//! siblings of [`crate::sync::merge`], whose record types are defined
//! here so that the store depends on nothing above it) and who holds its bytes, plus the
//! *feed* that tells peers what changed since a sequence number.
//!
//! Three databases:
//! - `paths`: area inode (u64 BE) ‖ path key → [`PathRecord`], where the
//!   path key is the path itself up to [`SHORT`] bytes; a longer path
//!   (LMDB takes keys of at most 511 bytes) is keyed by its first
//!   [`SHORT`] bytes, a NUL (never in a path) and the BLAKE3 hash of the
//!   whole path, which `long_paths` keeps under the same key. Keys still
//!   begin with the path's first bytes, so a directory's descendants stay
//!   together;
//! - `long_paths`: the key of a long path → the path;
//! - `feed`: area inode (u64 BE) ‖ sequence number (u64 BE) → path bytes.
//!   Each change of a record takes the area's next sequence number and
//!   moves the record's single feed entry there, so the feed holds each
//!   path once, in the order of its last change: a peer that asks for the
//!   changes since N gets every record that changed after N, and N = 0 is
//!   the full index.

use std::collections::BTreeMap;

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::{Error, Ino, Postcard, Result, key_prefix, key_u64};
use crate::ids::{BlobHash, PeerId, Seq};

/// A version vector: for each peer, the sequence number of its last
/// operation this version has seen (absent = 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector<A: Ord>(pub(crate) BTreeMap<A, u64>);

/// What a version puts at its path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Content {
    /// Nothing: the entry was removed.
    Deleted,
    /// A file with this blob (BLAKE3 hash).
    File(BlobHash),
    /// A symbolic link with this target.
    Symlink(Vec<u8>),
    /// A directory.
    Dir,
}

/// One version of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version<A: Ord> {
    /// Everything its author had seen of the path, and the op itself.
    pub vv: VersionVector<A>,
    /// What it puts there.
    pub content: Content,
    /// Modification time, seconds since the epoch (UTC).
    pub mtime: i64,
    /// Size in bytes of a file's blob (0 otherwise).
    pub size: u64,
    /// Permission bits (07777) its author gave the entry; 0 for a
    /// deletion.
    pub perm: u16,
    /// The peer that made it.
    pub author: A,
}

/// Who holds a path's bytes, as one peer last said: the blob it keeps real
/// there (`None`: none). Each peer writes only its own entry, with a
/// growing clock; the entry with the greater clock wins a merge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The holder's sequence number when it said so.
    pub clock: u64,
    /// The blob it keeps real at this path.
    pub hash: Option<BlobHash>,
}

/// Everything known of one path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PathRecord {
    /// Where the record sits in the feed.
    pub seq: Seq,
    /// The versions no other known version dominates, winner first.
    pub siblings: Vec<Version<PeerId>>,
    /// Per peer, the blob it holds at this path.
    pub holders: BTreeMap<PeerId, Holding>,
}

/// Most siblings a record keeps, and most holders: far more than a
/// household has peers, so only a peer that makes them up on purpose
/// reaches it. Pages carrying more are refused on receipt; merging pages
/// keeps records within it, so what a peer serves back stays within it.
pub const MAX_FANOUT: usize = 64;

impl PathRecord {
    /// Merges the holdings of `other` into this record; true when one
    /// changed. At most [`MAX_FANOUT`] holders stay: `me`, then those
    /// that hold a blob, the latest clocks first.
    pub fn merge_holders(&mut self, other: &BTreeMap<PeerId, Holding>, me: PeerId) -> bool {
        let mut changed = false;
        for (peer, holding) in other {
            let newer = self
                .holders
                .get(peer)
                .is_none_or(|h| h.clock < holding.clock);
            if newer {
                self.holders.insert(*peer, holding.clone());
                changed = true;
            }
        }
        if self.holders.len() > MAX_FANOUT {
            let mut ranked: Vec<(PeerId, Holding)> =
                std::mem::take(&mut self.holders).into_iter().collect();
            ranked.sort_by_key(|(peer, h)| {
                std::cmp::Reverse((*peer == me, h.hash.is_some(), h.clock))
            });
            ranked.truncate(MAX_FANOUT);
            self.holders = ranked.into_iter().collect();
            tracing::warn!("a record had more than {MAX_FANOUT} holders: the rest dropped");
        }
        changed
    }

    /// The peers holding blob `hash` here.
    pub fn holders_of(&self, hash: BlobHash) -> impl Iterator<Item = PeerId> + '_ {
        self.holders
            .iter()
            .filter(move |(_, h)| h.hash == Some(hash))
            .map(|(p, _)| *p)
    }
}

/// Paths of up to this many bytes are their own keys in `paths`.
pub const SHORT: usize = 400;

/// The key of `path` in `area` (see the module doc).
fn path_key(area: Ino, path: &[u8]) -> Vec<u8> {
    if path.len() <= SHORT {
        return key_u64(area, path);
    }
    let mut key = key_u64(area, &path[..SHORT]);
    key.push(0);
    key.extend_from_slice(blake3::hash(path).as_bytes());
    key
}

/// Whether `key` is the key of a long path.
fn is_long(key: &[u8]) -> bool {
    key.len() > 8 + SHORT && key[8 + SHORT] == 0
}

/// The `paths`, `long_paths` and `feed` databases.
pub struct Versions {
    paths: Database<'static, Bytes, Postcard<PathRecord>>,
    long_paths: Database<'static, Bytes, Bytes>,
    feed: Database<'static, Bytes, Bytes>,
}

impl Versions {
    pub(super) fn new(
        paths: Database<'static, Bytes, Postcard<PathRecord>>,
        long_paths: Database<'static, Bytes, Bytes>,
        feed: Database<'static, Bytes, Bytes>,
    ) -> Versions {
        Versions {
            paths,
            long_paths,
            feed,
        }
    }

    /// The record of `path` in `area`.
    pub fn get(&self, txn: &RoTxn, area: Ino, path: &[u8]) -> Result<Option<PathRecord>> {
        self.paths
            .get(txn, &path_key(area, path))
            .map_err(|_| Error::Corrupt("paths"))
    }

    /// The path whose key in `paths` is `key`.
    fn path_of(&self, txn: &RoTxn, key: &[u8]) -> Result<Vec<u8>> {
        if !is_long(key) {
            return Ok(key[8..].to_vec());
        }
        let path = self.long_paths.get(txn, key)?;
        path.map(<[u8]>::to_vec).ok_or(Error::Corrupt("long_paths"))
    }

    /// Stores `record` for `path`, moving its feed entry to `seq`.
    pub fn put(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        mut record: PathRecord,
        seq: Seq,
    ) -> Result<()> {
        if let Some(old) = self.get(wtxn, area, path)? {
            self.feed
                .delete(wtxn, &key_u64(area, &old.seq.0.to_be_bytes()))?;
        }
        record.seq = seq;
        self.feed
            .put(wtxn, &key_u64(area, &seq.0.to_be_bytes()), path)?;
        let key = path_key(area, path);
        if is_long(&key) {
            self.long_paths.put(wtxn, &key, path)?;
        }
        Ok(self.paths.put(wtxn, &key, &record)?)
    }

    /// The records of `area` whose path starts with `prefix` followed by
    /// `/` (the descendants of a directory), in path order.
    pub fn below(
        &self,
        txn: &RoTxn,
        area: Ino,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, PathRecord)>> {
        let mut below = prefix.to_vec();
        below.push(b'/');
        // Every descendant's key begins with this (see the module doc).
        let start = key_u64(area, &below[..below.len().min(SHORT)]);
        let mut out = Vec::new();
        for item in self.paths.prefix_iter(txn, &start)? {
            let (key, record) = item.map_err(|_| Error::Corrupt("paths"))?;
            let path = self.path_of(txn, key)?;
            if path.starts_with(&below) {
                out.push((path, record));
            }
        }
        Ok(out)
    }

    /// Visits every record of `area` in path order.
    pub fn for_each(
        &self,
        txn: &RoTxn,
        area: Ino,
        mut visit: impl FnMut(&[u8], PathRecord) -> Result<()>,
    ) -> Result<()> {
        for item in self.paths.prefix_iter(txn, &area.0.to_be_bytes())? {
            let (key, record) = item.map_err(|_| Error::Corrupt("paths"))?;
            visit(&self.path_of(txn, key)?, record)?;
        }
        Ok(())
    }

    /// Up to `limit` records of `area` that changed after `since`, in feed
    /// order, with their sequence numbers.
    pub fn changed_since(
        &self,
        txn: &RoTxn,
        area: Ino,
        since: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Vec<u8>, PathRecord)>> {
        let start = key_u64(area, &since.0.saturating_add(1).to_be_bytes());
        let end = key_u64(area, &u64::MAX.to_be_bytes());
        let range = (
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Included(end.as_slice()),
        );
        let mut out = Vec::new();
        for item in self.feed.range(txn, &range)? {
            if out.len() >= limit {
                break;
            }
            let (key, path) = item.map_err(|_| Error::Corrupt("feed"))?;
            let seq = Seq(key_prefix(&key[8..])?);
            let record = self.get(txn, area, path)?.ok_or(Error::Corrupt("feed"))?;
            out.push((seq, path.to_vec(), record));
        }
        Ok(out)
    }

    /// Deletes every record of `area`.
    pub fn remove_area(&self, wtxn: &mut RwTxn, area: Ino) -> Result<()> {
        let prefix = area.0.to_be_bytes();
        let mut paths = self.paths.prefix_iter_mut(wtxn, &prefix)?;
        while paths.next().transpose()?.is_some() {
            // SAFETY: no reference into the database is kept.
            unsafe { paths.del_current()? };
        }
        drop(paths);
        let mut long = self.long_paths.prefix_iter_mut(wtxn, &prefix)?;
        while long.next().transpose()?.is_some() {
            // SAFETY: as above.
            unsafe { long.del_current()? };
        }
        drop(long);
        let mut feed = self.feed.prefix_iter_mut(wtxn, &prefix)?;
        while feed.next().transpose()?.is_some() {
            // SAFETY: as above.
            unsafe { feed.del_current()? };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::Seq;
    use crate::store::{Ino, Store};

    #[test]
    fn paths_longer_than_an_lmdb_key_are_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let v = &store.versions;
        let deep = |n: usize| format!("dir/{}", "x/".repeat(n)).into_bytes();
        let short = b"dir/short".to_vec();
        let (long, longer) = (
            [deep(300), b"f".to_vec()].concat(),
            [deep(900), b"g".to_vec()].concat(),
        );
        let other = [b"dis/".to_vec(), deep(300)].concat(); // not below dir
        let mut wtxn = store.write().unwrap();
        for (seq, path) in [&short, &long, &longer, &other].into_iter().enumerate() {
            let record = super::PathRecord::default();
            v.put(&mut wtxn, Ino(7), path, record, Seq(seq as u64 + 1))
                .unwrap();
        }
        wtxn.commit().unwrap();
        let txn = store.read().unwrap();
        let mut all = Vec::new();
        v.for_each(&txn, Ino(7), |path, _| {
            all.push(path.to_vec());
            Ok(())
        })
        .unwrap();
        all.sort();
        let mut want = vec![short.clone(), long.clone(), longer.clone(), other.clone()];
        want.sort();
        assert_eq!(all, want);
        let below: Vec<_> = v
            .below(&txn, Ino(7), b"dir")
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(below.len(), 3, "short, long and longer are below dir");
        // A prefix longer than a key's path part still finds its own.
        let below: Vec<_> = v
            .below(&txn, Ino(7), &deep(850)[..deep(850).len() - 1])
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(below, std::slice::from_ref(&longer));
        assert!(v.get(&txn, Ino(7), &longer).unwrap().is_some());
        let fed: Vec<_> = v
            .changed_since(&txn, Ino(7), Seq::ZERO, 10)
            .unwrap()
            .into_iter()
            .map(|(_, p, _)| p)
            .collect();
        assert_eq!(fed, [short, long, longer, other]);
    }

    #[test]
    fn holders_stay_within_the_bound_keeping_this_peer_and_those_that_hold() {
        use super::{Holding, MAX_FANOUT, PathRecord};
        use crate::ids::{BlobHash, PeerId};
        use std::collections::BTreeMap;
        let peer = |i: u32| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            PeerId(id)
        };
        let me = peer(9999);
        let mut record = PathRecord::default();
        let mine = BTreeMap::from([(
            me,
            Holding {
                clock: 1,
                hash: None,
            },
        )]);
        record.merge_holders(&mine, me);
        // A peer sends 64 new holders a page, holding nothing, over and
        // over, with ever greater clocks; two honest holders hold a blob.
        let honest = BTreeMap::from([
            (
                peer(1),
                Holding {
                    clock: 5,
                    hash: Some(BlobHash([1; 32])),
                },
            ),
            (
                peer(2),
                Holding {
                    clock: 6,
                    hash: Some(BlobHash([1; 32])),
                },
            ),
        ]);
        record.merge_holders(&honest, me);
        for page in 0..10u32 {
            let flood = (0..MAX_FANOUT as u32)
                .map(|i| {
                    (
                        peer(100 + page * 100 + i),
                        Holding {
                            clock: 1000 + u64::from(i),
                            hash: None,
                        },
                    )
                })
                .collect();
            record.merge_holders(&flood, me);
            assert!(record.holders.len() <= MAX_FANOUT);
        }
        assert!(record.holders.contains_key(&me));
        assert_eq!(record.holders_of(BlobHash([1; 32])).count(), 2);
    }
}
