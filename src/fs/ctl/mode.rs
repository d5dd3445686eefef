//! `DIR/.ctl/mode`: the effective mode of DIR, `real` or `unreal` (read);
//! `real`, `unreal` or `inherit` (write). Modes are stored and inherited;
//! setting one queues its subtree for the life thread ([`crate::fs::life`]).

use super::super::{Error, Fs, Result};
use super::usage;
use crate::store::namespace::Mode;
use crate::store::{Ino, ROOT, RoTxn};

impl Fs {
    /// The mode in force at `ino`, and whether it is set on `ino` itself.
    /// Walks up to the first entry with a mode; an area without one takes
    /// `config mode.local`.
    pub(crate) fn effective_mode(&self, txn: &RoTxn, ino: Ino) -> Result<(Mode, bool)> {
        let mut at = ino;
        loop {
            let inode = self.inode(txn, at)?;
            if let Some(mode) = inode.mode {
                return Ok((mode, at == ino));
            }
            if inode.parent == ROOT || inode.parent == 0 || at == ROOT {
                let default = self
                    .store
                    .config
                    .get(txn, crate::store::config::Key::ModeLocal)?;
                return Ok((Mode::parse(&default).unwrap_or(Mode::Real), false));
            }
            at = inode.parent;
        }
    }

    /// Sets (`Some`) or clears (`None`, inherit) the mode of `ino`.
    pub(crate) fn set_mode(&self, ino: Ino, mode: Option<Mode>) -> Result<()> {
        let mut wtxn = self.store.write()?;
        let mut inode = self.inode(&wtxn, ino)?;
        inode.mode = mode;
        self.store.namespace.put(&mut wtxn, ino, &inode)?;
        wtxn.commit()?;
        self.life_job(crate::fs::life::Job::Scan(ino));
        Ok(())
    }
}

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
    Ok(format!("{}\n", fs.effective_mode(&txn, owner)?.0.as_str()))
}

/// `real`, `unreal` or `inherit`.
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    let [word] = fields else {
        return Err(usage("real | unreal | inherit"));
    };
    fs.set_mode(owner, parse_mode_word(word)?)
}
