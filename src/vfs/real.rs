//! The Real: complete local files, stored plain under `DATA/real/AREA/PATH`
//! so that they stay usable without realize. Paths are derived from the
//! namespace; these helpers do the file system calls on them.

use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::{Error, Result, Vfs};
use crate::store::{Ino, ROOT, RoTxn};

impl Vfs {
    /// The backing path of `ino`: `DATA/real` joined with the names from
    /// the root down. Fails with ENOENT for an inode unlinked while open.
    pub(super) fn real_path(&self, txn: &RoTxn, ino: Ino) -> Result<PathBuf> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let inode = self.inode(txn, at)?;
            if inode.parent == 0 {
                return Err(Error::not_found());
            }
            names.push(inode.name);
            at = inode.parent;
        }
        let mut path = self.real.clone();
        for name in names.iter().rev() {
            path.push(OsStr::from_bytes(name));
        }
        Ok(path)
    }

    /// The backing path of entry `name` in directory `parent`.
    pub(super) fn real_child(&self, txn: &RoTxn, parent: Ino, name: &[u8]) -> Result<PathBuf> {
        Ok(self.real_path(txn, parent)?.join(OsStr::from_bytes(name)))
    }
}

/// Sets the permission bits of an open backing file.
pub(super) fn chmod_file(file: &File, perm: u16) -> Result<()> {
    Ok(file.set_permissions(Permissions::from_mode(u32::from(perm)))?)
}

/// Sets the permission bits of a backing file or directory.
pub(super) fn chmod_path(path: &Path, perm: u16) -> Result<()> {
    Ok(std::fs::set_permissions(
        path,
        Permissions::from_mode(u32::from(perm)),
    )?)
}

fn timespec(time: Option<Option<SystemTime>>) -> TimeSpec {
    match time {
        None => TimeSpec::UTIME_OMIT,
        Some(None) => TimeSpec::UTIME_NOW,
        Some(Some(t)) => {
            let ts = crate::store::namespace::Timestamp::from(t);
            TimeSpec::new(ts.secs, i64::from(ts.nanos))
        }
    }
}

/// Sets access and modification times of a backing path without following
/// a symlink. `None`: leave; `Some(None)`: now.
pub(super) fn set_times(
    path: &Path,
    atime: Option<Option<SystemTime>>,
    mtime: Option<Option<SystemTime>>,
) -> Result<()> {
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &timespec(atime),
        &timespec(mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::Io(e.into()))
}
