//! `/.ctl/id`: `PEERID NAME`, this peer's id and name.

use super::super::{Result, Vfs};
use crate::store::Ino;

/// One line: the peer id and the `name` setting.
pub(super) fn read(vfs: &Vfs, _owner: Ino) -> Result<String> {
    let txn = vfs.store().read()?;
    let name = vfs
        .store()
        .config
        .get(&txn, crate::store::config::Key::Name)?;
    Ok(format!("{} {}\n", vfs.peer_id(), name))
}
