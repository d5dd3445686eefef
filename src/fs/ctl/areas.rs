//! `/.ctl/areas`: `AREA MODE FILES BYTES PEERID,PEERID…` per area (read);
//! `create AREA`, `share AREA PEERID`, `unshare AREA PEERID`, `remove AREA`
//! (write). FILES and BYTES count recorded files and their recorded sizes.

use std::collections::HashMap;

use super::super::{Caller, Error, Fs, Result};
use super::cmdtab::{self, Cmd};
use super::name_field;
use crate::format::escape;
use crate::ids::PeerId;
use crate::store::namespace::Kind;
use crate::store::{Ino, ROOT};

/// One line per area.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let store = fs.store();
    let txn = store.read()?;
    let mut counts: HashMap<Ino, (u64, u64)> = HashMap::new();
    store.namespace.for_each(&txn, |_, inode| {
        if inode.kind == Kind::File && inode.parent != Ino::NONE {
            let c = counts.entry(inode.area).or_default();
            c.0 += 1;
            c.1 += inode.size;
        }
        Ok(())
    })?;
    let mut out = String::new();
    let mut failed = None;
    store.namespace.children(&txn, ROOT, 0, |_, entry| {
        let line = (|| -> Result<String> {
            let (mode, _) = fs.tree.effective_mode(&txn, entry.ino)?;
            let area = store.areas.get(&txn, entry.ino)?.unwrap_or_default();
            let peers = if area.shares.is_empty() {
                "-".to_string()
            } else {
                let ids: Vec<String> = area.shares.iter().map(PeerId::to_string).collect();
                ids.join(",")
            };
            let (files, bytes) = counts.get(&entry.ino).copied().unwrap_or_default();
            Ok(format!(
                "{} {} {files} {bytes} {peers}\n",
                escape(&entry.name),
                mode.as_str()
            ))
        })();
        match line {
            Ok(line) => out.push_str(&line),
            Err(e) => failed = Some(e),
        }
        Ok(failed.is_none())
    })?;
    failed.map_or(Ok(out), Err)
}

/// The area named by a field: ENOENT when there is none.
fn area(fs: &Fs, field: &str) -> Result<(Ino, Vec<u8>)> {
    let name = name_field(field)?;
    let txn = fs.store().read()?;
    let ino = fs
        .store()
        .namespace
        .lookup(&txn, ROOT, &name)?
        .ok_or_else(|| Error::NotFound(format!("no area {field}")))?;
    Ok((ino, name))
}

/// Changes the peers area `ino` is shared with, in one transaction.
fn change_shares(
    fs: &Fs,
    ino: Ino,
    change: impl FnOnce(&mut Vec<PeerId>) -> Result<()>,
) -> Result<()> {
    let store = fs.store();
    let mut wtxn = store.write()?;
    let mut record = store.areas.get(&wtxn, ino)?.unwrap_or_default();
    change(&mut record.shares)?;
    store.areas.put(&mut wtxn, ino, &record)?;
    wtxn.commit()?;
    Ok(())
}

/// The commands of `/.ctl/areas`.
const COMMANDS: &[Cmd] = &[
    Cmd {
        name: "create",
        args: "AREA",
        run: |fs, _, args| {
            let name = name_field(args[0])?;
            let root = fs.getattr(ROOT)?;
            let caller = Caller {
                uid: root.uid,
                gid: root.gid,
            };
            fs.create_area(&name, 0o755, caller).map(|_| ())
        },
    },
    Cmd {
        name: "share",
        args: "AREA PEERID",
        run: |fs, _, args| share(fs, args[0], args[1]),
    },
    Cmd {
        name: "unshare",
        args: "AREA PEERID",
        run: |fs, _, args| unshare(fs, args[0], args[1]),
    },
    Cmd {
        name: "remove",
        args: "AREA",
        run: |fs, _, args| {
            let (_, name) = area(fs, args[0])?;
            fs.remove_area(&name).map_err(|e| match e {
                Error::NotEmpty => {
                    Error::Busy("the area is not empty: remove its files first".into())
                }
                other => other,
            })?;
            fs.tree.forget_entry(ROOT, &name);
            Ok(())
        },
    },
];

/// Shares area `name` with `peer`; accepting a share of an area this peer
/// lacks creates it, in `config mode.remote`.
fn share(fs: &Fs, name: &str, peer: &str) -> Result<()> {
    let peer = super::peers::known_peer(fs, peer)?;
    let wanted = name_field(name)?;
    if !wanted.contains(&b'/') {
        fs.tree.area_named(&wanted, true)?;
    }
    let (ino, _) = area(fs, name)?;
    change_shares(fs, ino, |shares| {
        if shares.contains(&peer) {
            return Err(Error::Exists(format!(
                "{name} is already shared with {peer}"
            )));
        }
        shares.push(peer);
        Ok(())
    })
}

/// Stops sharing area `name` with `peer`.
fn unshare(fs: &Fs, name: &str, peer: &str) -> Result<()> {
    let (ino, _) = area(fs, name)?;
    let peer = super::peers::known_peer(fs, peer)?;
    change_shares(fs, ino, |shares| {
        if !shares.contains(&peer) {
            return Err(Error::NotFound(format!("{name} is not shared with {peer}")));
        }
        shares.retain(|k| *k != peer);
        Ok(())
    })
}

/// Runs one command of [`COMMANDS`].
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    cmdtab::run(COMMANDS, fs, owner, fields)
}
