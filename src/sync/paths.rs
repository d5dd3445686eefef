//! Where an inode lives in the Real: its [`RealPath`], derived from the
//! namespace. Every call on it goes through [`crate::real::Real`].

use super::{Error, Result, Tree};
use crate::real::RealPath;
use crate::store::{Ino, ROOT, RoTxn};

impl Tree {
    /// The Real path of `ino`: its names from the area down. Fails with
    /// ENOENT for an inode unlinked while open.
    pub(crate) fn real_path(&self, txn: &RoTxn, ino: Ino) -> Result<RealPath> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let inode = self.inode(txn, at)?;
            if inode.parent == Ino::NONE {
                return Err(Error::not_found());
            }
            names.push(inode.name);
            at = inode.parent;
        }
        Ok(RealPath::from_names(names.iter().rev().map(Vec::as_slice)))
    }

    /// The Real path of entry `name` in directory `parent`.
    pub(crate) fn real_child(&self, txn: &RoTxn, parent: Ino, name: &[u8]) -> Result<RealPath> {
        Ok(self.real_path(txn, parent)?.join(name))
    }
}
