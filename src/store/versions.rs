//! What this peer knows of every path of every area: its versions (the
//! siblings of [`crate::sync::merge`]) and who holds its bytes, plus the
//! *feed* that tells peers what changed since a sequence number.
//!
//! Two databases:
//! - `paths`: area inode (u64 BE) ‖ path bytes → [`PathRecord`];
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
use crate::net::identity::PeerId;
use crate::sync::merge::Version;

/// Who holds a path's bytes, as one peer last said: the blob it keeps real
/// there (`None`: none). Each peer writes only its own entry, with a
/// growing clock; the entry with the greater clock wins a merge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The holder's sequence number when it said so.
    pub clock: u64,
    /// The blob it keeps real at this path.
    pub hash: Option<[u8; 32]>,
}

/// Everything known of one path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PathRecord {
    /// Where the record sits in the feed.
    pub seq: u64,
    /// The versions no other known version dominates, winner first.
    pub siblings: Vec<Version<PeerId>>,
    /// Per peer, the blob it holds at this path.
    pub holders: BTreeMap<PeerId, Holding>,
}

impl PathRecord {
    /// Merges the holdings of `other` into this record; true when one
    /// changed.
    pub fn merge_holders(&mut self, other: &BTreeMap<PeerId, Holding>) -> bool {
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
        changed
    }

    /// The peers holding blob `hash` here.
    pub fn holders_of(&self, hash: [u8; 32]) -> impl Iterator<Item = PeerId> + '_ {
        self.holders
            .iter()
            .filter(move |(_, h)| h.hash == Some(hash))
            .map(|(p, _)| *p)
    }
}

/// The `paths` and `feed` databases.
pub struct Versions {
    paths: Database<'static, Bytes, Postcard<PathRecord>>,
    feed: Database<'static, Bytes, Bytes>,
}

impl Versions {
    pub(super) fn new(
        paths: Database<'static, Bytes, Postcard<PathRecord>>,
        feed: Database<'static, Bytes, Bytes>,
    ) -> Versions {
        Versions { paths, feed }
    }

    /// The record of `path` in `area`.
    pub fn get(&self, txn: &RoTxn, area: Ino, path: &[u8]) -> Result<Option<PathRecord>> {
        self.paths
            .get(txn, &key_u64(area, path))
            .map_err(|_| Error::Corrupt("paths"))
    }

    /// Stores `record` for `path`, moving its feed entry to `seq`.
    pub fn put(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        mut record: PathRecord,
        seq: u64,
    ) -> Result<()> {
        if let Some(old) = self.get(wtxn, area, path)? {
            self.feed
                .delete(wtxn, &key_u64(area, &old.seq.to_be_bytes()))?;
        }
        record.seq = seq;
        self.feed
            .put(wtxn, &key_u64(area, &seq.to_be_bytes()), path)?;
        Ok(self.paths.put(wtxn, &key_u64(area, path), &record)?)
    }

    /// The records of `area` whose path starts with `prefix` followed by
    /// `/` (the descendants of a directory), in path order.
    pub fn below(
        &self,
        txn: &RoTxn,
        area: Ino,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, PathRecord)>> {
        let mut start = key_u64(area, prefix);
        start.push(b'/');
        let mut out = Vec::new();
        for item in self.paths.prefix_iter(txn, &start)? {
            let (key, record) = item.map_err(|_| Error::Corrupt("paths"))?;
            out.push((key[8..].to_vec(), record));
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
        for item in self.paths.prefix_iter(txn, &area.to_be_bytes())? {
            let (key, record) = item.map_err(|_| Error::Corrupt("paths"))?;
            visit(&key[8..], record)?;
        }
        Ok(())
    }

    /// Up to `limit` records of `area` that changed after `since`, in feed
    /// order, with their sequence numbers.
    pub fn changed_since(
        &self,
        txn: &RoTxn,
        area: Ino,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>, PathRecord)>> {
        let start = key_u64(area, &since.saturating_add(1).to_be_bytes());
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
            let seq = key_prefix(&key[8..])?;
            let record = self.get(txn, area, path)?.ok_or(Error::Corrupt("feed"))?;
            out.push((seq, path.to_vec(), record));
        }
        Ok(out)
    }

    /// Deletes every record of `area`.
    pub fn remove_area(&self, wtxn: &mut RwTxn, area: Ino) -> Result<()> {
        let prefix = area.to_be_bytes();
        let mut paths = self.paths.prefix_iter_mut(wtxn, &prefix)?;
        while paths.next().transpose()?.is_some() {
            // SAFETY: no reference into the database is kept.
            unsafe { paths.del_current()? };
        }
        drop(paths);
        let mut feed = self.feed.prefix_iter_mut(wtxn, &prefix)?;
        while feed.next().transpose()?.is_some() {
            // SAFETY: as above.
            unsafe { feed.del_current()? };
        }
        Ok(())
    }
}
