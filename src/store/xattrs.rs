//! User extended attributes. Database `xattrs`: inode (u64 BE) ‖ name →
//! value bytes. Names are whole (`user.…`); values are at most
//! [`MAX_VALUE`] bytes, as on Linux (XATTR_SIZE_MAX).

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};

use super::{Ino, Result, key_u64};

/// Largest value accepted, in bytes (Linux XATTR_SIZE_MAX).
pub const MAX_VALUE: usize = 65536;

/// The xattrs database.
pub struct Xattrs {
    db: Database<'static, Bytes, Bytes>,
}

impl Xattrs {
    pub(super) fn new(db: Database<'static, Bytes, Bytes>) -> Xattrs {
        Xattrs { db }
    }

    /// The value of attribute `name` of `ino`.
    pub fn get(&self, txn: &RoTxn, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(txn, &key_u64(ino, name))?.map(<[u8]>::to_vec))
    }

    /// Sets attribute `name` of `ino`.
    pub fn put(&self, wtxn: &mut RwTxn, ino: Ino, name: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(wtxn, &key_u64(ino, name), value)?)
    }

    /// Removes attribute `name` of `ino`; false when it was not set.
    pub fn remove(&self, wtxn: &mut RwTxn, ino: Ino, name: &[u8]) -> Result<bool> {
        Ok(self.db.delete(wtxn, &key_u64(ino, name))?)
    }

    /// The attribute names of `ino`.
    pub fn names(&self, txn: &RoTxn, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let prefix = key_u64(ino, &[]);
        let mut names = Vec::new();
        for item in self.db.prefix_iter(txn, &prefix)? {
            let (key, _) = item?;
            names.push(key[8..].to_vec());
        }
        Ok(names)
    }

    /// Removes every attribute of `ino`.
    pub fn remove_all(&self, wtxn: &mut RwTxn, ino: Ino) -> Result<()> {
        for name in self.names(wtxn, ino)? {
            self.remove(wtxn, ino, &name)?;
        }
        Ok(())
    }
}
