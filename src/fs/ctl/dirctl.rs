//! `DIR/.ctl/ctl` (write-only): `real NAME`, `unreal NAME`, `inherit NAME`
//! set the mode of entry NAME of DIR; `fetch NAME` brings an unreal file
//! whole into the cache (blocking; nothing to do for a real file) and
//! `evict NAME` drops it from there (EBUSY for a real file, or one open or
//! being fetched; EINVAL for a directory); `restore NAME HASH` makes a
//! kept version (`DIR/.ctl/versions`) the current one (ENOENT when there
//! is no such version, EHOSTUNREACH when no peer sent its bytes within
//! `net.timeout`).

use super::super::{Error, Fs, Result};
use super::cmdtab::{self, Cmd};
use super::mode::parse_mode_word;
use super::name_field;
use crate::store::Ino;
use crate::store::namespace::Kind;

/// The commands of `DIR/.ctl/ctl`: each takes the name of an entry of DIR.
const COMMANDS: &[Cmd] = &[
    Cmd {
        name: "real",
        args: "NAME",
        run: |fs, owner, args| on_entry(fs, owner, "real", args[0]),
    },
    Cmd {
        name: "unreal",
        args: "NAME",
        run: |fs, owner, args| on_entry(fs, owner, "unreal", args[0]),
    },
    Cmd {
        name: "inherit",
        args: "NAME",
        run: |fs, owner, args| on_entry(fs, owner, "inherit", args[0]),
    },
    Cmd {
        name: "fetch",
        args: "NAME",
        run: |fs, owner, args| on_entry(fs, owner, "fetch", args[0]),
    },
    Cmd {
        name: "evict",
        args: "NAME",
        run: |fs, owner, args| on_entry(fs, owner, "evict", args[0]),
    },
    Cmd {
        name: "restore",
        args: "NAME HASH",
        run: |fs, owner, args| restore(fs, owner, args[0], args[1]),
    },
];

/// `restore NAME HASH`: the kept version of entry `name` of `owner` with
/// blob `hash` becomes the current one.
fn restore(fs: &Fs, owner: Ino, name: &str, hash: &str) -> Result<()> {
    let name = name_field(name)?;
    let hash = crate::format::parse_hash(hash)
        .ok_or_else(|| Error::Invalid(format!("bad hash {hash:?}: expected 64 hex digits")))?;
    Ok(fs.tree.restore(owner, &name, hash)?)
}

/// Runs one command of [`COMMANDS`].
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    cmdtab::run(COMMANDS, fs, owner, fields)
}

/// Runs `verb` on entry `name` of directory `owner`.
fn on_entry(fs: &Fs, owner: Ino, verb: &str, name: &str) -> Result<()> {
    let name = name_field(name)?;
    let (ino, inode) = {
        let txn = fs.store().read()?;
        let ino = fs
            .store()
            .namespace
            .lookup(&txn, owner, &name)?
            .ok_or_else(|| Error::NotFound(format!("no entry {}", crate::format::escape(&name))))?;
        (ino, fs.tree.inode(&txn, ino)?)
    };
    match (verb, inode.hash) {
        ("fetch" | "evict", _) if inode.kind != Kind::File => {
            Err(Error::Invalid(format!("{verb} takes a file")))
        }
        ("fetch", _) if !inode.unreal => Ok(()),
        ("fetch", _) => Ok(fs.tree.fetch_into_cache(ino)?),
        ("evict", Some(hash)) if inode.unreal => Ok(fs.cache.evict_blob(hash)?),
        ("evict", _) => Err(Error::Busy(
            "the file is real, not cached: mark it unreal to let it go".into(),
        )),
        (word, _) => Ok(fs.tree.set_mode(ino, parse_mode_word(word)?)?),
    }
}
