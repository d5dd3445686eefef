//! Conflict copies (DESIGN.md "Sync"): a version that loses a conflict
//! becomes a file of its own at `NAME.conflict-AUTHOR8-TIME.EXT`, recorded
//! as this peer's version there; a local file with changes not yet
//! recorded when a peer's version arrives moves aside to such a name.
//! Names are numbered (`-2`, `-3`…) when taken. Called by
//! [`super::remote`] while it shows a pull's records.

use super::Result;
use super::Tree;
use super::local::{Left, put_local};
use super::merge::{Content, Version, numbered_conflict_path};
use super::remote::{Pull, split};
use crate::ids::PeerId;
use crate::store::history::{Op, OpKind};
use crate::store::namespace::{Inode, Kind, Timestamp};
use crate::store::{Ino, RoTxn, RwTxn};

/// The highest number a conflict copy's name takes (`-N`).
const MAX_COPY_NUMBER: u32 = 100;

impl Tree {
    /// Makes `loser`, a version of `path` that just lost a conflict, an
    /// ordinary file of its own at its conflict copy: shown, recorded as
    /// this peer's version there (so it is sent, outlives the conflict and
    /// moves with its directory) and held when its bytes are here. A copy
    /// another peer made already is only shown. When the name holds
    /// another file, the copy is numbered (`-2`, `-3`…).
    pub(super) fn copy_loser(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        loser: &Version<PeerId>,
        pull: &mut Pull,
    ) -> Result<()> {
        let Some((copy, made)) = self.copy_name(wtxn, area, path, loser)? else {
            tracing::warn!(
                "no free name for a conflict copy of {}",
                String::from_utf8_lossy(path)
            );
            return Ok(());
        };
        tracing::debug!(
            "conflict copy {} made {made} for {loser:?}",
            String::from_utf8_lossy(&copy)
        );
        self.place(wtxn, area, &copy, Some(loser), pull)?;
        if made {
            return Ok(());
        }
        let Some(ino) = self.ino_at(wtxn, area, &copy)? else {
            // Not shown (a file is in the way of its directory).
            return Ok(());
        };
        let held = !self.inode(wtxn, ino)?.unreal;
        let left = Left::of(loser);
        put_local(&self.store, wtxn, self.peer_id, area, &copy, left, held)?;
        let op = Op {
            time: Timestamp::now(),
            kind: OpKind::Create,
            path: copy,
            hash: match &loser.content {
                Content::File(hash) => Some(*hash),
                _ => None,
            },
            base: None,
            new_path: None,
        };
        let seq = self.store.areas.next_seq(wtxn, area)?;
        Ok(self.store.history.append(wtxn, area, seq, &op)?)
    }

    /// The name of the conflict copy of `version`, a version of `path`:
    /// the first of `NAME.conflict-AUTHOR8-TIME.EXT`, `…-TIME-2.EXT`… that
    /// holds no other file (no live record, no entry of the namespace),
    /// and whether it holds this version already. `None` when the first
    /// [`MAX_COPY_NUMBER`] names are all taken.
    fn copy_name(
        &self,
        txn: &RoTxn,
        area: Ino,
        path: &[u8],
        version: &Version<PeerId>,
    ) -> Result<Option<(Vec<u8>, bool)>> {
        for n in 1..=MAX_COPY_NUMBER {
            let copy = numbered_conflict_path(path, version, n);
            let winner = self
                .store
                .versions
                .get(txn, area, &copy)?
                .and_then(|r| r.siblings.first().map(|w| w.content.clone()))
                .filter(|c| *c != Content::Deleted);
            match winner {
                Some(c) if c == version.content => return Ok(Some((copy, true))),
                Some(_) => continue,
                None if self.ino_at(txn, area, &copy)?.is_some() => continue,
                None => return Ok(Some((copy, false))),
            }
        }
        Ok(None)
    }

    /// Whether file `ino` has changes not recorded yet. A file waiting to
    /// be recorded whose bytes are still the recorded ones (touched by a
    /// reconciliation, or written with the same bytes) is not: a peer's
    /// version replaces it like any recorded file, and a write keeps its
    /// bytes as a version. Its bytes are hashed to tell, when their size
    /// has not changed. A special file (never recorded) always is.
    pub(super) fn dirty(&self, txn: &RoTxn, ino: Ino, inode: &Inode) -> Result<bool> {
        if let Kind::Special(_) = inode.kind {
            return Ok(true); // never recorded
        }
        if inode.kind != Kind::File || inode.unreal {
            return Ok(false);
        }
        if inode.hash.is_none() || self.recorder.is_written(ino) {
            return Ok(true);
        }
        if !self.recorder.is_pending(ino) {
            return Ok(false);
        }
        Ok(!self.holds_recorded(txn, ino, inode)?)
    }

    /// Whether real file `ino` holds the bytes its inode was recorded
    /// with (hashed when their size is the recorded one); false when it
    /// cannot be read.
    pub(super) fn holds_recorded(&self, txn: &RoTxn, ino: Ino, inode: &Inode) -> Result<bool> {
        if inode.hash.is_none() {
            return Ok(false);
        }
        let real = self.real_path(txn, ino)?;
        let file = match self.real.open_file(&real, crate::real::Open::read()) {
            Ok(file) => file,
            Err(_) => return Ok(false),
        };
        if file.metadata()?.len() != inode.size {
            return Ok(false);
        }
        let (hash, _) = crate::blob::outboard_file(&file)?;
        Ok(inode.hash == Some(hash))
    }

    /// Moves a local file with unrecorded changes out of a peer's way, to
    /// `NAME.conflict-THISPEER8-TIME.EXT`, where it is recorded as new.
    /// The kernel forgets both names: a stale entry at the old one would
    /// send the next write of `path` into the copy.
    pub(super) fn keep_local(
        &self,
        wtxn: &mut RwTxn,
        ino: Ino,
        mut inode: Inode,
        path: &[u8],
        pull: &mut Pull,
    ) -> Result<()> {
        let mine = Version {
            vv: Default::default(),
            content: Content::Deleted,
            mtime: Timestamp::now().secs,
            size: 0,
            perm: 0,
            author: self.peer_id,
        };
        let area = inode.area;
        let Some((copy, _)) = self.copy_name(wtxn, area, path, &mine)? else {
            return Err(super::Error::Exists(format!(
                "no free name for the conflict copy of {}",
                String::from_utf8_lossy(path)
            )));
        };
        tracing::debug!(
            "moved inode {ino} aside, changes not recorded: {} to {}",
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(&copy)
        );
        let (_, name) = split(&copy);
        let parent = inode.parent;
        let from = self.real_path(wtxn, ino)?;
        let to = self.real_child(wtxn, parent, name)?;
        self.real.rename(&from, &to, true)?;
        pull.journal.push(super::undo::Step::Renamed { from, to });
        self.store.namespace.unlink(wtxn, parent, &inode.name)?;
        self.store.namespace.link(wtxn, parent, name, ino)?;
        pull.forget.push((parent, inode.name.clone()));
        pull.forget.push((parent, name.to_vec()));
        inode.name = name.to_vec();
        inode.hash = None;
        let special = matches!(inode.kind, Kind::Special(_));
        self.store.namespace.put(wtxn, ino, &inode)?;
        if !special {
            self.recorder.touched(ino, false);
        }
        Ok(())
    }
}
