//! Counters of the store and its layout number. Database `meta`: name →
//! u64 (BE).

use heed::byteorder::BE;
use heed::types::{Str, U64};
use heed::{Database, RwTxn};

use super::{Ino, ROOT, Result};

const NEXT_INO: &str = "next_ino";

/// The layout of the databases: 1 once `subdirs` has been counted.
const LAYOUT: &str = "layout";

/// The meta database.
pub struct Meta {
    db: Database<'static, Str, U64<BE>>,
}

impl Meta {
    pub(super) fn new(db: Database<'static, Str, U64<BE>>) -> Meta {
        Meta { db }
    }

    /// Allocates a fresh inode number; numbers are never reused, so an inode
    /// number the kernel still caches never names another file.
    pub fn alloc_ino(&self, wtxn: &mut RwTxn) -> Result<Ino> {
        let ino = self.db.get(wtxn, NEXT_INO)?.unwrap_or(ROOT.0 + 1);
        self.db.put(wtxn, NEXT_INO, &(ino + 1))?;
        Ok(Ino(ino))
    }

    /// The layout the databases were last brought to (0 for a database
    /// made before layouts were numbered).
    pub fn layout(&self, txn: &heed::RoTxn) -> Result<u64> {
        Ok(self.db.get(txn, LAYOUT)?.unwrap_or(0))
    }

    /// Notes that the databases are in layout `layout`.
    pub fn set_layout(&self, wtxn: &mut RwTxn, layout: u64) -> Result<()> {
        Ok(self.db.put(wtxn, LAYOUT, &layout)?)
    }
}
