//! `/.ctl/conflicts`: `AREA PATH KEPT_HASH COPY_PATH`, one line per
//! version that lost a conflict and is shown at COPY_PATH (read);
//! `clear AREA PATH` forgets the conflicts of PATH, keeping the copies as
//! ordinary files (write).

use super::super::{Error, Fs, Result};
use super::cmdtab::{self, Cmd};
use super::name_field;
use crate::format::{escape, format_hash};
use crate::store::{Ino, ROOT};
use crate::sync::merge::{Content, conflict_path, losers};

/// One line per conflict copy, by area and path.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let store = fs.store();
    let txn = store.read()?;
    let mut areas = Vec::new();
    store.namespace.children(&txn, ROOT, 0, |_, e| {
        areas.push((e.ino, e.name));
        Ok(true)
    })?;
    let mut out = String::new();
    for (area, name) in areas {
        store.versions.for_each(&txn, area, |path, record| {
            let kept = match record.siblings.first().map(|w| &w.content) {
                Some(Content::File(hash)) => format_hash(Some(hash)),
                _ => "-".to_string(),
            };
            for loser in losers(&record.siblings) {
                let copy = conflict_path(path, loser);
                out.push_str(&format!(
                    "{} {} {kept} {}\n",
                    escape(&name),
                    escape(path),
                    escape(&copy)
                ));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Runs `clear AREA PATH`.
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    cmdtab::run(COMMANDS, fs, owner, fields)
}

/// The commands of `/.ctl/conflicts`.
const COMMANDS: &[Cmd] = &[Cmd {
    name: "clear",
    args: "AREA PATH",
    run: |fs, _, args| {
        let (area, path) = (name_field(args[0])?, name_field(args[1])?);
        let ino = fs
            .tree
            .area_named(&area, false)?
            .ok_or_else(|| Error::NotFound(format!("no area {}", escape(&area))))?;
        Ok(fs.tree.clear_conflict(ino, &path)?)
    },
}];
