//! `/.ctl/errors`: the last [`KEEP`] failed commands, one per line,
//! `TIME FILE COMMAND: REASON` (TIME RFC 3339 UTC; FILE the mount path of
//! the control file or entry; COMMAND the text written, newlines as `\n`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use super::super::{Error, Fs, Result, lock};
use crate::store::Ino;

/// How many lines are kept.
pub const KEEP: usize = 100;

/// The in-memory log of failed commands (it starts empty at each mount).
#[derive(Default)]
pub struct ErrorLog {
    lines: Mutex<VecDeque<String>>,
}

impl ErrorLog {
    /// Appends a failure, dropping the oldest past [`KEEP`].
    pub fn push(&self, file: &str, command: &str, error: &Error) {
        let reason = error.to_string().replace('\n', " ");
        let line = format!(
            "{} {file} {command}: {reason}\n",
            crate::format::format_time(SystemTime::now())
        );
        let mut lines = lock(&self.lines);
        if lines.len() == KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// The log, oldest first.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    Ok(lock(&fs.errors.lines).iter().map(String::as_str).collect())
}
