//! `/.ctl/id`: `PEERID NAME`, this peer's id and name.

use super::super::{Fs, Result};
use crate::store::Ino;

/// One line: the peer id and the `name` setting.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let txn = fs.store().read()?;
    let name = fs
        .store()
        .config
        .get(&txn, crate::store::config::Key::Name)?;
    Ok(format!("{} {}\n", fs.peer_id(), name))
}
