//! What this peer's areas are to the household: which peers they are
//! shared with, what a hello offers, the files a peer may read from here,
//! and the conflicts a user clears.

use super::local::{Left, put_local};
use super::merge::losers;
use super::remote::shown;
use super::{Result, Tree};
use crate::ids::{PeerId, Seq};
use crate::store::namespace::Mode;
use crate::store::{Ino, ROOT};

impl Tree {
    /// The area called `name`; with `create`, an area that does not exist
    /// is made in `config mode.remote` (a share accepted from a peer).
    pub fn area_named(&self, name: &[u8], create: bool) -> Result<Option<Ino>> {
        let txn = self.store.read()?;
        if let Some(ino) = self.store.namespace.lookup(&txn, ROOT, name)? {
            return Ok(Some(ino));
        }
        drop(txn);
        if !create {
            return Ok(None);
        }
        let (owner, mode) = {
            let txn = self.store.read()?;
            let root = self.inode(&txn, ROOT)?;
            let mode = self
                .store
                .config
                .get(&txn, crate::store::config::Key::ModeRemote)?;
            (
                (root.uid, root.gid),
                Mode::parse(&mode).unwrap_or(Mode::Unreal),
            )
        };
        Ok(Some(self.make_area(name, 0o755, owner, Some(mode))?))
    }

    /// Every (peer, area name) this peer shares an area with.
    pub fn shared_areas(&self) -> Result<Vec<(PeerId, Vec<u8>)>> {
        let txn = self.store.read()?;
        let mut out = Vec::new();
        for (ino, area) in self.store.areas.all(&txn)? {
            let name = self.inode(&txn, ino)?.name;
            for peer in area.shares {
                out.push((peer, name.clone()));
            }
        }
        Ok(out)
    }

    /// The areas shared with `peer`, each with this peer's latest sequence
    /// number in it (what a hello says).
    pub fn offers(&self, peer: PeerId) -> Result<Vec<(Vec<u8>, Seq)>> {
        let txn = self.store.read()?;
        let mut out = Vec::new();
        for (ino, area) in self.store.areas.all(&txn)? {
            if area.shares.contains(&peer) {
                out.push((self.inode(&txn, ino)?.name, area.last_seq));
            }
        }
        Ok(out)
    }

    /// Whether a round with `peer` for area `name` has anything to do,
    /// given the peer's latest sequence number there (from its hello):
    /// false when everything of the peer is applied here and the peer has
    /// applied everything of this peer.
    pub fn round_needed(&self, peer: PeerId, name: &[u8], theirs: Seq) -> Result<bool> {
        let txn = self.store.read()?;
        let Some(ino) = self.store.namespace.lookup(&txn, ROOT, name)? else {
            return Ok(true);
        };
        let Some(area) = self.store.areas.get(&txn, ino)? else {
            return Ok(true);
        };
        let received = area.received.get(&peer).copied().unwrap_or(Seq::ZERO);
        let acked = area.acked.get(&peer).copied().unwrap_or(Seq::ZERO);
        Ok(received < theirs || acked < area.last_seq)
    }

    /// Forgets the conflict at `path` of `area`: each conflict copy still
    /// in the tree becomes a file of its own, and the winner is written
    /// again over every sibling. ENOENT when there is no conflict.
    pub fn clear_conflict(&self, area: Ino, path: &[u8]) -> Result<()> {
        let mut wtxn = self.store.write()?;
        let record = self.store.versions.get(&wtxn, area, path)?;
        let Some(record) = record.filter(|r| losers(&r.siblings).next().is_some()) else {
            return Err(super::Error::NotFound(format!(
                "no conflict at {}",
                crate::format::escape(path)
            )));
        };
        let (_, copies) = shown(path, &record.siblings);
        for (copy, loser) in copies {
            if let Some(ino) = self.ino_at(&wtxn, area, &copy)? {
                let held = !self.inode(&wtxn, ino)?.unreal;
                let left = Left::of(&loser);
                put_local(
                    &self.store,
                    &mut wtxn,
                    self.peer_id,
                    area,
                    &copy,
                    left,
                    held,
                )?;
            }
        }
        let winner = &record.siblings[0];
        let held = match self.ino_at(&wtxn, area, path)? {
            Some(ino) => !self.inode(&wtxn, ino)?.unreal,
            None => false,
        };
        let left = Left::of(winner);
        put_local(&self.store, &mut wtxn, self.peer_id, area, path, left, held)?;
        wtxn.commit()?;
        Ok(())
    }
}
