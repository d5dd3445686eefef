//! `DIR/.ctl/ctl` (write-only): `real NAME`, `unreal NAME`, `inherit NAME`
//! set the mode of entry NAME of DIR; `fetch NAME` brings an unreal file
//! whole into the cache (blocking; nothing to do for a real file) and
//! `evict NAME` drops it from there (EBUSY for a real file, or one open or
//! being fetched; EINVAL for a directory).

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
    let (ino, inode) = {
        let txn = vfs.store().read()?;
        let ino = vfs
            .store()
            .namespace
            .lookup(&txn, owner, &name)?
            .ok_or_else(|| Error::NotFound(format!("no entry {}", crate::format::escape(&name))))?;
        (ino, vfs.inode(&txn, ino)?)
    };
    match (*verb, inode.hash) {
        ("fetch" | "evict", _) if inode.kind != Kind::File => {
            Err(Error::Invalid(format!("{verb} takes a file")))
        }
        ("fetch", _) if !inode.unreal => Ok(()),
        ("fetch", _) => vfs.fetch_into_cache(ino),
        ("evict", Some(hash)) if inode.unreal => vfs.evict_blob(hash),
        ("evict", _) => Err(Error::Busy(
            "the file is real, not cached: mark it unreal to let it go".into(),
        )),
        (word, _) => vfs.set_mode(ino, parse_mode_word(word)?),
    }
}
