//! Known peers. Database `peers`: peer id (32-byte ED25519 key) → [`Peer`].

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::namespace::Timestamp;
use super::{Error, Postcard, Result};
use crate::ids::PeerId;

/// What is known of a peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its name as it calls itself (or as given to `add`).
    pub name: String,
    /// Where it listens (`host:port` text); `None` for a deaf peer.
    pub addr: Option<String>,
    /// When a connection with it was last up.
    pub last_seen: Option<Timestamp>,
}

/// The peers database.
pub struct Peers {
    db: Database<'static, Bytes, Postcard<Peer>>,
}

impl Peers {
    pub(super) fn new(db: Database<'static, Bytes, Postcard<Peer>>) -> Peers {
        Peers { db }
    }

    /// The record of `id`.
    pub fn get(&self, txn: &RoTxn, id: &PeerId) -> Result<Option<Peer>> {
        self.db.get(txn, &id.0).map_err(|_| Error::Corrupt("peers"))
    }

    /// Writes the record of `id`.
    pub fn put(&self, wtxn: &mut RwTxn, id: &PeerId, peer: &Peer) -> Result<()> {
        Ok(self.db.put(wtxn, &id.0, peer)?)
    }

    /// Forgets `id`; false when it was not known.
    pub fn remove(&self, wtxn: &mut RwTxn, id: &PeerId) -> Result<bool> {
        Ok(self.db.delete(wtxn, &id.0)?)
    }

    /// Every known peer, by id.
    pub fn all(&self, txn: &RoTxn) -> Result<Vec<(PeerId, Peer)>> {
        let mut out = Vec::new();
        for item in self.db.iter(txn)? {
            let (key, peer) = item.map_err(|_| Error::Corrupt("peers"))?;
            let id = PeerId(key.try_into().map_err(|_| Error::Corrupt("peers"))?);
            out.push((id, peer));
        }
        Ok(out)
    }
}
