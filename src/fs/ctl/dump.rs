//! `/.ctl/dump/YYYY/MMDD/AREA/PATH` (DESIGN.md): a read-only tree of each
//! area as it was at the end of each day (UTC) on which something
//! changed, computed by [`crate::sync::dump`]. Its entries are ordinary
//! read-only files and directories: a file reads as any unreal file does
//! (fetched, verified, cached) unless it is this peer's real file. Every
//! change under it is EROFS, logged in `/.ctl/errors`.
//!
//! Inode numbers: [`super::CtlNode`]'s bit and [`DUMP_BIT`], a kind
//! (root, year, day, entry) in bits 56 to 59 and a value below. Entries
//! below a day are numbered in the order they are first looked up
//! ([`DumpNames`]), for as long as the mount lasts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::super::io::{Handle, Opened, OpenedKind};
use super::super::{Attr, DirEntry, Error, Fs, Result, lock};
use super::CtlNode;
use crate::cache::BlobRef;
use crate::store::namespace::Kind;
use crate::store::{Ino, ROOT};
use crate::sync::dump::{Day, Shown};

/// Marks a control inode as one of the dump.
pub(super) const DUMP_BIT: u64 = 1 << 62;
const KIND_SHIFT: u32 = 56;
const VALUE: u64 = (1 << KIND_SHIFT) - 1;

/// A node of the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpNode {
    /// `/.ctl/dump`.
    Root,
    /// `/.ctl/dump/YYYY`.
    Year(u16),
    /// `/.ctl/dump/YYYY/MMDD`.
    Day(Day),
    /// An area or an entry below a day, by its number in [`DumpNames`].
    Entry(u32),
}

impl DumpNode {
    /// Decodes the dump part of a control inode number.
    pub(super) fn parse(ino: Ino) -> Option<DumpNode> {
        let value = ino.0 & VALUE;
        match (ino.0 >> KIND_SHIFT) & 0xf {
            1 => Some(DumpNode::Root),
            2 => u16::try_from(value).ok().map(DumpNode::Year),
            3 => Some(DumpNode::Day(Day {
                year: (value >> 16) as u16,
                month: (value >> 8) as u8,
                day: value as u8,
            })),
            4 => u32::try_from(value).ok().map(DumpNode::Entry),
            _ => None,
        }
    }

    /// Its inode number.
    pub(super) fn ino(self) -> u64 {
        let (kind, value) = match self {
            DumpNode::Root => (1, 0),
            DumpNode::Year(y) => (2, u64::from(y)),
            DumpNode::Day(d) => (
                3,
                u64::from(d.year) << 16 | u64::from(d.month) << 8 | u64::from(d.day),
            ),
            DumpNode::Entry(i) => (4, u64::from(i)),
        };
        super::CTL_BIT | DUMP_BIT | kind << KIND_SHIFT | value
    }
}

/// An entry of a dump directory: its node, what it shows, its name.
type Child = (DumpNode, Shown, Vec<u8>);

/// What an entry number stands for: a day, an area, a path in it.
type Place = (Day, Ino, Vec<u8>);

/// The numbers given to dump entries (see the module doc).
#[derive(Default)]
pub struct DumpNames {
    names: Mutex<(Vec<Place>, HashMap<Place, u32>)>,
}

impl DumpNames {
    fn number(&self, place: Place) -> DumpNode {
        let mut names = lock(&self.names);
        if let Some(&n) = names.1.get(&place) {
            return DumpNode::Entry(n);
        }
        let n = names.0.len() as u32;
        names.0.push(place.clone());
        names.1.insert(place, n);
        DumpNode::Entry(n)
    }

    fn place(&self, n: u32) -> Option<Place> {
        lock(&self.names).0.get(n as usize).cloned()
    }
}

impl Fs {
    fn dump_place(&self, n: u32) -> Result<Place> {
        self.dump_names.place(n).ok_or_else(Error::not_found)
    }

    /// The attributes an entry showing `shown` has.
    fn dump_shown_attr(&self, node: DumpNode, shown: &Shown, day: Option<Day>) -> Attr {
        let end = day.map_or_else(SystemTime::now, |d| d.end().min(SystemTime::now()));
        let (kind, size, perm, mtime) = match shown {
            Shown::Dir => (Kind::Dir, 0, 0o555, end),
            Shown::File { size, mtime, .. } => (Kind::File, *size, 0o444, (*mtime).into()),
        };
        Attr {
            ino: Ino(node.ino()),
            kind,
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            perm,
            nlink: 1,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    /// The mount path of dump node `node`, escaped, for messages.
    pub(crate) fn dump_path(&self, node: DumpNode) -> String {
        let root = format!("/{}/dump", super::CTL_NAME);
        match node {
            DumpNode::Root => root,
            DumpNode::Year(y) => format!("{root}/{y}"),
            DumpNode::Day(d) => format!("{root}/{}/{}", d.year, d.mmdd()),
            DumpNode::Entry(n) => match self.dump_place(n) {
                Ok((day, area, path)) => {
                    let area = self.mount_path(area);
                    let day = self.dump_path(DumpNode::Day(day));
                    match path.is_empty() {
                        true => format!("{day}{area}"),
                        false => format!("{day}{area}/{}", crate::format::escape(&path)),
                    }
                }
                Err(_) => root,
            },
        }
    }

    /// Attributes of a dump node; ENOENT for an entry that shows nothing.
    pub(super) fn dump_attr(&self, node: DumpNode) -> Result<Attr> {
        let (shown, day) = match node {
            DumpNode::Root | DumpNode::Year(_) => (Shown::Dir, None),
            DumpNode::Day(day) => (Shown::Dir, Some(day)),
            DumpNode::Entry(n) => {
                let (day, area, path) = self.dump_place(n)?;
                let shown = self
                    .tree
                    .dump_entry(day, area, &path)?
                    .ok_or_else(Error::not_found)?;
                (shown, Some(day))
            }
        };
        Ok(self.dump_shown_attr(node, &shown, day))
    }

    /// The entries of dump directory `node`: (node, what it shows, name).
    fn dump_entries(&self, node: DumpNode) -> Result<(Option<Day>, Vec<Child>)> {
        let days = || self.tree.dump_days();
        Ok(match node {
            DumpNode::Root => {
                let mut years: Vec<u16> = days()?.iter().map(|d| d.year).collect();
                years.dedup();
                let entries = years
                    .into_iter()
                    .map(|y| (DumpNode::Year(y), Shown::Dir, y.to_string().into_bytes()));
                (None, entries.collect())
            }
            DumpNode::Year(year) => {
                let entries = days()?
                    .into_iter()
                    .filter(|d| d.year == year)
                    .map(|d| (DumpNode::Day(d), Shown::Dir, d.mmdd().into_bytes()));
                (None, entries.collect())
            }
            DumpNode::Day(day) => {
                let txn = self.store.read()?;
                let mut entries = Vec::new();
                self.store.namespace.children(&txn, ROOT, 0, |_, entry| {
                    let node = self.dump_names.number((day, entry.ino, Vec::new()));
                    entries.push((node, Shown::Dir, entry.name));
                    Ok(true)
                })?;
                (Some(day), entries)
            }
            DumpNode::Entry(n) => {
                let (day, area, path) = self.dump_place(n)?;
                let mut entries = Vec::new();
                for (name, shown) in self.tree.dump_children(day, area, &path)? {
                    let mut child = path.clone();
                    if !child.is_empty() {
                        child.push(b'/');
                    }
                    child.extend_from_slice(&name);
                    let node = self.dump_names.number((day, area, child));
                    entries.push((node, shown, name));
                }
                (Some(day), entries)
            }
        })
    }

    /// Looks `name` up in dump directory `node`.
    pub(super) fn dump_lookup(&self, node: DumpNode, name: &[u8]) -> Result<Attr> {
        if let DumpNode::Entry(n) = node {
            let (_, _, path) = self.dump_place(n)?;
            if self.dump_attr(node)?.kind != Kind::Dir || path.len() + name.len() >= 32 << 10 {
                return Err(Error::not_found());
            }
        }
        let (day, entries) = self.dump_entries(node)?;
        let (child, shown, _) = entries
            .into_iter()
            .find(|(_, _, n)| n == name)
            .ok_or_else(Error::not_found)?;
        Ok(self.dump_shown_attr(child, &shown, day))
    }

    /// The parent of dump node `node`.
    fn dump_parent(&self, node: DumpNode) -> Result<u64> {
        Ok(match node {
            DumpNode::Root => CtlNode::Dir { owner: ROOT }.ino().0,
            DumpNode::Year(_) => DumpNode::Root.ino(),
            DumpNode::Day(day) => DumpNode::Year(day.year).ino(),
            DumpNode::Entry(n) => {
                let (day, area, path) = self.dump_place(n)?;
                if path.is_empty() {
                    return Ok(DumpNode::Day(day).ino());
                }
                let parent = match path.iter().rposition(|&b| b == b'/') {
                    Some(i) => path[..i].to_vec(),
                    None => Vec::new(),
                };
                self.dump_names.number((day, area, parent)).ino()
            }
        })
    }

    /// Lists dump directory `node` from `offset`.
    pub(super) fn dump_readdir(
        &self,
        node: DumpNode,
        offset: u64,
        mut emit: impl FnMut(DirEntry, Option<Attr>) -> bool,
    ) -> Result<()> {
        let this = self.dump_attr(node)?;
        if this.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let parent = Ino(self.dump_parent(node)?);
        let mut all = vec![
            (this.ino, this.clone(), b".".to_vec()),
            (parent, self.getattr(parent)?, b"..".to_vec()),
        ];
        let (day, entries) = self.dump_entries(node)?;
        for (child, shown, name) in entries {
            let attr = self.dump_shown_attr(child, &shown, day);
            all.push((attr.ino, attr, name));
        }
        for (i, (ino, attr, name)) in all.into_iter().enumerate().skip(offset as usize) {
            let entry = DirEntry {
                ino,
                next: i as u64 + 1,
                kind: attr.kind,
                name,
            };
            if !emit(entry, Some(attr)) {
                break;
            }
        }
        Ok(())
    }

    /// Opens a file of the dump for reading (EROFS for writing): this
    /// peer's real file when the version is the one it shows now, the
    /// blob through the cache otherwise.
    pub(super) fn dump_open(&self, node: DumpNode, flags: i32) -> Result<Opened> {
        let DumpNode::Entry(n) = node else {
            return Err(Error::IsDir);
        };
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            let at = self.dump_path(node);
            return Err(self.refuse(&at, "open for writing", Error::ReadOnly));
        }
        let (day, area, path) = self.dump_place(n)?;
        let Some(Shown::File {
            hash, size, ino, ..
        }) = self.tree.dump_entry(day, area, &path)?
        else {
            return Err(Error::IsDir);
        };
        let txn = self.store.read()?;
        if let Some(ino) = ino
            && let Ok(inode) = self.tree.inode(&txn, ino)
            && !inode.unreal
            && inode.hash == Some(hash)
        {
            let real = self.tree.real_path(&txn, ino)?;
            drop(txn);
            let file = self.real.open_file(&real, crate::real::Open::read())?;
            return Ok(self.open_real(ino, file, false, false));
        }
        let blob = BlobRef {
            hash,
            size,
            area,
            area_name: self.tree.inode(&txn, area)?.name,
            path,
        };
        drop(txn);
        let uf = self.tree.open_blob(Ino::NONE, blob)?;
        let fh = self.new_handle(Handle::Unreal(Arc::new(uf)));
        Ok(Opened {
            fh,
            kind: OpenedKind::Unreal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_inode_numbers_round_trip() {
        let day = Day::parse(2026, "1130").expect("a day");
        for node in [
            DumpNode::Root,
            DumpNode::Year(2026),
            DumpNode::Day(day),
            DumpNode::Entry(0),
            DumpNode::Entry(123_456),
        ] {
            assert_eq!(DumpNode::parse(Ino(node.ino())), Some(node));
        }
    }
}
