//! A file system that loses what was not flushed, for crash tests: one
//! flat directory held in memory, mounted with FUSE. Each file keeps its
//! bytes as of its last `fsync` apart from the writes since;
//! [`Lossy::power_loss`] unmounts it and keeps, of each file's writes since
//! its last `fsync`, a random subset, in order: what a disk that was
//! writing back its cache, in any order, may hold when the power goes.
//! Creating a file is durable at once (LMDB creates its files when it
//! opens the environment, then only writes, truncates and syncs them).
//!
//! Used by tests/durability.rs to put `DATA/db` of a peer on it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use proptest::prelude::RngExt;

/// A change to a file since its last flush.
#[derive(Clone)]
enum Change {
    /// Bytes written at an offset.
    Write(u64, Vec<u8>),
    /// The length set (truncate).
    Len(u64),
}

impl Change {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Change::Write(offset, data) => {
                let (start, end) = (*offset as usize, *offset as usize + data.len());
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
            }
            Change::Len(len) => bytes.resize(*len as usize, 0),
        }
    }
}

/// One file: inode number `index + 2` (1 is the directory).
struct File {
    name: OsString,
    mode: u16,
    /// The bytes on "disk": as of the last flush.
    flushed: Vec<u8>,
    /// The bytes readers see.
    now: Vec<u8>,
    /// What changed since the last flush, in order.
    since: Vec<Change>,
}

#[derive(Default)]
struct Files {
    files: Vec<File>,
    dir_mode: u16,
}

/// The FUSE side: every request under one lock.
struct LossyFs(Arc<Mutex<Files>>);

/// A mounted [`LossyFs`] at `dir`; unmounted on drop (its files kept as
/// flushed).
pub struct Lossy {
    dir: PathBuf,
    files: Arc<Mutex<Files>>,
    session: Option<fuser::BackgroundSession>,
}

const TTL: Duration = Duration::ZERO;

impl Lossy {
    /// Mounts an empty lossy directory at `dir` (an existing directory).
    pub fn mount(dir: &Path) -> Lossy {
        let files = Arc::new(Mutex::new(Files {
            files: Vec::new(),
            dir_mode: 0o700,
        }));
        let mut lossy = Lossy {
            dir: dir.to_path_buf(),
            files,
            session: None,
        };
        lossy.start();
        lossy
    }

    fn start(&mut self) {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("lossy".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let fs = LossyFs(Arc::clone(&self.files));
        let session = fuser::spawn_mount(fs, &self.dir, &config).expect("mount the lossy fs");
        self.session = Some(session);
    }

    /// The power goes: unmounts (whoever used the files must be dead),
    /// keeps in each file a random subset of its changes since its last
    /// flush (by `seed`), and mounts again. Returns how many changes were
    /// dropped.
    pub fn power_loss(&mut self, seed: u64) -> usize {
        if let Some(session) = self.session.take() {
            session.umount_and_join().expect("unmount the lossy fs");
        }
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        );
        let mut dropped = 0;
        for file in &mut lock(&self.files).files {
            let mut kept = file.flushed.clone();
            for change in file.since.drain(..) {
                if rng.random_bool(0.5) {
                    change.apply(&mut kept);
                } else {
                    dropped += 1;
                }
            }
            file.now = kept.clone();
            file.flushed = kept;
        }
        self.start();
        dropped
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && session.umount_and_join().is_err()
        {
            // Still in use (a test that failed with its daemon running):
            // detached, gone when its last user is.
            let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn lock(files: &Mutex<Files>) -> std::sync::MutexGuard<'_, Files> {
    files.lock().unwrap_or_else(|e| e.into_inner())
}

fn attr(ino: u64, kind: FileType, perm: u16, size: u64) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Files {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        if ino == 1 {
            return Some(attr(1, FileType::Directory, self.dir_mode, 0));
        }
        let file = self.files.get(ino.checked_sub(2)? as usize)?;
        Some(attr(
            ino,
            FileType::RegularFile,
            file.mode,
            file.now.len() as u64,
        ))
    }

    fn file(&mut self, ino: INodeNo) -> Option<&mut File> {
        self.files.get_mut(ino.0.checked_sub(2)? as usize)
    }
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let files = lock(&self.0);
        let found = (parent.0 == 1)
            .then(|| files.files.iter().position(|f| f.name == name))
            .flatten();
        match found.and_then(|i| files.attr(i as u64 + 2)) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match lock(&self.0).attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut files = lock(&self.0);
        if ino.0 == 1 {
            if let Some(mode) = mode {
                files.dir_mode = (mode & 0o7777) as u16;
            }
        } else if let Some(file) = files.file(ino) {
            if let Some(mode) = mode {
                file.mode = (mode & 0o7777) as u16;
            }
            if let Some(len) = size {
                let change = Change::Len(len);
                change.apply(&mut file.now);
                file.since.push(change);
            }
        }
        match files.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut files = lock(&self.0);
        if parent.0 != 1 || files.files.iter().any(|f| f.name == name) {
            return reply.error(Errno::EEXIST);
        }
        files.files.push(File {
            name: name.to_os_string(),
            mode: (mode & !umask & 0o7777) as u16,
            flushed: Vec::new(),
            now: Vec::new(),
            since: Vec::new(),
        });
        let ino = files.files.len() as u64 + 1;
        let a = files.attr(ino).expect("just made");
        reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty());
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut files = lock(&self.0);
        let Some(file) = files.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let start = (offset as usize).min(file.now.len());
        let end = (start + size as usize).min(file.now.len());
        reply.data(&file.now[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut files = lock(&self.0);
        let Some(file) = files.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let change = Change::Write(offset, data.to_vec());
        change.apply(&mut file.now);
        file.since.push(change);
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut files = lock(&self.0);
        let Some(file) = files.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        file.flushed = file.now.clone();
        file.since.clear();
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let files = lock(&self.0);
        let mut entries = vec![
            (1, FileType::Directory, OsString::from(".")),
            (1, FileType::Directory, OsString::from("..")),
        ];
        for (i, file) in files.files.iter().enumerate() {
            entries.push((i as u64 + 2, FileType::RegularFile, file.name.clone()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }
}
