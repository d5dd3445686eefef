//! `/.ctl/cache`: `key value` lines `used`, `max`, `blobs`, `pinned`,
//! `evicted` (read); `max SIZE` (sets `cache.max`: a size with suffix K,
//! M, G or T, or a percentage of the disk) and `evict` (drops every blob
//! that may go now) (write).

use super::super::{Error, Fs, Result};
use super::cmdtab::{self, Cmd};
use crate::store::Ino;
use crate::store::config::SetError;

/// The cache's figures, one `key value` line each.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let r = fs.cache.cache_report()?;
    Ok(format!(
        "used {}\nmax {}\nblobs {}\npinned {}\nevicted {}\n",
        r.used, r.max, r.blobs, r.pinned, r.evicted
    ))
}

/// Runs `max SIZE` or `evict`.
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    cmdtab::run(COMMANDS, fs, owner, fields)
}

/// The commands of `/.ctl/cache`.
const COMMANDS: &[Cmd] = &[
    Cmd {
        name: "max",
        args: "SIZE",
        run: |fs, _, args| {
            let mut wtxn = fs.store().write()?;
            fs.store()
                .config
                .set(&mut wtxn, crate::store::config::Key::CacheMax, args[0])
                .map_err(|e| match e {
                    SetError::Store(e) => Error::Store(e),
                    other => Error::Invalid(other.to_string()),
                })?;
            wtxn.commit()?;
            Ok(fs.cache.cache_grew(0)?)
        },
    },
    Cmd {
        name: "evict",
        args: "",
        run: |fs, _, _| Ok(fs.cache.evict_all().map(|_| ())?),
    },
];
