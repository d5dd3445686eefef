//! What realize keeps in DATA beside the Real (the database, the cache,
//! the stash, the key, the lock) is private to its user (issue "Hostile
//! peers and hard faults", point 3): directories 0700 and files 0600,
//! whatever the umask. A file fetched from a peer may be one its owner
//! keeps at 0600; its bytes in the cache must not be readable by another
//! local user. Files in the Real keep the modes their users gave them.

use std::fs::{OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of realize's own directories in DATA.
pub const DIR_MODE: u32 = 0o700;

/// Mode of realize's own files in DATA.
pub const FILE_MODE: u32 = 0o600;

/// Makes directory `path` (and missing parents) and sets its mode to
/// [`DIR_MODE`], also when it existed with another mode.
pub fn dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// Options that create a file with mode [`FILE_MODE`] (the umask may
/// only take bits away).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Sets file `path`'s mode to [`FILE_MODE`]: a file from the Real (kept
/// with its owner's mode) entering the cache.
pub fn file(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
}
