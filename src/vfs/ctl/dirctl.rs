//! `DIR/.ctl/ctl` (write-only): `real NAME`, `unreal NAME`, `inherit NAME`
//! set the mode of entry NAME of DIR; `fetch NAME` brings a file into the
//! cache and `evict NAME` drops it from there. Every file is real until
//! the Unreal exists, so `fetch` has nothing to do and `evict` answers
//! EBUSY (a real file is not in the cache).

use super::super::{Error, Result, Vfs};
use super::mode::parse_mode_word;
use super::{name_field, usage};
use crate::store::Ino;
use crate::store::namespace::Kind;

/// Runs one command of the table above.
pub(super) fn write(vfs: &Vfs, owner: Ino, fields: &[&str]) -> Result<()> {
    let [verb, name] = fields else {
        return Err(usage("real|unreal|inherit|fetch|evict NAME"));
    };
    if !matches!(*verb, "real" | "unreal" | "inherit" | "fetch" | "evict") {
        return Err(Error::Invalid(format!(
            "unknown command {verb:?}: expected real, unreal, inherit, fetch or evict"
        )));
    }
    let name = name_field(name)?;
    let (ino, kind) = {
        let txn = vfs.store().read()?;
        let ino = vfs
            .store()
            .namespace
            .lookup(&txn, owner, &name)?
            .ok_or_else(|| Error::NotFound(format!("no entry {}", crate::format::escape(&name))))?;
        (ino, vfs.inode(&txn, ino)?.kind)
    };
    match *verb {
        "fetch" => Ok(()),
        "evict" if kind == Kind::Dir => Err(Error::Invalid("evict takes a file".into())),
        "evict" => Err(Error::Busy(
            "the file is real, not cached: mark it unreal to let it go".into(),
        )),
        word => vfs.set_mode(ino, parse_mode_word(word)?),
    }
}
