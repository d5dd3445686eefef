//! Outboards ([`crate::blob`]): the chaining values of a blob's pieces, for
//! blobs of more than one piece that were recorded here or fetched, kept
//! in parts of at most [`PART`] values (1 MiB) so that no record, and no fetch,
//! grows with the blob.
//!
//! Database `outboards`:
//! - blob hash (32 bytes) ‖ part number (u32 BE) → the part's chaining
//!   values, one after the other (32 bytes each; [`PART`] of them but in
//!   the last part);
//! - blob hash (32 bytes) → how many values the outboard has (u64 BE): the
//!   mark that the parts are all there and merge to the hash (trusted).
//!   Parts without the mark are a fetch under way or cut short, never read.
//!
//! A database from before parts holds the whole outboard under the blob
//! hash (a multiple of 32 bytes, at least 64: two pieces or more); it is
//! read as it is, and replaced by parts when written again.

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};

use super::{Error, Result};
use crate::blob::{Outboard, PART};
use crate::ids::BlobHash;

/// The outboard database.
pub struct Outboards {
    db: Database<'static, Bytes, Bytes>,
}

fn part_key(hash: &BlobHash, part: u64) -> Vec<u8> {
    let mut key = hash.as_slice().to_vec();
    key.extend_from_slice(&(part as u32).to_be_bytes());
    key
}

/// What the record under a blob's hash says.
enum Mark {
    /// Parts, this many values in all.
    Parts(u64),
    /// A whole outboard from before parts.
    Whole(Outboard),
}

impl Outboards {
    pub(super) fn new(db: Database<'static, Bytes, Bytes>) -> Outboards {
        Outboards { db }
    }

    fn mark(&self, txn: &RoTxn, hash: &BlobHash) -> Result<Option<Mark>> {
        let Some(bytes) = self.db.get(txn, hash.as_slice())? else {
            return Ok(None);
        };
        if let Ok(count) = <[u8; 8]>::try_from(bytes) {
            return Ok(Some(Mark::Parts(u64::from_be_bytes(count))));
        }
        Outboard::from_bytes(bytes)
            .map(|o| Some(Mark::Whole(o)))
            .ok_or(Error::Corrupt("outboards"))
    }

    /// Whether the outboard of blob `hash` is known (and trusted).
    pub fn known(&self, txn: &RoTxn, hash: &BlobHash) -> Result<bool> {
        Ok(self.mark(txn, hash)?.is_some())
    }

    /// The whole outboard of blob `hash`, when known. Its size is the
    /// blob's over 2,048: callers that need a few values use
    /// [`Outboards::pieces`].
    pub fn get(&self, txn: &RoTxn, hash: &BlobHash) -> Result<Option<Outboard>> {
        match self.mark(txn, hash)? {
            None => Ok(None),
            Some(Mark::Whole(outboard)) => Ok(Some(outboard)),
            Some(Mark::Parts(count)) => self.read_parts(txn, hash, 0, count).map(Some),
        }
    }

    /// Chaining values `first..first + count` of blob `hash`'s outboard,
    /// reading only the parts that hold them; `None` when the outboard is
    /// unknown or shorter.
    pub fn pieces(
        &self,
        txn: &RoTxn,
        hash: &BlobHash,
        first: u64,
        count: u64,
    ) -> Result<Option<Outboard>> {
        let total = match self.mark(txn, hash)? {
            None => return Ok(None),
            Some(Mark::Whole(o)) => {
                let end = first.saturating_add(count) as usize;
                return Ok(o
                    .pieces
                    .get(first as usize..end)
                    .map(|p| Outboard { pieces: p.to_vec() }));
            }
            Some(Mark::Parts(total)) => total,
        };
        let end = first.saturating_add(count);
        if end > total {
            return Ok(None);
        }
        self.read_parts(txn, hash, first, end).map(Some)
    }

    /// Chaining values `first..end` from the parts of blob `hash`'s
    /// outboard (marked, with at least `end` values).
    fn read_parts(&self, txn: &RoTxn, hash: &BlobHash, first: u64, end: u64) -> Result<Outboard> {
        let mut pieces = Vec::with_capacity((end - first) as usize);
        let mut at = first;
        while at < end {
            let part = at / PART;
            let bytes = self
                .db
                .get(txn, &part_key(hash, part))?
                .ok_or(Error::Corrupt("outboards"))?;
            let values = Outboard::from_bytes(bytes).ok_or(Error::Corrupt("outboards"))?;
            let from = (at - part * PART) as usize;
            let to = ((end - part * PART).min(PART)) as usize;
            let got = values
                .pieces
                .get(from..to)
                .ok_or(Error::Corrupt("outboards"))?;
            pieces.extend_from_slice(got);
            at = part * PART + to as u64;
        }
        Ok(Outboard { pieces })
    }

    /// Stores the whole outboard of blob `hash`, checked against the hash
    /// by the caller (nothing for an empty one).
    pub fn put(&self, wtxn: &mut RwTxn, hash: &BlobHash, outboard: &Outboard) -> Result<()> {
        if outboard.pieces.is_empty() {
            return Ok(());
        }
        for (part, values) in outboard.pieces.chunks(PART as usize).enumerate() {
            self.put_part(wtxn, hash, part as u64, values)?;
        }
        self.trust(wtxn, hash, outboard.pieces.len() as u64)
    }

    /// Stores part `part` of blob `hash`'s outboard, not yet trusted: it
    /// is read only once [`Outboards::trust`] marks the outboard.
    pub fn put_part(
        &self,
        wtxn: &mut RwTxn,
        hash: &BlobHash,
        part: u64,
        values: &[blake3::hazmat::ChainingValue],
    ) -> Result<()> {
        Ok(self.db.put(wtxn, &part_key(hash, part), &values.concat())?)
    }

    /// Marks the outboard of blob `hash`, `count` values in parts all
    /// stored, as checked against the hash.
    pub fn trust(&self, wtxn: &mut RwTxn, hash: &BlobHash, count: u64) -> Result<()> {
        Ok(self.db.put(wtxn, hash.as_slice(), &count.to_be_bytes())?)
    }

    /// Drops the parts of blob `hash`'s outboard from `from` on (a fetch
    /// that failed verification), and the mark when `from` is 0.
    pub fn drop_parts(&self, wtxn: &mut RwTxn, hash: &BlobHash, from: u64) -> Result<()> {
        if from == 0 {
            self.db.delete(wtxn, hash.as_slice())?;
        }
        let mut part = from;
        while self.db.delete(wtxn, &part_key(hash, part))? {
            part += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn values(n: u64) -> Outboard {
        let pieces = (0..n)
            .map(|i| {
                let mut v = [0u8; 32];
                v[..8].copy_from_slice(&i.to_be_bytes());
                v
            })
            .collect();
        Outboard { pieces }
    }

    #[test]
    fn parts_are_read_across_their_bounds_and_only_once_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let ob = &store.outboards;
        let hash = BlobHash([1; 32]);
        let all = values(2 * PART + 10);
        let mut wtxn = store.write().unwrap();
        // Parts without the mark (a fetch under way) are never read.
        ob.put_part(&mut wtxn, &hash, 0, &all.pieces[..PART as usize])
            .unwrap();
        assert!(!ob.known(&wtxn, &hash).unwrap());
        assert_eq!(ob.pieces(&wtxn, &hash, 0, 1).unwrap(), None);
        ob.drop_parts(&mut wtxn, &hash, 0).unwrap();
        ob.put(&mut wtxn, &hash, &all).unwrap();
        assert!(ob.known(&wtxn, &hash).unwrap());
        assert_eq!(ob.get(&wtxn, &hash).unwrap(), Some(all.clone()));
        let across = ob
            .pieces(&wtxn, &hash, PART - 2, PART + 5)
            .unwrap()
            .unwrap();
        assert_eq!(
            across.pieces,
            all.pieces[(PART - 2) as usize..(2 * PART + 3) as usize]
        );
        assert_eq!(ob.pieces(&wtxn, &hash, 2 * PART + 9, 2).unwrap(), None);
        // No record holds more than a part.
        for part in 0..3 {
            let len = ob
                .db
                .get(&wtxn, &part_key(&hash, part))
                .unwrap()
                .unwrap()
                .len();
            assert!(len as u64 <= PART * 32);
        }
        ob.drop_parts(&mut wtxn, &hash, 0).unwrap();
        assert!(!ob.known(&wtxn, &hash).unwrap());
        assert!(ob.db.get(&wtxn, &part_key(&hash, 1)).unwrap().is_none());
        wtxn.commit().unwrap();
    }

    #[test]
    fn a_whole_outboard_from_before_parts_is_read_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let ob = &store.outboards;
        let hash = BlobHash([2; 32]);
        let old = values(5);
        let mut wtxn = store.write().unwrap();
        ob.db
            .put(&mut wtxn, hash.as_slice(), &old.to_bytes())
            .unwrap();
        assert_eq!(ob.get(&wtxn, &hash).unwrap(), Some(old.clone()));
        let part = ob.pieces(&wtxn, &hash, 1, 3).unwrap().unwrap();
        assert_eq!(part.pieces, old.pieces[1..4]);
        assert_eq!(ob.pieces(&wtxn, &hash, 4, 2).unwrap(), None);
        // Written again: in parts.
        ob.put(&mut wtxn, &hash, &old).unwrap();
        assert_eq!(ob.get(&wtxn, &hash).unwrap(), Some(old));
        assert_eq!(ob.db.get(&wtxn, hash.as_slice()).unwrap().unwrap().len(), 8);
        wtxn.commit().unwrap();
    }
}
