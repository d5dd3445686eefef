//! The thin fuser adapter: each `Filesystem` method counts the request,
//! calls [`Fs`] and maps its error to an errno. FUSE passthrough (Linux
//! 6.9+, CAP_SYS_ADMIN) is negotiated in `init`; the backing ids live here,
//! one per inode while any handle of it is open, as the kernel requires.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{self, Caller, Fs, OpenedKind, SetAttr};
use crate::ids::Ino;
use crate::store::namespace::{Kind, Special};

impl fs::KernelCache for fuser::Notifier {
    fn forget_entry(&self, parent: u64, name: &[u8]) {
        // ENOENT: the kernel had nothing cached.
        let known = |e: &std::io::Error| e.raw_os_error() != Some(libc::ENOENT);
        if let Err(e) = self.inval_entry(INodeNo(parent), OsStr::from_bytes(name))
            && known(&e)
        {
            tracing::warn!("invalidating a kernel entry: {e}");
        }
        // The kernel drops the directory's attributes with the entry only
        // when it had the entry: a name it never saw changes the link
        // count and times too. A negative offset keeps its pages.
        if let Err(e) = self.inval_inode(INodeNo(parent), -1, 0)
            && known(&e)
        {
            tracing::warn!("invalidating a kernel inode: {e}");
        }
    }
}

/// Real files served in userspace keep their page cache across opens
/// (FOPEN_KEEP_CACHE): the kernel updates it on its own writes and
/// truncations, and [`fs::KernelCache`] is there for the changes it does
/// not make. Without it every open would drop the cache.
///
/// How long the kernel may cache attributes and entries. Every local change
/// goes through this process, the kernel drops size and times itself after
/// writes (passthrough or not), and changes it did not make are invalidated
/// through [`fs::KernelCache`]; so the cache can live long, and `stat`
/// of a known file never leaves the kernel.
const TTL: Duration = Duration::from_secs(60);

/// The fuser `Filesystem` over a [`Fs`].
pub struct Fuse {
    fs: Arc<Fs>,
    want_passthrough: bool,
    passthrough: AtomicBool,
    backings: Arc<Backings>,
}

/// The passthrough backing ids, shared with answers given later (an open
/// that copies a file up first).
#[derive(Default)]
struct Backings {
    /// Backing id of each inode with open passthrough handles.
    by_ino: Mutex<HashMap<Ino, Weak<BackingId>>>,
    /// Backing id held by each open passthrough handle.
    held: Mutex<HashMap<u64, Arc<BackingId>>>,
}

impl Backings {
    /// The backing id of `ino`: the one its open handles share, or a new
    /// one made by `open_backing`.
    fn backing(
        &self,
        ino: Ino,
        file: &std::fs::File,
        open_backing: impl FnOnce(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> std::io::Result<Arc<BackingId>> {
        let mut backings = self.by_ino.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = backings.get(&ino).and_then(Weak::upgrade) {
            return Ok(id);
        }
        let id = Arc::new(open_backing(file)?);
        backings.insert(ino, Arc::downgrade(&id));
        Ok(id)
    }

    fn hold(&self, fh: u64, id: Arc<BackingId>) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, id);
    }

    /// Drops the backing id handle `fh` held; the last handle of inode
    /// `ino` closes it.
    fn release(&self, ino: Ino, fh: u64) {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
        if let Some(id) = held {
            drop(id);
            let mut backings = self.by_ino.lock().unwrap_or_else(|e| e.into_inner());
            if backings.get(&ino).is_some_and(|w| w.strong_count() == 0) {
                backings.remove(&ino);
            }
        }
    }

    /// Answers an open with `opened`: passed through when it was opened
    /// for it and the kernel takes its backing file.
    fn answer_open(&self, reply: ReplyOpen, opened: fs::Opened) {
        match opened.kind {
            OpenedKind::Ctl => reply.opened(FileHandle(opened.fh), FopenFlags::FOPEN_DIRECT_IO),
            OpenedKind::Unreal => reply.opened(FileHandle(opened.fh), FopenFlags::FOPEN_KEEP_CACHE),
            OpenedKind::Real {
                ino,
                file,
                passthrough: true,
            } => match self.backing(ino, &file, |f| reply.open_backing(f)) {
                Ok(id) => {
                    // Held before the reply: the kernel may release the
                    // handle before this thread goes on, and a release
                    // that finds nothing would leave the id held for good
                    // (every later open of the inode would share a
                    // backing file that may no longer be its file).
                    self.hold(opened.fh, Arc::clone(&id));
                    reply.opened_passthrough(FileHandle(opened.fh), FopenFlags::empty(), &id);
                }
                Err(e) => {
                    tracing::warn!("passthrough refused for inode {ino}: {e}");
                    reply.opened(FileHandle(opened.fh), FopenFlags::FOPEN_KEEP_CACHE);
                }
            },
            OpenedKind::Real { .. } => {
                reply.opened(FileHandle(opened.fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
        }
    }
}

fn kind(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Special(Special::Fifo) => FileType::NamedPipe,
        Kind::Special(Special::Socket) => FileType::Socket,
        Kind::Special(Special::CharDevice(_)) => FileType::CharDevice,
        Kind::Special(Special::BlockDevice(_)) => FileType::BlockDevice,
    }
}

fn file_attr(a: &fs::Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // The kernel's 32-bit encoding, as mknod gave it.
        rdev: match a.kind {
            Kind::Special(special) => special.rdev() as u32,
            _ => 0,
        },
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: &fs::Error) -> Errno {
    Errno::from_i32(e.errno())
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn time(t: TimeOrNow) -> Option<SystemTime> {
    match t {
        TimeOrNow::SpecificTime(t) => Some(t),
        TimeOrNow::Now => None,
    }
}

impl Fuse {
    /// An adapter over `fs`; `passthrough` asks for FUSE passthrough when
    /// the kernel offers it.
    pub fn new(fs: Arc<Fs>, passthrough: bool) -> Fuse {
        Fuse {
            fs,
            want_passthrough: passthrough,
            passthrough: AtomicBool::new(false),
            backings: Arc::default(),
        }
    }

    fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let optional = InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS;
        for flag in optional.iter() {
            let _ = config.add_capabilities(flag);
        }
        let _ = config.set_max_readahead(1 << 20);
        // More readahead requests in flight keep the userspace read path
        // busy, and reads of unreal files waiting on peers (each one a
        // background request) must not hold back the reads of real files
        // behind them: the kernel blocks every new background request
        // once this many are out.
        let _ = config.set_max_background(1024);
        let _ = config.set_congestion_threshold(768);
        if self.want_passthrough {
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok();
            self.passthrough.store(ok, Ordering::Relaxed);
            if !ok {
                tracing::warn!("the kernel offers no FUSE passthrough: serving reads in userspace");
            }
        }
        tracing::info!(passthrough = self.passthrough(), "mounted");
        Ok(())
    }

    fn destroy(&mut self) {
        self.fs.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.fs.stats.fuse_op();
        entry(reply, self.fs.lookup(Ino(parent.0), name))
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.fs.stats.fuse_op();
        attr(reply, self.fs.getattr(Ino(ino.0)))
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.fs.stats.fuse_op();
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        self.fs.setattr(
            Ino(ino.0),
            fh.map(|f| f.0),
            set,
            Box::new(move |result| attr(reply, result)),
        )
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.fs.stats.fuse_op();
        match self.fs.readlink(Ino(ino.0)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.fs.stats.fuse_op();
        entry(
            reply,
            self.fs.mknod(
                Ino(parent.0),
                name,
                mode & !umask,
                u64::from(rdev),
                caller(req),
            ),
        )
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.fs.stats.fuse_op();
        entry(
            reply,
            self.fs.mkdir(Ino(parent.0), name, mode, umask, caller(req)),
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.unlink(Ino(parent.0), name))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.rmdir(Ino(parent.0), name))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.fs.stats.fuse_op();
        entry(
            reply,
            self.fs.symlink(
                Ino(parent.0),
                link_name,
                target.as_os_str().as_bytes(),
                caller(req),
            ),
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.stats.fuse_op();
        match self
            .fs
            .rename(Ino(parent.0), name, Ino(newparent.0), newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.fs.stats.fuse_op();
        let e = fs::Error::Perm("hard links are not supported".into());
        let path = self.fs.entry_path(Ino(newparent.0), newname.as_bytes());
        reply.error(errno(&self.fs.refuse(&path, "link", e)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.fs.stats.fuse_op();
        let backings = Arc::clone(&self.backings);
        let done = move |opened: fs::Result<fs::Opened>| match opened {
            Ok(opened) => backings.answer_open(reply, opened),
            Err(e) => reply.error(errno(&e)),
        };
        self.fs
            .open(Ino(ino.0), flags.0, self.passthrough(), Box::new(done));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.fs.stats.fuse_op();
        let done = move |bytes: fs::Result<&[u8]>| match bytes {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(errno(&e)),
        };
        self.fs.read(fh.0, offset, size, Box::new(done));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.fs.stats.fuse_op();
        let done = move |written: fs::Result<u32>| match written {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        };
        self.fs.write(fh.0, offset, data, Box::new(done));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.fallocate(fh.0, offset, length, mode))
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.flush(fh.0))
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.stats.fuse_op();
        self.backings.release(Ino(ino.0), fh.0);
        empty(reply, self.fs.release(fh.0))
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.fsync(fh.0, datasync))
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.fs.stats.fuse_op();
        let emit = |e: fs::DirEntry, _: Option<fs::Attr>| {
            !reply.add(
                INodeNo(e.ino.0),
                e.next,
                kind(e.kind),
                OsStr::from_bytes(&e.name),
            )
        };
        match self.fs.readdir(Ino(ino.0), offset, emit, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.fs.stats.fuse_op();
        let emit = |e: fs::DirEntry, a: Option<fs::Attr>| match a {
            Some(a) => !reply.add(
                INodeNo(e.ino.0),
                e.next,
                OsStr::from_bytes(&e.name),
                &TTL,
                &file_attr(&a),
                Generation(0),
            ),
            None => true,
        };
        match self.fs.readdir(Ino(ino.0), offset, emit, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.fs.stats.fuse_op();
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.bfree,
                s.bavail,
                s.files,
                s.ffree,
                s.bsize,
                fs::NAME_MAX as u32,
                s.bsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.setxattr(Ino(ino.0), name, value, flags))
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.fs.stats.fuse_op();
        reply_xattr(self.fs.getxattr(Ino(ino.0), name), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.fs.stats.fuse_op();
        reply_xattr(self.fs.listxattr(Ino(ino.0)), size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.fs.stats.fuse_op();
        empty(reply, self.fs.removexattr(Ino(ino.0), name))
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.fs.stats.fuse_op();
        let (attr, opened) = match self.fs.create(
            Ino(parent.0),
            name,
            mode & !umask,
            flags,
            caller(req),
            self.passthrough(),
        ) {
            Ok(created) => created,
            Err(e) => return reply.error(errno(&e)),
        };
        let attr = file_attr(&attr);
        let fh = FileHandle(opened.fh);
        if let OpenedKind::Real {
            ino,
            file,
            passthrough: true,
        } = opened.kind
        {
            match self.backings.backing(ino, &file, |f| reply.open_backing(f)) {
                Ok(id) => {
                    // Held before the reply (see `Backings::answer_open`).
                    self.backings.hold(opened.fh, Arc::clone(&id));
                    reply.created_passthrough(
                        &TTL,
                        &attr,
                        Generation(0),
                        fh,
                        FopenFlags::empty(),
                        &id,
                    );
                    return;
                }
                Err(e) => tracing::warn!("passthrough refused for inode {ino}: {e}"),
            }
        }
        reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::FOPEN_KEEP_CACHE);
    }
}

/// Answers a request that returns nothing.
fn empty(reply: ReplyEmpty, result: fs::Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers a request that returns a new or found entry.
fn entry(reply: ReplyEntry, result: fs::Result<fs::Attr>) {
    match result {
        Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers a request that returns attributes.
fn attr(reply: ReplyAttr, result: fs::Result<fs::Attr>) {
    match result {
        Ok(a) => reply.attr(&TTL, &file_attr(&a)),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers an xattr request: the size when `size` is 0, ERANGE when the
/// value does not fit, else the value.
fn reply_xattr(value: fs::Result<Vec<u8>>, size: u32, reply: ReplyXattr) {
    match value {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}
