//! The dispatcher: every file operation of the mount, FUSE-free, so tests
//! call it without the kernel. [`crate::fuse`] is a thin adapter over it.
//!
//! - this file: the state, lookup, getattr, setattr, readlink, readdir, statfs;
//! - [`dirops`]: mkdir, create, symlink, unlink, rmdir, rename (and areas);
//! - [`io`]: open, read, write, flush, fsync, release;
//! - [`xattr`]: extended attributes;
//! - [`reads`]: event-driven reads of unreal files;
//! - [`waits`]: replies handed off the FUSE workers, and their deadlines;
//! - [`ctl`]: the control tree.
//!
//! The namespace, recording, remote changes and the life of files are
//! [`crate::sync::Tree`]'s; the blob cache and its fetches are
//! [`crate::cache::Cache`]'s; the Real is [`crate::real::Real`]'s.

pub mod ctl;
mod dirops;
mod error;
mod io;
mod reads;
pub mod waits;
mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Permissions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub use error::{Error, Result};
pub use io::{Opened, OpenedKind};
pub use waits::{Done, ReadDone};

use crate::ids::PeerId;
use crate::store::namespace::{Inode, Kind, Timestamp};
use crate::store::{Ino, ROOT, RoTxn, Store};
use ctl::CtlNode;

/// Longest name accepted, in bytes (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// File attributes as `stat(2)` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File, directory, symlink or special file (with its device number).
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Links: 1 for files (realize has no hard links; 0 once unlinked
    /// while open), 2 and one per subdirectory for directories.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Who asks: the uid and gid of the calling process.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Changes asked by `setattr`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time (`None` inside: now).
    pub atime: Option<Option<SystemTime>>,
    /// New modification time (`None` inside: now).
    pub mtime: Option<Option<SystemTime>>,
}

/// One entry produced by readdir.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Inode number.
    pub ino: Ino,
    /// The offset to resume after this entry.
    pub next: u64,
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: Vec<u8>,
}

/// File system statistics (`statfs(2)`), taken from the disk of DATA.
#[derive(Debug, Clone)]
pub struct Statfs {
    /// Total blocks of `bsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size in bytes.
    pub bsize: u32,
}

pub use crate::sync::KernelCache;

/// The dispatcher: FUSE requests in, calls on the concerns below out. It
/// owns only what the kernel's requests are about (handles); the
/// namespace and the life of files are [`crate::sync::Tree`]'s, the blob
/// cache [`crate::cache::Cache`]'s, the Real [`crate::real::Real`]'s.
pub struct Fs {
    store: Arc<Store>,
    real: Arc<crate::real::Real>,
    cache: Arc<crate::cache::Cache>,
    household: Arc<crate::net::Household>,
    tree: Arc<crate::sync::Tree>,
    peer_id: PeerId,
    handles: Mutex<HashMap<u64, io::Handle>>,
    next_fh: AtomicU64,
    /// Counters of `/.ctl/stats`.
    pub stats: Arc<crate::stats::Stats>,
    errors: Arc<crate::stats::ErrorLog>,
    timers: waits::Timers,
    /// The numbers of `/.ctl/dump` entries looked up.
    dump_names: ctl::dump::DumpNames,
    /// This dispatcher, for work that outlives a call (waiting requests).
    me: std::sync::Weak<Fs>,
}

/// Locks a mutex, recovering the data of a poisoned one (a panic elsewhere
/// must not take the whole mount down).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks a name given by the kernel for a new entry.
fn check_new_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name == ctl::CTL_NAME.as_bytes() {
        return Err(Error::Perm(".ctl is reserved for the control tree".into()));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::Invalid("bad name".into()));
    }
    Ok(())
}

impl Fs {
    /// A dispatcher over `store` and the Real at `real` (DATA/real), with
    /// the cache beside it (DATA/cache). Runs the mount-time
    /// reconciliation before returning; [`Fs::start`] then starts the
    /// background threads.
    pub fn new(store: Store, real: PathBuf, peer_id: PeerId) -> Result<Arc<Fs>> {
        let store = Arc::new(store);
        let household = Arc::new(crate::net::Household::default());
        let stats = Arc::new(crate::stats::Stats::default());
        let errors = Arc::new(crate::stats::ErrorLog::default());
        let cache = crate::cache::Cache::open(
            &real.with_file_name("cache"),
            Arc::clone(&store),
            Arc::clone(&household),
            Arc::clone(&stats),
            peer_id,
        )?;
        let real = Arc::new(crate::real::Real::open(&real)?);
        let tree = crate::sync::Tree::open(crate::sync::Parts {
            store: Arc::clone(&store),
            real: Arc::clone(&real),
            cache: Arc::clone(&cache),
            household: Arc::clone(&household),
            stats: Arc::clone(&stats),
            errors: Arc::clone(&errors),
            peer_id,
        })?;
        let timers = waits::Timers::start()?;
        Ok(Arc::new_cyclic(|me| Fs {
            store,
            real,
            cache,
            household,
            tree,
            peer_id,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            stats,
            errors,
            timers,
            dump_names: ctl::dump::DumpNames::default(),
            me: me.clone(),
        }))
    }

    /// Starts the thread that records rested writes into history, and the
    /// one that realizes and unrealizes files by their modes; returns the
    /// recorder's.
    pub fn start(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.tree.start()
    }

    /// Records every pending write now, stops the background threads and
    /// flushes LMDB to disk. Called at unmount.
    pub fn shutdown(&self) {
        self.tree.shutdown();
    }

    /// Connects the kernel's caches, once the mount exists.
    pub fn set_kernel_cache(&self, kernel: Box<dyn KernelCache>) {
        self.tree.set_kernel_cache(kernel);
    }

    /// The namespace as sync keeps it: what the network reaches the core
    /// through ([`crate::net::core::Core`]).
    pub fn tree(&self) -> &Arc<crate::sync::Tree> {
        &self.tree
    }

    /// What the control tree shares with the network.
    pub fn household(&self) -> &crate::net::Household {
        &self.household
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Runs `work` on a thread of its own (named `what`) and gives its
    /// result to `done`: for requests that may wait on peers, so that no
    /// FUSE worker waits with them (DESIGN.md "Waiting on peers").
    pub(crate) fn later<T: Send + 'static>(
        &self,
        what: &str,
        done: Done<T>,
        work: impl FnOnce(&Fs) -> Result<T> + Send + 'static,
    ) {
        let Some(fs) = self.me.upgrade() else {
            return done(Err(Error::Unreachable("the mount is ending".into())));
        };
        let slot = Arc::new(Mutex::new(Some(done)));
        let answer = Arc::clone(&slot);
        self.stats.fuse_waiting.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name(what.into())
            .spawn(move || {
                let result = work(&fs);
                fs.stats.fuse_waiting.fetch_sub(1, Ordering::Relaxed);
                if let Some(done) = lock(&answer).take() {
                    done(result);
                }
            });
        if let Err(e) = spawned
            && let Some(done) = lock(&slot).take()
        {
            self.stats.fuse_waiting.fetch_sub(1, Ordering::Relaxed);
            done(Err(e.into()));
        }
    }

    /// Appends a failed command to `/.ctl/errors` and returns the error.
    pub fn refuse(&self, file: &str, command: &str, error: Error) -> Error {
        tracing::info!("{file} {command}: {error}");
        self.errors.push(file, command, &error);
        error
    }

    /// Attributes of `ino`, whose record is `inode`. Files take size and
    /// times from the backing file, which passthrough writes change
    /// without telling us; directories their atime, symlinks and special
    /// files their times
    /// (`utimensat` with `AT_SYMLINK_NOFOLLOW` sets them there; a FIFO's
    /// change as it is written). A directory's link count is 2 and one
    /// per subdirectory, exact, so that `find` may skip leaves. A file unlinked while open
    /// has no link left: nlink 0.
    fn attr_of(&self, txn: &RoTxn, ino: Ino, inode: &Inode) -> Result<Attr> {
        let mut attr = Attr {
            ino,
            kind: inode.kind,
            size: inode.size,
            blocks: inode.size.div_ceil(512),
            atime: inode.mtime.into(),
            mtime: inode.mtime.into(),
            ctime: inode.ctime.into(),
            perm: inode.perm,
            nlink: u32::from(inode.parent != Ino::NONE),
            uid: inode.uid,
            gid: inode.gid,
        };
        if inode.kind == Kind::Dir {
            // `.`, its entry in its parent, and each subdirectory's `..`;
            // the root lists `.ctl` too.
            let subdirs = self.store.namespace.subdirs(txn, ino)?;
            let ctl = u64::from(ino == ROOT);
            attr.nlink = u32::try_from(2 + subdirs + ctl).unwrap_or(u32::MAX);
        }
        let in_real = matches!(inode.kind, Kind::Dir | Kind::Symlink | Kind::Special(_));
        if in_real && inode.parent != Ino::NONE {
            match self.real.metadata(&self.tree.real_path(txn, ino)?) {
                Ok(meta) => {
                    attr.atime = meta.accessed()?;
                    // A directory's mtime is the namespace's: the Real
                    // lacks its unreal files.
                    if inode.kind != Kind::Dir {
                        attr.mtime = meta.modified()?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        } else if inode.kind == Kind::File && inode.unreal {
            attr.blocks = 0;
        } else if inode.kind == Kind::File {
            let meta = match self.tree.open_file(ino) {
                Some(file) if inode.parent == Ino::NONE => file.metadata()?,
                _ => match self.real.metadata(&self.tree.real_path(txn, ino)?) {
                    Ok(meta) => meta,
                    // Unrealized since `txn` began: the record says the
                    // same of its content, and its bytes are in the cache.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        attr.blocks = 0;
                        return Ok(attr);
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            attr.size = meta.size();
            attr.blocks = meta.blocks();
            attr.atime = meta.accessed()?;
            attr.mtime = meta.modified()?;
            attr.ctime = SystemTime::UNIX_EPOCH
                + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
        }
        Ok(attr)
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = name.as_bytes();
        if let Some(node) = CtlNode::parse(parent) {
            return self.ctl_lookup(node, name);
        }
        let txn = self.store.read()?;
        let dir = self.tree.inode(&txn, parent)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if name == ctl::CTL_NAME.as_bytes() {
            return Ok(self.ctl_attr(CtlNode::Dir { owner: parent }));
        }
        if name.len() > NAME_MAX {
            drop(txn);
            return Err(self.refuse(&self.entry_path(parent, name), "lookup", Error::NameTooLong));
        }
        let ino = self
            .store
            .namespace
            .lookup(&txn, parent, name)?
            .ok_or_else(Error::not_found)?;
        let inode = self.tree.inode(&txn, ino)?;
        self.attr_of(&txn, ino, &inode)
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        if let Some(node) = CtlNode::parse(ino) {
            return self.ctl_getattr(node);
        }
        let txn = self.store.read()?;
        let inode = self.tree.inode(&txn, ino)?;
        self.attr_of(&txn, ino, &inode)
    }

    /// Changes attributes of `ino` and gives the new ones to `done`; `fh`
    /// is the handle the change came through, if any (ftruncate, fchmod).
    /// Cutting or growing an unreal file copies it up first, on a thread
    /// of its own.
    pub fn setattr(&self, ino: Ino, fh: Option<u64>, set: SetAttr, done: Done<Attr>) {
        let unreal = || -> Result<bool> {
            let txn = self.store.read()?;
            Ok(self.tree.inode(&txn, ino)?.unreal)
        };
        let copy_up = CtlNode::parse(ino).is_none() && set.size.is_some_and(|s| s > 0);
        match copy_up.then(unreal).transpose() {
            Err(e) => done(Err(e)),
            // Cut or grown, not emptied: the old bytes are needed first.
            Ok(Some(true)) => self.later("copy-up", done, move |fs| {
                fs.tree.copy_up(ino)?;
                fs.setattr_now(ino, fh, set)
            }),
            Ok(_) => done(self.setattr_now(ino, fh, set)),
        }
    }

    /// Changes attributes of `ino` without waiting on peers: an unreal
    /// file is only emptied here (EROFS for any other size).
    fn setattr_now(&self, ino: Ino, fh: Option<u64>, set: SetAttr) -> Result<Attr> {
        if let Some(node) = CtlNode::parse(ino) {
            if let CtlNode::Dump(node) = node {
                return Err(self.refuse(&self.dump_path(node), "setattr", Error::ReadOnly));
            }
            // `echo x > file` truncates first: nothing to do on a control file.
            return Ok(self.ctl_attr(node));
        }
        // A truncation of a real file counts as a writer while it runs, so
        // that no record starts meanwhile; the version it replaces stays
        // restorable.
        let real = set.size.is_some() && {
            let txn = self.store.read()?;
            let inode = self.tree.inode(&txn, ino)?;
            inode.kind == Kind::File && !inode.unreal
        };
        let writer = real.then(|| self.tree.recorder.writer(ino));
        if let Some(writer) = &writer {
            self.tree.save_before_write(ino, writer.unrecorded)?;
        }
        let mut wtxn = self.store.write()?;
        let mut inode = self.tree.inode(&wtxn, ino)?;
        if inode.unreal && set.size == Some(0) {
            // Cut to nothing: no need for the old bytes (no copy-up).
            let how = crate::real::Open::flags(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC);
            let path = self.tree.real_path(&wtxn, ino)?;
            let mode = inode.perm.into();
            self.real
                .open_file(&path, crate::real::Open { mode, ..how })?;
            inode.unreal = false;
        }
        let path = (inode.parent != Ino::NONE && !inode.unreal)
            .then(|| self.tree.real_path(&wtxn, ino))
            .transpose()?;
        let file = fh
            .and_then(|fh| self.handle_file(fh))
            .or_else(|| self.tree.open_file(ino));
        if let Some(mode) = set.mode {
            inode.perm = (mode & 0o7777) as u16;
            match (&file, &path) {
                (Some(file), _) => {
                    file.set_permissions(Permissions::from_mode(inode.perm.into()))?
                }
                (None, Some(path)) if inode.kind != Kind::Symlink => {
                    self.real.chmod(path, inode.perm)?
                }
                _ => {}
            }
        }
        if (set.uid.is_some() || set.gid.is_some()) && nix::unistd::geteuid().is_root() {
            // The kernel checked the caller may (default_permissions).
            match (&file, &path) {
                (Some(file), _) if inode.kind != Kind::Symlink => nix::unistd::fchown(
                    file,
                    set.uid.map(nix::unistd::Uid::from_raw),
                    set.gid.map(nix::unistd::Gid::from_raw),
                )
                .map_err(std::io::Error::from)?,
                (_, Some(path)) => self.real.chown(path, set.uid, set.gid)?,
                _ => {}
            }
        }
        inode.uid = set.uid.unwrap_or(inode.uid);
        inode.gid = set.gid.unwrap_or(inode.gid);
        if let Some(size) = set.size {
            if inode.kind != Kind::File {
                return Err(Error::IsDir);
            }
            match (&file, &path) {
                (Some(file), _) => file.set_len(size)?,
                (None, Some(path)) => self
                    .real
                    .open_file(path, crate::real::Open::flags(libc::O_WRONLY))?
                    .set_len(size)?,
                _ if inode.unreal => return Err(Error::Unreal),
                _ => return Err(Error::not_found()),
            }
            self.tree.recorder.touched(ino, size == 0);
        }
        if set.atime.is_some() || set.mtime.is_some() {
            if let Some(path) = &path {
                self.real.set_times(path, set.atime, set.mtime)?;
            }
            if let Some(mtime) = set.mtime {
                // The time the Real now has (UTIME_NOW is the kernel's
                // clock): a clean file keeps its recorded mtime in step, so
                // the next mount does not take the touch for an offline edit.
                let mtime = match &path {
                    Some(path) => self.real.metadata(path)?.modified()?,
                    None => mtime.unwrap_or_else(SystemTime::now),
                };
                if inode.kind != Kind::File || !self.tree.recorder.is_pending(ino) {
                    inode.mtime = mtime.into();
                }
            }
        }
        inode.ctime = Timestamp::now();
        self.store.namespace.put(&mut wtxn, ino, &inode)?;
        let attr = self.attr_of(&wtxn, ino, &inode)?;
        wtxn.commit()?;
        Ok(attr)
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let txn = self.store.read()?;
        let inode = self.tree.inode(&txn, ino)?;
        if inode.kind != Kind::Symlink {
            return Err(Error::Invalid("not a symlink".into()));
        }
        Ok(inode.target)
    }

    /// Lists directory `ino` from `offset`, calling `emit` per entry until
    /// it returns false (the kernel's buffer is full). Offsets 0 and 1 are
    /// `.` and `..`, 2 is `.ctl` at the root; entries follow in cookie
    /// order (see [`crate::store::namespace`]).
    pub fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        mut emit: impl FnMut(DirEntry, Option<Attr>) -> bool,
        with_attrs: bool,
    ) -> Result<()> {
        if let Some(node) = CtlNode::parse(ino) {
            return self.ctl_readdir(node, offset, emit);
        }
        let txn = self.store.read()?;
        let dir = self.tree.inode(&txn, ino)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let mut fixed = vec![
            (ino, Kind::Dir, b".".to_vec()),
            (dir.parent.max(ROOT), Kind::Dir, b"..".to_vec()),
        ];
        if ino == ROOT {
            let ctl = CtlNode::Dir { owner: ROOT }.ino();
            fixed.push((ctl, Kind::Dir, ctl::CTL_NAME.as_bytes().to_vec()));
        }
        for (i, (child, kind, name)) in fixed.into_iter().enumerate().skip(offset as usize) {
            let attr = with_attrs.then(|| self.getattr(child)).transpose()?;
            let entry = DirEntry {
                ino: child,
                next: i as u64 + 1,
                kind,
                name,
            };
            if !emit(entry, attr) {
                return Ok(());
            }
        }
        let mut failed = None;
        self.store
            .namespace
            .children(&txn, ino, offset, |cookie, entry| {
                let inode = match self.store.namespace.get(&txn, entry.ino)? {
                    Some(inode) => inode,
                    None => return Ok(true),
                };
                let attr = if with_attrs {
                    match self.attr_of(&txn, entry.ino, &inode) {
                        Ok(attr) => Some(attr),
                        Err(e) => {
                            failed = Some(e);
                            return Ok(false);
                        }
                    }
                } else {
                    None
                };
                let entry = DirEntry {
                    ino: entry.ino,
                    next: cookie + 1,
                    kind: inode.kind,
                    name: entry.name,
                };
                Ok(emit(entry, attr))
            })?;
        failed.map_or(Ok(()), Err)
    }

    /// Statistics of the disk holding the Real.
    pub fn statfs(&self) -> Result<Statfs> {
        let st = self.real.statvfs()?;
        Ok(Statfs {
            blocks: st.blocks(),
            bfree: st.blocks_free(),
            bavail: st.blocks_available(),
            files: st.files(),
            ffree: st.files_free(),
            bsize: st.fragment_size() as u32,
        })
    }
}
