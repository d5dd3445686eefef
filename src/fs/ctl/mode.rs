//! `DIR/.ctl/mode`: the effective mode of DIR, `real` or `unreal` (read);
//! `real`, `unreal` or `inherit` (write). Modes are stored and inherited;
//! setting one queues its subtree for the life thread ([`crate::sync::life`]).

use super::super::{Error, Fs, Result};
use super::usage;
use crate::store::Ino;
use crate::store::namespace::Mode;

impl Fs {}

/// Parses `real`, `unreal` or `inherit` (`None`).
pub(crate) fn parse_mode_word(word: &str) -> Result<Option<Mode>> {
    match word {
        "inherit" => Ok(None),
        other => Mode::parse(other).map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "bad mode {other:?}: expected real, unreal or inherit"
            ))
        }),
    }
}

/// The effective mode of the directory.
pub(super) fn read(fs: &Fs, owner: Ino) -> Result<String> {
    let txn = fs.store().read()?;
    Ok(format!(
        "{}\n",
        fs.tree.effective_mode(&txn, owner)?.0.as_str()
    ))
}

/// `real`, `unreal` or `inherit`.
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    let [word] = fields else {
        return Err(usage("real | unreal | inherit"));
    };
    Ok(fs.tree.set_mode(owner, parse_mode_word(word)?)?)
}
