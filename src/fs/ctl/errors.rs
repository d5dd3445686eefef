//! `/.ctl/errors`: the last [`crate::stats::KEEP`] failed commands, one per line,
//! `TIME FILE COMMAND: REASON` (TIME RFC 3339 UTC; FILE the mount path of
//! the control file or entry; COMMAND the text written, newlines as `\n`).

use super::super::{Fs, Result};
use crate::store::Ino;

/// The log, oldest first.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    Ok(fs.errors.lines())
}
