//! `/.ctl/cache`: `key value` lines `used`, `max`, `blobs`, `pinned`,
//! `evicted` (read); `max SIZE` (sets `cache.max`: a size with suffix K,
//! M, G or T, or a percentage of the disk) and `evict` (drops every blob
//! that may go now) (write).

use super::super::{Error, Result, Vfs};
use super::usage;
use crate::store::Ino;
use crate::store::config::SetError;

/// The cache's figures, one `key value` line each.
pub(super) fn read(vfs: &Vfs, _owner: Ino) -> Result<String> {
    let r = vfs.cache_report()?;
    Ok(format!(
        "used {}\nmax {}\nblobs {}\npinned {}\nevicted {}\n",
        r.used, r.max, r.blobs, r.pinned, r.evicted
    ))
}

/// Runs `max SIZE` or `evict`.
pub(super) fn write(vfs: &Vfs, _owner: Ino, fields: &[&str]) -> Result<()> {
    match fields {
        ["max", size] => {
            let mut wtxn = vfs.store().write()?;
            vfs.store()
                .config
                .set(&mut wtxn, crate::store::config::Key::CacheMax, size)
                .map_err(|e| match e {
                    SetError::Store(e) => Error::Store(e),
                    other => Error::Invalid(other.to_string()),
                })?;
            wtxn.commit()?;
            vfs.cache_grew(0)
        }
        ["evict"] => vfs.evict_all().map(|_| ()),
        ["max" | "evict", ..] | [] => Err(usage("max SIZE | evict")),
        [cmd, ..] => Err(Error::Invalid(format!(
            "unknown command {cmd:?}: expected max or evict"
        ))),
    }
}
