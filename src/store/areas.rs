//! Area records. Database `areas`: area inode (u64 BE) → [`Area`].
//!
//! The area's name and mode live in its inode; this record holds what only
//! areas have: the history sequence counter and the peers it is shared with.

use std::collections::BTreeMap;

use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::{Error, Ino, Postcard, Result};
use crate::ids::{PeerId, Seq};

/// What an area has beyond its directory inode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Area {
    /// The last sequence number taken in this area (0: none yet). Numbers
    /// start at 1, so a peer that asks for the changes since 0 gets all.
    pub last_seq: Seq,
    /// Peers the area is shared with.
    pub shares: Vec<PeerId>,
    /// Per peer, the last sequence number of its feed applied here.
    pub received: BTreeMap<PeerId, Seq>,
    /// Per peer, the last sequence number of this peer's feed it has
    /// applied (what it asked past): history up to the smallest of these
    /// over the shares is trimmed.
    pub acked: BTreeMap<PeerId, Seq>,
}

/// The areas database.
pub struct Areas {
    db: Database<'static, super::InoKey, Postcard<Area>>,
}

impl Areas {
    pub(super) fn new(db: Database<'static, super::InoKey, Postcard<Area>>) -> Areas {
        Areas { db }
    }

    /// The record of area `ino`.
    pub fn get(&self, txn: &RoTxn, ino: Ino) -> Result<Option<Area>> {
        self.db.get(txn, &ino).map_err(|_| Error::Corrupt("areas"))
    }

    /// Writes the record of area `ino`.
    pub fn put(&self, wtxn: &mut RwTxn, ino: Ino, area: &Area) -> Result<()> {
        Ok(self.db.put(wtxn, &ino, area)?)
    }

    /// Deletes the record of area `ino`.
    pub fn remove(&self, wtxn: &mut RwTxn, ino: Ino) -> Result<()> {
        self.db.delete(wtxn, &ino)?;
        Ok(())
    }

    /// Every area record, by area inode.
    pub fn all(&self, txn: &RoTxn) -> Result<Vec<(Ino, Area)>> {
        let mut out = Vec::new();
        for item in self.db.iter(txn)? {
            out.push(item.map_err(|_| Error::Corrupt("areas"))?);
        }
        Ok(out)
    }

    /// Takes the next sequence number of area `ino`.
    pub fn next_seq(&self, wtxn: &mut RwTxn, ino: Ino) -> Result<Seq> {
        let mut area = self.get(wtxn, ino)?.ok_or(Error::Corrupt("area"))?;
        area.last_seq = area.last_seq.next();
        let seq = area.last_seq;
        self.put(wtxn, ino, &area)?;
        Ok(seq)
    }
}
