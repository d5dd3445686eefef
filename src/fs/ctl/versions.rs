//! `DIR/.ctl/versions` (read-only): the kept versions of the entries of
//! DIR ([`crate::sync::kept`]), newest first, one per line:
//! `NAME TIME PEER HASH SIZE WHERE` (DESIGN.md). TIME is when the version
//! stopped being the current one here (RFC 3339, UTC), PEER the name of
//! the peer that wrote it, WHERE `real` (the entry shows it again),
//! `cached` (its bytes are in this peer's cache) or `peers` (they are
//! fetched from the peers that still have them when restored).

use super::super::{Fs, Result};
use crate::format::{escape, format_hash, format_time};
use crate::store::Ino;

/// The lines of `DIR/.ctl/versions` for directory `owner`.
pub(super) fn read(fs: &Fs, owner: Ino) -> Result<String> {
    let store = fs.store();
    let txn = store.read()?;
    let inode = fs.tree.inode(&txn, owner)?;
    if inode.area == Ino::NONE {
        return Ok(String::new());
    }
    let dir = match owner == inode.area {
        true => Vec::new(),
        false => fs.tree.area_path(&txn, owner)?,
    };
    let mut kept = store.kept.in_dir(&txn, inode.area, &dir)?;
    kept.sort_by_key(|k| std::cmp::Reverse((k.until.secs, k.until.nanos)));
    let mut out = String::new();
    for k in kept {
        let shown = match store.namespace.lookup(&txn, owner, k.name())? {
            Some(ino) => Some(fs.tree.inode(&txn, ino)?),
            None => None,
        };
        let place = if shown.is_some_and(|i| !i.unreal && i.hash == Some(k.hash)) {
            "real"
        } else if store.cache.get(&txn, &k.hash)?.is_some_and(|c| c.verified) {
            "cached"
        } else {
            "peers"
        };
        out.push_str(&format!(
            "{} {} {} {} {} {}\n",
            escape(k.name()),
            format_time(k.until.into()),
            fs.peer_name(&txn, k.author)?,
            format_hash(Some(&k.hash)),
            k.size,
            place
        ));
    }
    Ok(out)
}
