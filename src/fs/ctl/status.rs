//! `DIR/.ctl/status`: one line per entry of DIR,
//! `NAME KIND STATE SIZE HASH MODE HOLDERS` (DESIGN.md). A written file is
//! `dirty` until it has rested and been hashed; holders come from the
//! path's record (this peer's name for a real file not yet known to any).
//! FIFOs, sockets and device nodes, never sent, are `local`.

use super::super::{Fs, Result};
use crate::format::{escape, format_hash};
use crate::ids::{BlobHash, PeerId};
use crate::store::namespace::{Inode, Kind, Special};
use crate::store::{Ino, RoTxn};

/// The per-entry facts shared by `status` and the `user.realize.*`
/// attributes.
pub(crate) struct EntryStatus {
    /// `file`, `dir`, `link`, or for a special file (local to this peer)
    /// `fifo`, `socket`, `char` or `block`.
    pub kind: &'static str,
    /// `real`, `cached`, `partial:NN%`, `unreal`, `conflict` or `dirty`;
    /// `local` for a special file.
    pub state: String,
    /// Size in bytes, `None` for directories.
    pub size: Option<u64>,
    /// Recorded hash.
    pub hash: Option<BlobHash>,
    /// Effective mode and whether set on the entry itself (`real*`).
    pub mode: String,
    /// Holders, names joined by `,`; empty for none.
    pub holders: String,
}

impl Fs {
    /// The status facts of `ino`.
    pub(crate) fn entry_status(&self, txn: &RoTxn, ino: Ino, inode: &Inode) -> Result<EntryStatus> {
        let kind = match inode.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "link",
            Kind::Special(Special::Fifo) => "fifo",
            Kind::Special(Special::Socket) => "socket",
            Kind::Special(Special::CharDevice(_)) => "char",
            Kind::Special(Special::BlockDevice(_)) => "block",
        };
        let dirty = inode.kind == Kind::File
            && (inode.hash.is_none() || self.tree.recorder.is_pending(ino));
        let (mode, own) = self.tree.effective_mode(txn, ino)?;
        let size = match inode.kind {
            Kind::Dir => None,
            _ => Some(self.attr_of(txn, ino, inode)?.size),
        };
        let record = match inode.parent {
            Ino::NONE => None,
            _ if inode.area == Ino::NONE || inode.area == ino => None,
            _ => {
                let path = self.tree.area_path(txn, ino)?;
                self.store.versions.get(txn, inode.area, &path)?
            }
        };
        let mut holders = Vec::new();
        if let (Some(record), Some(hash)) = (&record, inode.hash)
            && !dirty
        {
            for peer in record.holders_of(hash) {
                holders.push(self.peer_name(txn, peer)?);
            }
        }
        if holders.is_empty()
            && inode.kind != Kind::Dir
            && !inode.unreal
            && inode.hash.is_some()
            && !dirty
        {
            holders.push(
                self.store
                    .config
                    .get(txn, crate::store::config::Key::Name)?,
            );
        }
        let conflict = record
            .as_ref()
            .is_some_and(|r| crate::sync::merge::losers(&r.siblings).next().is_some());
        let partial;
        let state = if let Kind::Special(_) = inode.kind {
            "local"
        } else if dirty {
            "dirty"
        } else if conflict {
            "conflict"
        } else if inode.unreal {
            let (bytes, size, verified) = match inode.hash {
                Some(hash) => self.cache.cached_state(txn, &hash)?,
                None => (0, 0, false),
            };
            if verified {
                "cached"
            } else if bytes > 0 && size > 0 {
                partial = format!("partial:{}%", bytes * 100 / size);
                partial.as_str()
            } else {
                "unreal"
            }
        } else {
            "real"
        };
        let state = state.to_string();
        let holders = holders.join(",");
        Ok(EntryStatus {
            kind,
            state,
            size,
            hash: inode.hash,
            mode: format!("{}{}", mode.as_str(), if own { "*" } else { "" }),
            holders,
        })
    }
}

impl Fs {
    /// The name of `peer` as `/.ctl/peers` shows it (this peer's `name`
    /// setting for itself, the id's first 8 characters when it has none).
    pub(crate) fn peer_name(&self, txn: &RoTxn, peer: PeerId) -> Result<String> {
        if peer == self.peer_id() {
            return Ok(self
                .store()
                .config
                .get(txn, crate::store::config::Key::Name)?);
        }
        Ok(match self.store().peers.get(txn, &peer)? {
            Some(p) if p.name != "-" => p.name,
            _ => peer.to_string()[..8].to_string(),
        })
    }
}

/// One line per entry, in directory order.
pub(super) fn read(fs: &Fs, owner: Ino) -> Result<String> {
    let store = fs.store();
    let txn = store.read()?;
    let mut out = String::new();
    let mut failed = None;
    store.namespace.children(&txn, owner, 0, |_, entry| {
        let Some(inode) = store.namespace.get(&txn, entry.ino)? else {
            return Ok(true);
        };
        match fs.entry_status(&txn, entry.ino, &inode) {
            Ok(s) => out.push_str(&format!(
                "{} {} {} {} {} {} {}\n",
                escape(&entry.name),
                s.kind,
                s.state,
                s.size.map_or("-".to_string(), |n| n.to_string()),
                format_hash(s.hash.as_ref()),
                s.mode,
                if s.holders.is_empty() {
                    "-"
                } else {
                    &s.holders
                },
            )),
            Err(e) => failed = Some(e),
        }
        Ok(failed.is_none())
    })?;
    failed.map_or(Ok(out), Err)
}
