//! The control tree (DESIGN.md "The control tree"): `/.ctl/` and a `.ctl/`
//! in every directory of an area, served by the same dispatcher.
//!
//! Control inodes are not in LMDB: their number encodes them,
//! `1<<63 | owner<<4 | index`, where `owner` is the directory holding the
//! `.ctl`, index 0 the `.ctl` directory itself and index n the n-th entry of
//! its table ([`ROOT_FILES`] at the root, [`DIR_FILES`] elsewhere). Each
//! file is one module with its reader and its command table, parsed in
//! one place ([`cmdtab`]).

mod areas;
mod cache;
mod cmdtab;
mod config;
mod conflicts;
mod consensus;
mod dirctl;
pub mod dump;
pub mod errors;
mod health;
mod history;
mod id;
pub(crate) mod mode;
mod peers;
pub mod stats;
mod status;
mod transfers;
mod versions;

use std::time::SystemTime;

pub(crate) use mode::parse_mode_word;

use super::io::{Handle, Opened, OpenedKind};
use super::{Attr, DirEntry, Error, Fs, Result};
use crate::store::namespace::Kind;
use crate::store::{Ino, ROOT};

pub use crate::sync::CTL_NAME;

const CTL_BIT: u64 = 1 << 63;

/// Reads a control file: the text of its snapshot.
type Reader = fn(&Fs, Ino) -> Result<String>;
/// Runs one command, split into fields, on a control file of `owner`.
type Writer = fn(&Fs, Ino, &[&str]) -> Result<()>;

/// One control file.
struct Spec {
    name: &'static str,
    read: Option<Reader>,
    write: Option<Writer>,
}

/// The files of `/.ctl/`.
const ROOT_FILES: &[Spec] = &[
    Spec {
        name: "id",
        read: Some(id::read),
        write: None,
    },
    Spec {
        name: "peers",
        read: Some(peers::read),
        write: Some(peers::write),
    },
    Spec {
        name: "areas",
        read: Some(areas::read),
        write: Some(areas::write),
    },
    Spec {
        name: "history",
        read: Some(history::read),
        write: None,
    },
    Spec {
        name: "config",
        read: Some(config::read),
        write: Some(config::write),
    },
    Spec {
        name: "stats",
        read: Some(stats::read),
        write: None,
    },
    Spec {
        name: "errors",
        read: Some(errors::read),
        write: None,
    },
    Spec {
        name: "consensus",
        read: Some(consensus::read),
        write: Some(consensus::write),
    },
    Spec {
        name: "conflicts",
        read: Some(conflicts::read),
        write: Some(conflicts::write),
    },
    Spec {
        name: "transfers",
        read: Some(transfers::read),
        write: None,
    },
    Spec {
        name: "cache",
        read: Some(cache::read),
        write: Some(cache::write),
    },
    Spec {
        name: "health",
        read: Some(health::read),
        write: None,
    },
];

/// The files of `DIR/.ctl/` in every directory of an area.
const DIR_FILES: &[Spec] = &[
    Spec {
        name: "mode",
        read: Some(mode::read),
        write: Some(mode::write),
    },
    Spec {
        name: "status",
        read: Some(status::read),
        write: None,
    },
    Spec {
        name: "ctl",
        read: None,
        write: Some(dirctl::write),
    },
    Spec {
        name: "versions",
        read: Some(versions::read),
        write: None,
    },
];

/// A node of the control tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlNode {
    /// The `.ctl` directory inside directory `owner`.
    Dir {
        /// The directory holding it.
        owner: Ino,
    },
    /// Entry `index` (from 1) of the table of `owner`'s `.ctl`.
    File {
        /// The directory holding the `.ctl`.
        owner: Ino,
        /// Position in the table, from 1.
        index: u8,
    },
    /// A node of `/.ctl/dump`.
    Dump(dump::DumpNode),
}

fn table(owner: Ino) -> &'static [Spec] {
    if owner == ROOT { ROOT_FILES } else { DIR_FILES }
}

impl CtlNode {
    /// Decodes a control inode number; `None` for a namespace inode.
    pub fn parse(ino: Ino) -> Option<CtlNode> {
        if ino.0 & CTL_BIT == 0 {
            return None;
        }
        if ino.0 & dump::DUMP_BIT != 0 {
            return dump::DumpNode::parse(ino).map(CtlNode::Dump);
        }
        let owner = Ino((ino.0 & !CTL_BIT) >> 4);
        let index = (ino.0 & 0xf) as u8;
        match index {
            0 => Some(CtlNode::Dir { owner }),
            i if usize::from(i) <= table(owner).len() => Some(CtlNode::File { owner, index: i }),
            _ => None,
        }
    }

    /// The inode number of this node.
    pub fn ino(self) -> Ino {
        Ino(match self {
            CtlNode::Dir { owner } => CTL_BIT | owner.0 << 4,
            CtlNode::File { owner, index } => CTL_BIT | owner.0 << 4 | u64::from(index),
            CtlNode::Dump(node) => node.ino(),
        })
    }

    fn spec(self) -> Option<&'static Spec> {
        match self {
            CtlNode::Dir { .. } | CtlNode::Dump(_) => None,
            CtlNode::File { owner, index } => table(owner).get(usize::from(index) - 1),
        }
    }
}

/// An open control file: the snapshot taken at open.
pub(super) struct CtlHandle {
    node: CtlNode,
    snapshot: Vec<u8>,
}

impl CtlHandle {
    pub(super) fn node(&self) -> CtlNode {
        self.node
    }

    /// Up to `size` bytes of the snapshot at `offset`.
    pub(super) fn read(&self, offset: u64, size: u32) -> &[u8] {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.snapshot.len());
        let end = start.saturating_add(size as usize).min(self.snapshot.len());
        &self.snapshot[start..end]
    }
}

impl Fs {
    /// Attributes of a control node: size 0 like `/proc`; files 0444
    /// (read-only), 0644 (read and write) or 0200 (write-only).
    pub(super) fn ctl_attr(&self, node: CtlNode) -> Attr {
        let now = SystemTime::now();
        let (kind, perm) = match node.spec() {
            None => (Kind::Dir, 0o555),
            Some(spec) => {
                let perm = match (spec.read.is_some(), spec.write.is_some()) {
                    (true, true) => 0o644,
                    (true, false) => 0o444,
                    _ => 0o200,
                };
                (Kind::File, perm)
            }
        };
        Attr {
            ino: node.ino(),
            kind,
            size: 0,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            perm,
            nlink: 1,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    /// Attributes of a control node (a node of the dump may be gone).
    pub(super) fn ctl_getattr(&self, node: CtlNode) -> Result<Attr> {
        match node {
            CtlNode::Dump(node) => self.dump_attr(node),
            _ => Ok(self.ctl_attr(node)),
        }
    }

    /// Why a change under control node `node` is refused: EROFS in the
    /// dump, EPERM elsewhere.
    pub(super) fn ctl_refusal(node: CtlNode) -> Error {
        match node {
            CtlNode::Dump(_) => Error::ReadOnly,
            _ => Error::Perm("the control tree cannot be changed".into()),
        }
    }

    pub(super) fn ctl_lookup(&self, node: CtlNode, name: &[u8]) -> Result<Attr> {
        let owner = match node {
            CtlNode::Dump(node) => return self.dump_lookup(node, name),
            CtlNode::Dir { owner } => owner,
            CtlNode::File { .. } => return Err(Error::NotDir),
        };
        if owner == ROOT && name == b"dump" {
            return self.dump_attr(dump::DumpNode::Root);
        }
        let index = table(owner)
            .iter()
            .position(|s| s.name.as_bytes() == name)
            .ok_or_else(Error::not_found)?;
        Ok(self.ctl_attr(CtlNode::File {
            owner,
            index: index as u8 + 1,
        }))
    }

    pub(super) fn ctl_readdir(
        &self,
        node: CtlNode,
        offset: u64,
        mut emit: impl FnMut(DirEntry, Option<Attr>) -> bool,
    ) -> Result<()> {
        let owner = match node {
            CtlNode::Dump(node) => return self.dump_readdir(node, offset, emit),
            CtlNode::Dir { owner } => owner,
            CtlNode::File { .. } => return Err(Error::NotDir),
        };
        let mut entries = vec![
            (node.ino(), Kind::Dir, b".".to_vec()),
            (owner, Kind::Dir, b"..".to_vec()),
        ];
        if owner == ROOT {
            let dump = CtlNode::Dump(dump::DumpNode::Root).ino();
            entries.push((dump, Kind::Dir, b"dump".to_vec()));
        }
        for (i, spec) in table(owner).iter().enumerate() {
            let file = CtlNode::File {
                owner,
                index: i as u8 + 1,
            };
            entries.push((file.ino(), Kind::File, spec.name.as_bytes().to_vec()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            let attr = self.getattr(ino)?;
            let entry = DirEntry {
                ino,
                next: i as u64 + 1,
                kind,
                name,
            };
            if !emit(entry, Some(attr)) {
                break;
            }
        }
        Ok(())
    }

    /// The mount path of a control file, for `/.ctl/errors`.
    fn ctl_path(&self, owner: Ino, spec: &Spec) -> String {
        let dir = if owner == ROOT {
            String::new()
        } else {
            self.mount_path(owner)
        };
        format!("{dir}/{CTL_NAME}/{}", spec.name)
    }

    /// Opens a control file: a reader gets a snapshot of its text; opening
    /// a read-only file for writing, or the write-only `ctl` for reading,
    /// fails with EACCES and is logged.
    pub(super) fn ctl_open(&self, node: CtlNode, flags: i32) -> Result<Opened> {
        let (owner, spec) = match node {
            CtlNode::Dump(node) => return self.dump_open(node, flags),
            CtlNode::Dir { .. } => return Err(Error::IsDir),
            CtlNode::File { owner, .. } => (owner, node.spec().ok_or_else(Error::not_found)?),
        };
        let acc = flags & libc::O_ACCMODE;
        let (reads, writes) = (acc != libc::O_WRONLY, acc != libc::O_RDONLY);
        if writes && spec.write.is_none() {
            let e = Error::Access("read-only control file".into());
            return Err(self.refuse(&self.ctl_path(owner, spec), "open for writing", e));
        }
        let snapshot = match (reads, spec.read) {
            (true, Some(read)) => read(self, owner)?.into_bytes(),
            (true, None) => {
                let e = Error::Access("write-only control file".into());
                return Err(self.refuse(&self.ctl_path(owner, spec), "open for reading", e));
            }
            (false, _) => Vec::new(),
        };
        let fh = self.new_handle(Handle::Ctl(CtlHandle { node, snapshot }));
        Ok(Opened {
            fh,
            kind: OpenedKind::Ctl,
        })
    }

    /// Runs the command written to a control file. A malformed command
    /// (not UTF-8, empty, several lines, doubled spaces) is EINVAL; every
    /// failure is logged to `/.ctl/errors`.
    pub(super) fn ctl_write(&self, node: CtlNode, data: &[u8]) -> Result<()> {
        let (CtlNode::File { owner, .. }, Some(spec)) = (node, node.spec()) else {
            return Err(Error::IsDir);
        };
        let text = String::from_utf8_lossy(data);
        let command = text
            .strip_suffix('\n')
            .unwrap_or(&text)
            .replace('\n', "\\n");
        let path = self.ctl_path(owner, spec);
        let Some(write) = spec.write else {
            return Err(self.refuse(
                &path,
                &command,
                Error::Access("read-only control file".into()),
            ));
        };
        let result = match (
            std::str::from_utf8(data),
            crate::format::split_command(&text),
        ) {
            (Err(_), _) => Err(Error::Invalid("command is not UTF-8".into())),
            (Ok(_), None) => Err(Error::Invalid(
                "expected one command line of fields separated by single spaces".into(),
            )),
            (Ok(_), Some(fields)) => write(self, owner, &fields),
        };
        result.map_err(|e| self.refuse(&path, &command, e))
    }
}

/// The EINVAL for a command with the wrong fields.
fn usage(text: &str) -> Error {
    Error::Invalid(format!("usage: {text}"))
}

/// Unescapes a name field (DESIGN.md escapes), EINVAL when malformed.
fn name_field(field: &str) -> Result<Vec<u8>> {
    crate::format::unescape(field).map_err(|e| Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_inodes_round_trip_and_never_collide_with_the_namespace() {
        // Namespace inodes are counted up from 1 (store::meta), far below
        // the 2^58 at which an owner would reach the dump's bit.
        for owner in [ROOT, Ino(2), Ino(12345), Ino((1 << 57) + 7)] {
            let dir = CtlNode::Dir { owner };
            assert_eq!(CtlNode::parse(dir.ino()), Some(dir));
            for index in 1..=table(owner).len() as u8 {
                let file = CtlNode::File { owner, index };
                assert_eq!(CtlNode::parse(file.ino()), Some(file));
            }
        }
        assert_eq!(CtlNode::parse(ROOT), None);
        assert_eq!(CtlNode::parse(Ino(12345)), None);
        assert_eq!(CtlNode::parse(Ino(CTL_BIT | 2 << 4 | 15)), None);
        let day = crate::sync::dump::Day {
            year: 2026,
            month: 12,
            day: 1,
        };
        for node in [
            dump::DumpNode::Root,
            dump::DumpNode::Year(2026),
            dump::DumpNode::Day(day),
            dump::DumpNode::Entry(0),
            dump::DumpNode::Entry(u32::MAX),
        ] {
            let ctl = CtlNode::Dump(node);
            assert_eq!(CtlNode::parse(ctl.ino()), Some(ctl));
            assert_eq!(CtlNode::parse(Ino(ctl.ino().0 & !CTL_BIT)), None);
        }
    }
}
