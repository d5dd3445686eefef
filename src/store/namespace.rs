//! The namespace: inodes and directory entries.
//!
//! Three databases:
//! - `inodes`: inode number (u64 BE) → [`Inode`] (postcard);
//! - `entries`: parent (u64 BE) ‖ cookie (u64 BE) → [`Entry`], the order
//!   readdir streams in. A cookie is taken from the parent's counter and
//!   never reused, so a readdir offset (the next cookie) stays valid while
//!   entries are added or removed, and a directory is never loaded whole;
//! - `names`: parent (u64 BE) ‖ name bytes → [`NameRef`], for lookup;
//! - `subdirs`: directory (u64 BE) → how many directories it holds (u64
//!   BE; absent for none), kept by [`Namespace::link`] and
//!   [`Namespace::unlink`] for a directory's link count. A database made
//!   before it existed is counted once when the store opens.

use std::time::SystemTime;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::{Error, Ino, Postcard, ROOT, Result, key_u64};
use crate::ids::BlobHash;

/// The first cookie of a directory; smaller offsets are `.`, `..` and, at
/// the root, `.ctl`.
pub const FIRST_COOKIE: u64 = 16;

/// Kind of a namespace entry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device node: it lives in the Real of this peer
    /// only and is never recorded or sent (DESIGN.md "Special files, links,
    /// other users"). Added last, so records written before it still read.
    Special(Special),
}

/// What a [`Kind::Special`] entry is, as `mknod(2)` makes it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// A named pipe (`S_IFIFO`).
    Fifo,
    /// A Unix domain socket (`S_IFSOCK`).
    Socket,
    /// A character device with this device number (`S_IFCHR`, `st_rdev`).
    CharDevice(u64),
    /// A block device with this device number (`S_IFBLK`, `st_rdev`).
    BlockDevice(u64),
}

impl Special {
    /// The kind `mknod(2)` mode `mode` (its `S_IFMT` bits) and device
    /// number `rdev` make; `None` for regular files, directories and
    /// symlinks, which have calls of their own.
    pub fn from_mode(mode: u32, rdev: u64) -> Option<Special> {
        match mode & libc::S_IFMT {
            libc::S_IFIFO => Some(Special::Fifo),
            libc::S_IFSOCK => Some(Special::Socket),
            libc::S_IFCHR => Some(Special::CharDevice(rdev)),
            libc::S_IFBLK => Some(Special::BlockDevice(rdev)),
            _ => None,
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn format(self) -> u32 {
        match self {
            Special::Fifo => libc::S_IFIFO,
            Special::Socket => libc::S_IFSOCK,
            Special::CharDevice(_) => libc::S_IFCHR,
            Special::BlockDevice(_) => libc::S_IFBLK,
        }
    }

    /// The device number (`st_rdev`): 0 for FIFOs and sockets.
    pub fn rdev(self) -> u64 {
        match self {
            Special::CharDevice(rdev) | Special::BlockDevice(rdev) => rdev,
            Special::Fifo | Special::Socket => 0,
        }
    }
}

/// A mode set on an entry (DESIGN.md "Modes and the life of a file").
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Kept whole on local disk.
    Real,
    /// Kept in the cache, fetched on demand.
    Unreal,
}

impl Mode {
    /// The word used in control files: `real` or `unreal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Real => "real",
            Mode::Unreal => "unreal",
        }
    }

    /// Parses `real` or `unreal`.
    pub fn parse(word: &str) -> Option<Mode> {
        match word {
            "real" => Some(Mode::Real),
            "unreal" => Some(Mode::Unreal),
            _ => None,
        }
    }
}

/// A point in time, seconds and nanoseconds since the Unix epoch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since the epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds, 0..1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Timestamp {
        match time.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { secs, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        let nanos = std::time::Duration::new(0, t.nanos);
        if t.secs >= 0 {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.secs as u64) + nanos
        } else {
            SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(t.secs.unsigned_abs()) + nanos
        }
    }
}

/// One inode of the namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// The directory holding it (the root's parent is the root).
    pub parent: Ino,
    /// Its name in `parent` (raw bytes, at most 255).
    pub name: Vec<u8>,
    /// File, directory or symlink.
    pub kind: Kind,
    /// Permission bits (07777).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time; for files, the mtime of the recorded content.
    pub mtime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
    /// For files, the size of the recorded content in bytes; for symlinks,
    /// the length of the target.
    pub size: u64,
    /// BLAKE3 hash of the recorded content; `None` before the first record.
    pub hash: Option<BlobHash>,
    /// The mode set on this entry itself, if any.
    pub mode: Option<Mode>,
    /// Symlink target.
    pub target: Vec<u8>,
    /// Directories: the next directory cookie to hand out.
    pub next_cookie: u64,
    /// The area (top-level directory) holding it; 0 for the root.
    pub area: Ino,
    /// Files: true when the content is not in the Real (known from a peer;
    /// its bytes are in the blob cache or fetched on demand).
    pub unreal: bool,
}

impl Inode {
    /// A new inode with the given identity; times set to now, no content.
    pub fn new(parent: Ino, name: &[u8], kind: Kind, perm: u16, area: Ino) -> Inode {
        let now = Timestamp::now();
        Inode {
            parent,
            name: name.to_vec(),
            kind,
            perm,
            uid: 0,
            gid: 0,
            mtime: now,
            ctime: now,
            size: 0,
            hash: None,
            mode: None,
            target: Vec::new(),
            next_cookie: FIRST_COOKIE,
            area,
            unreal: false,
        }
    }
}

/// A directory entry in cookie order.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Entry {
    /// The child's inode.
    pub ino: Ino,
    /// The child's name.
    pub name: Vec<u8>,
}

/// The value of the `names` index.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub struct NameRef {
    /// Where the entry sits in `entries`.
    pub cookie: u64,
    /// The child's inode.
    pub ino: Ino,
}

/// The inode and directory databases.
pub struct Namespace {
    inodes: Database<'static, super::InoKey, Postcard<Inode>>,
    entries: Database<'static, Bytes, Postcard<Entry>>,
    names: Database<'static, Bytes, Postcard<NameRef>>,
    subdirs: Database<'static, super::InoKey, U64<BigEndian>>,
}

impl Namespace {
    pub(super) fn new(
        inodes: Database<'static, super::InoKey, Postcard<Inode>>,
        entries: Database<'static, Bytes, Postcard<Entry>>,
        names: Database<'static, Bytes, Postcard<NameRef>>,
        subdirs: Database<'static, super::InoKey, U64<BigEndian>>,
    ) -> Namespace {
        Namespace {
            inodes,
            entries,
            names,
            subdirs,
        }
    }

    /// Counts the directories of every directory again, from the inode
    /// records (a database made before `subdirs` existed).
    pub(super) fn count_subdirs(&self, wtxn: &mut RwTxn) -> Result<()> {
        self.subdirs.clear(wtxn)?;
        let mut counts = std::collections::HashMap::<Ino, u64>::new();
        self.for_each(wtxn, |ino, inode| {
            if inode.kind == Kind::Dir && ino != ROOT && inode.parent != Ino::NONE {
                *counts.entry(inode.parent).or_default() += 1;
            }
            Ok(())
        })?;
        for (dir, count) in counts {
            self.subdirs.put(wtxn, &dir, &count)?;
        }
        Ok(())
    }

    /// How many directories directory `dir` holds (its link count less 2).
    pub fn subdirs(&self, txn: &RoTxn, dir: Ino) -> Result<u64> {
        Ok(self.subdirs.get(txn, &dir)?.unwrap_or(0))
    }

    /// Adds `delta` to the directory count of `dir` when `child` is a
    /// directory.
    fn count_child(&self, wtxn: &mut RwTxn, dir: Ino, child: Ino, add: bool) -> Result<()> {
        match self.get(wtxn, child)? {
            Some(inode) if inode.kind == Kind::Dir => {}
            Some(_) => return Ok(()),
            None => {
                tracing::warn!("entry of {dir} for inode {child}, which has no record");
                return Ok(());
            }
        }
        let count = self.subdirs(wtxn, dir)?;
        let count = if add {
            count + 1
        } else {
            count.saturating_sub(1)
        };
        if count == 0 {
            self.subdirs.delete(wtxn, &dir)?;
        } else {
            self.subdirs.put(wtxn, &dir, &count)?;
        }
        Ok(())
    }

    pub(super) fn ensure_root(&self, wtxn: &mut RwTxn) -> Result<()> {
        if self.inodes.get(wtxn, &ROOT)?.is_none() {
            let mut root = Inode::new(ROOT, b"", Kind::Dir, 0o755, Ino::NONE);
            root.uid = nix::unistd::getuid().as_raw();
            root.gid = nix::unistd::getgid().as_raw();
            self.inodes.put(wtxn, &ROOT, &root)?;
        }
        Ok(())
    }

    /// The inode `ino`, or `None`.
    pub fn get(&self, txn: &RoTxn, ino: Ino) -> Result<Option<Inode>> {
        self.inodes
            .get(txn, &ino)
            .map_err(|_| Error::Corrupt("inodes"))
    }

    /// Writes the inode record `ino`.
    pub fn put(&self, wtxn: &mut RwTxn, ino: Ino, inode: &Inode) -> Result<()> {
        Ok(self.inodes.put(wtxn, &ino, inode)?)
    }

    /// Deletes the inode record `ino` (its entry must be gone already).
    pub fn remove(&self, wtxn: &mut RwTxn, ino: Ino) -> Result<()> {
        self.inodes.delete(wtxn, &ino)?;
        Ok(())
    }

    /// The child `name` of `parent`.
    pub fn lookup(&self, txn: &RoTxn, parent: Ino, name: &[u8]) -> Result<Option<Ino>> {
        Ok(self.name_ref(txn, parent, name)?.map(|r| r.ino))
    }

    /// The cookie (readdir position) of entry `name` of `parent`.
    pub fn cookie(&self, txn: &RoTxn, parent: Ino, name: &[u8]) -> Result<Option<u64>> {
        Ok(self.name_ref(txn, parent, name)?.map(|r| r.cookie))
    }

    fn name_ref(&self, txn: &RoTxn, parent: Ino, name: &[u8]) -> Result<Option<NameRef>> {
        self.names
            .get(txn, &key_u64(parent, name))
            .map_err(|_| Error::Corrupt("names"))
    }

    /// Adds the entry `name` → `ino` to directory `parent`, taking the next
    /// cookie of `parent` (whose record must exist, as must `ino`'s: a
    /// directory is counted in `parent`'s link count).
    pub fn link(&self, wtxn: &mut RwTxn, parent: Ino, name: &[u8], ino: Ino) -> Result<()> {
        let mut dir = self.get(wtxn, parent)?.ok_or(Error::Corrupt("parent"))?;
        let cookie = dir.next_cookie;
        dir.next_cookie += 1;
        self.put(wtxn, parent, &dir)?;
        let entry = Entry {
            ino,
            name: name.to_vec(),
        };
        self.entries
            .put(wtxn, &key_u64(parent, &cookie.to_be_bytes()), &entry)?;
        self.names
            .put(wtxn, &key_u64(parent, name), &NameRef { cookie, ino })?;
        self.count_child(wtxn, parent, ino, true)
    }

    /// Removes the entry `name` from `parent`; returns the inode it named,
    /// whose record must still exist (a directory leaves `parent`'s link
    /// count).
    pub fn unlink(&self, wtxn: &mut RwTxn, parent: Ino, name: &[u8]) -> Result<Option<Ino>> {
        let key = key_u64(parent, name);
        let Some(found) = self
            .names
            .get(wtxn, &key)
            .map_err(|_| Error::Corrupt("names"))?
        else {
            return Ok(None);
        };
        self.names.delete(wtxn, &key)?;
        self.entries
            .delete(wtxn, &key_u64(parent, &found.cookie.to_be_bytes()))?;
        self.count_child(wtxn, parent, found.ino, false)?;
        Ok(Some(found.ino))
    }

    /// Visits the entries of `parent` in cookie order, starting at cookie
    /// `from`, until `visit` returns false.
    pub fn children(
        &self,
        txn: &RoTxn,
        parent: Ino,
        from: u64,
        mut visit: impl FnMut(u64, Entry) -> Result<bool>,
    ) -> Result<()> {
        let start = key_u64(parent, &from.max(FIRST_COOKIE).to_be_bytes());
        let end = key_u64(parent, &u64::MAX.to_be_bytes());
        let range = (
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Included(end.as_slice()),
        );
        for item in self.entries.range(txn, &range)? {
            let (key, entry) = item.map_err(|_| Error::Corrupt("entries"))?;
            let cookie = super::key_prefix(&key[8..])?;
            if !visit(cookie, entry)? {
                break;
            }
        }
        Ok(())
    }

    /// True when directory `parent` has no entries.
    pub fn is_empty(&self, txn: &RoTxn, parent: Ino) -> Result<bool> {
        let mut empty = true;
        self.children(txn, parent, FIRST_COOKIE, |_, _| {
            empty = false;
            Ok(false)
        })?;
        Ok(empty)
    }

    /// The names from the area (excluded) down to `ino` (included); empty
    /// for an area or the root.
    pub fn path_in_area(&self, txn: &RoTxn, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut at = ino;
        loop {
            let inode = self.get(txn, at)?.ok_or(Error::Corrupt("path"))?;
            if at == ROOT || inode.parent == ROOT {
                break;
            }
            names.push(inode.name);
            at = inode.parent;
        }
        names.reverse();
        Ok(names)
    }

    /// Visits every inode record in inode order.
    pub fn for_each(
        &self,
        txn: &RoTxn,
        mut visit: impl FnMut(Ino, Inode) -> Result<()>,
    ) -> Result<()> {
        for item in self.inodes.iter(txn)? {
            let (ino, inode) = item.map_err(|_| Error::Corrupt("inodes"))?;
            visit(ino, inode)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn cookies_survive_removals_and_additions() {
        let (_dir, store) = store();
        let ns = &store.namespace;
        let mut wtxn = store.write().unwrap();
        for i in 0..10u64 {
            let ino = Ino(100 + i);
            ns.put(
                &mut wtxn,
                ino,
                &Inode::new(ROOT, b"x", Kind::File, 0o644, Ino::NONE),
            )
            .unwrap();
            ns.link(&mut wtxn, ROOT, format!("f{i}").as_bytes(), ino)
                .unwrap();
        }
        wtxn.commit().unwrap();

        // Read the first five, then remove one already read and one not
        // yet read, add one, and resume from the offset.
        let rtxn = store.read().unwrap();
        let mut seen = Vec::new();
        let mut next = 0;
        ns.children(&rtxn, ROOT, 0, |cookie, e| {
            seen.push(e.name);
            next = cookie + 1;
            Ok(seen.len() < 5)
        })
        .unwrap();
        drop(rtxn);
        let mut wtxn = store.write().unwrap();
        assert_eq!(ns.unlink(&mut wtxn, ROOT, b"f1").unwrap(), Some(Ino(101)));
        assert_eq!(ns.unlink(&mut wtxn, ROOT, b"f7").unwrap(), Some(Ino(107)));
        ns.link(&mut wtxn, ROOT, b"new", Ino(200)).unwrap();
        wtxn.commit().unwrap();
        let rtxn = store.read().unwrap();
        ns.children(&rtxn, ROOT, next, |_, e| {
            seen.push(e.name);
            Ok(true)
        })
        .unwrap();
        let names: Vec<String> = seen
            .into_iter()
            .map(|n| String::from_utf8(n).unwrap())
            .collect();
        assert_eq!(
            names,
            ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f8", "f9", "new"]
        );
        assert_eq!(ns.lookup(&rtxn, ROOT, b"f7").unwrap(), None);
        assert_eq!(ns.lookup(&rtxn, ROOT, b"new").unwrap(), Some(Ino(200)));
    }

    #[test]
    fn directories_are_counted_as_linked_and_again_in_an_old_database() {
        let (dir, store) = store();
        let ns = &store.namespace;
        let mut wtxn = store.write().unwrap();
        let new = |wtxn: &mut RwTxn, ino: u64, parent: Ino, kind: Kind| {
            ns.put(
                wtxn,
                Ino(ino),
                &Inode::new(parent, b"x", kind, 0o755, Ino::NONE),
            )
            .unwrap();
            ns.link(wtxn, parent, format!("n{ino}").as_bytes(), Ino(ino))
                .unwrap();
        };
        new(&mut wtxn, 100, ROOT, Kind::Dir);
        new(&mut wtxn, 101, Ino(100), Kind::Dir);
        new(&mut wtxn, 102, Ino(100), Kind::Dir);
        new(&mut wtxn, 103, Ino(100), Kind::File);
        assert_eq!(ns.subdirs(&wtxn, Ino(100)).unwrap(), 2);
        ns.unlink(&mut wtxn, Ino(100), b"n102").unwrap();
        ns.unlink(&mut wtxn, Ino(100), b"n103").unwrap();
        assert_eq!(ns.subdirs(&wtxn, Ino(100)).unwrap(), 1);
        assert_eq!(ns.subdirs(&wtxn, ROOT).unwrap(), 1);
        // A database from before the count: none kept, layout 0.
        ns.remove(&mut wtxn, Ino(102)).unwrap();
        ns.subdirs.clear(&mut wtxn).unwrap();
        store.meta.set_layout(&mut wtxn, 0).unwrap();
        wtxn.commit().unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("db")).unwrap();
        let rtxn = store.read().unwrap();
        assert_eq!(store.namespace.subdirs(&rtxn, Ino(100)).unwrap(), 1);
        assert_eq!(store.namespace.subdirs(&rtxn, ROOT).unwrap(), 1);
        assert_eq!(store.meta.layout(&rtxn).unwrap(), 1);
    }

    #[test]
    fn timestamps_round_trip_before_and_after_the_epoch() {
        for secs in [-5i64, 0, 1_700_000_000] {
            let t = Timestamp {
                secs,
                nanos: 250_000_000,
            };
            assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        }
    }
}
