//! `/.ctl/health`: one line per problem, `AREA PATH PROBLEM DETAIL`
//! (DESIGN.md "The control tree"), sorted by area and path. The problem
//! shown so far is `pending`: a file open for writing, so not yet
//! recorded (DETAIL `open`); `now` records every closed file but waits
//! for these. `copies` and `corrupt` come with a later change.

use super::super::{Fs, Result};
use crate::format::escape;
use crate::store::Ino;

/// The problems, one line each.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let tree = fs.tree();
    let txn = fs.store().read()?;
    let mut lines = Vec::new();
    for ino in tree.recorder.writing() {
        // Gone or unlinked while open: nothing to show by path.
        let Ok(inode) = tree.inode(&txn, ino) else {
            continue;
        };
        if inode.parent == Ino::NONE {
            continue;
        }
        let (Ok(area), Ok(path)) = (tree.inode(&txn, inode.area), tree.area_path(&txn, ino)) else {
            continue;
        };
        lines.push((area.name, path));
    }
    lines.sort();
    Ok(lines
        .iter()
        .map(|(area, path)| format!("{} {} pending open\n", escape(area), escape(path)))
        .collect())
}
