//! History: per area, the ordered log of local operations (DESIGN.md "Sync").
//!
//! Database `history`: area inode (u64 BE) ‖ sequence number (u64 BE) →
//! [`Op`] (postcard). Sequence numbers come from the area's record
//! ([`super::areas`]) and grow by one per op.

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::namespace::Timestamp;
use super::{Error, Ino, Postcard, Result, key_prefix, key_u64};
use crate::ids::{BlobHash, Seq};

/// What an op did.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A new file (or symlink) at a path.
    Create,
    /// The same path, a new blob based on the old one.
    Edit,
    /// The same path, an unrelated blob (truncated to zero or replaced).
    Overwrite,
    /// A move within the area.
    Rename,
    /// A file or symlink removed.
    Delete,
    /// A directory created.
    Mkdir,
    /// A directory removed.
    Rmdir,
}

impl OpKind {
    /// The word used in `/.ctl/history`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Edit => "edit",
            OpKind::Overwrite => "overwrite",
            OpKind::Rename => "rename",
            OpKind::Delete => "delete",
            OpKind::Mkdir => "mkdir",
            OpKind::Rmdir => "rmdir",
        }
    }
}

/// One operation of an area's history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// When it was recorded.
    pub time: Timestamp,
    /// What it did.
    pub kind: OpKind,
    /// Path inside the area, components joined by `/`.
    pub path: Vec<u8>,
    /// The blob at `path` after the op (create, edit, overwrite), the blob
    /// moved (rename) or removed (delete); `None` for directories.
    pub hash: Option<BlobHash>,
    /// For an edit, the blob it is based on.
    pub base: Option<BlobHash>,
    /// For a rename, the new path inside the area.
    pub new_path: Option<Vec<u8>>,
}

/// The history database.
pub struct History {
    db: Database<'static, Bytes, Postcard<Op>>,
}

impl History {
    pub(super) fn new(db: Database<'static, Bytes, Postcard<Op>>) -> History {
        History { db }
    }

    /// Stores `op` as number `seq` of `area`.
    pub fn append(&self, wtxn: &mut RwTxn, area: Ino, seq: Seq, op: &Op) -> Result<()> {
        Ok(self
            .db
            .put(wtxn, &key_u64(area, &seq.0.to_be_bytes()), op)?)
    }

    /// Visits every op, by area then sequence number.
    pub fn for_each(
        &self,
        txn: &RoTxn,
        mut visit: impl FnMut(Ino, Seq, Op) -> Result<()>,
    ) -> Result<()> {
        for item in self.db.iter(txn)? {
            let (key, op) = item.map_err(|_| Error::Corrupt("history"))?;
            let area = Ino(key_prefix(key)?);
            let seq = Seq(key_prefix(&key[8..])?);
            visit(area, seq, op)?;
        }
        Ok(())
    }

    /// Deletes the ops of `area` numbered up to `upto` (acknowledged by
    /// every peer the area is shared with).
    pub fn trim(&self, wtxn: &mut RwTxn, area: Ino, upto: Seq) -> Result<()> {
        let start = key_u64(area, &[]);
        let end = key_u64(area, &upto.0.to_be_bytes());
        let range = (
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Included(end.as_slice()),
        );
        self.db.delete_range(wtxn, &range)?;
        Ok(())
    }

    /// Deletes every op of `area`.
    pub fn remove_area(&self, wtxn: &mut RwTxn, area: Ino) -> Result<()> {
        let start = key_u64(area, &[]);
        let end = key_u64(area, &u64::MAX.to_be_bytes());
        let range = (
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Included(end.as_slice()),
        );
        self.db.delete_range(wtxn, &range)?;
        Ok(())
    }
}
