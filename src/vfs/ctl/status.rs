//! `DIR/.ctl/status`: one line per entry of DIR,
//! `NAME KIND STATE SIZE HASH MODE HOLDERS` (DESIGN.md). Until the
//! household exists every file is real here and its only holder is this
//! peer; a written file is `dirty` until it has rested and been hashed.

use super::super::{Result, Vfs};
use crate::format::{escape, format_hash};
use crate::store::namespace::{Inode, Kind};
use crate::store::{Ino, RoTxn};

/// The per-entry facts shared by `status` and the `user.realize.*`
/// attributes.
pub(crate) struct EntryStatus {
    /// `file`, `dir` or `link`.
    pub kind: &'static str,
    /// `real` or `dirty`.
    pub state: &'static str,
    /// Size in bytes, `None` for directories.
    pub size: Option<u64>,
    /// Recorded hash.
    pub hash: Option<[u8; 32]>,
    /// Effective mode and whether set on the entry itself (`real*`).
    pub mode: String,
    /// Holders, names joined by `,`; empty for none.
    pub holders: String,
}

impl Vfs {
    /// The status facts of `ino`.
    pub(crate) fn entry_status(&self, txn: &RoTxn, ino: Ino, inode: &Inode) -> Result<EntryStatus> {
        let kind = match inode.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "link",
        };
        let dirty =
            inode.kind == Kind::File && (inode.hash.is_none() || self.recorder.is_pending(ino));
        let (mode, own) = self.effective_mode(txn, ino)?;
        let size = match inode.kind {
            Kind::Dir => None,
            _ => Some(self.attr_of(txn, ino, inode)?.size),
        };
        let holders = if inode.kind != Kind::Dir && inode.hash.is_some() && !dirty {
            self.store.config.get(txn, "name")?
        } else {
            String::new()
        };
        Ok(EntryStatus {
            kind,
            state: if dirty { "dirty" } else { "real" },
            size,
            hash: inode.hash,
            mode: format!("{}{}", mode.as_str(), if own { "*" } else { "" }),
            holders,
        })
    }
}

/// One line per entry, in directory order.
pub(super) fn read(vfs: &Vfs, owner: Ino) -> Result<String> {
    let store = vfs.store();
    let txn = store.read()?;
    let mut out = String::new();
    let mut failed = None;
    store.namespace.children(&txn, owner, 0, |_, entry| {
        let Some(inode) = store.namespace.get(&txn, entry.ino)? else {
            return Ok(true);
        };
        match vfs.entry_status(&txn, entry.ino, &inode) {
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
