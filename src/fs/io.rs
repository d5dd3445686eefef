//! Open files: open, read, write, flush, fsync, release.
//!
//! A real file's handle holds its backing file. When the kernel allows
//! FUSE passthrough the adapter registers that file with the kernel and
//! reads and writes never reach us; otherwise they come here and go to the
//! backing file with `pread`/`pwrite`. Control files are read from a
//! snapshot taken at open and take one command per write.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::ctl::{CtlHandle, CtlNode};
use super::waits::{Done, ReadDone, with_read_buffer};
use super::{Error, Fs, Result, lock};
use crate::store::Ino;
use crate::store::namespace::Kind;

/// What a file handle refers to.
pub(super) enum Handle {
    /// A file of the Real.
    Real {
        ino: Ino,
        file: Arc<File>,
        writable: bool,
    },
    /// An unreal file, read through the blob cache.
    Unreal(Arc<crate::sync::unreal::UnrealFile>),
    /// A control file.
    Ctl(CtlHandle),
}

/// How a file was opened, for the adapter.
pub enum OpenedKind {
    /// A real file: the adapter may register `file` for passthrough; all
    /// handles of one inode share the same backing file while any is open.
    Real {
        /// The inode.
        ino: Ino,
        /// The backing file (opened read-write when `passthrough`).
        file: Arc<File>,
        /// Whether the file was opened to be passed through.
        passthrough: bool,
    },
    /// An unreal file: reads come here (the page cache may keep them).
    Unreal,
    /// A control file: use direct I/O (no page cache, size 0).
    Ctl,
}

/// An open file handle.
pub struct Opened {
    /// The handle number the kernel gives back in read, write, release.
    pub fh: u64,
    /// How to serve it.
    pub kind: OpenedKind,
}

impl Fs {
    /// Opens `ino` with open(2) `flags` and gives the handle to `done`.
    /// With `passthrough`, a real file's backing file is opened read-write
    /// so that every handle of the inode can share it with the kernel.
    /// Opening an unreal file for writing (without O_TRUNC) copies it up
    /// first: fetched whole on a thread of its own, `done` called after.
    pub fn open(&self, ino: Ino, flags: i32, passthrough: bool, done: Done<Opened>) {
        match self.open_now(ino, flags, passthrough) {
            Ok(Some(opened)) => done(Ok(opened)),
            Err(e) => done(Err(e)),
            Ok(None) => self.later("copy-up", done, move |fs| {
                // Unrealized again between the copy-up and the open: rare,
                // so a few tries.
                for _ in 0..3 {
                    fs.tree.copy_up(ino)?;
                    if let Some(opened) = fs.open_now(ino, flags, passthrough)? {
                        return Ok(opened);
                    }
                }
                Err(Error::Busy("the file keeps leaving the Real".into()))
            }),
        }
    }

    /// Opens `ino` without waiting on peers; `None` when it is unreal and
    /// opened for writing without O_TRUNC, so that a copy-up must come
    /// first.
    fn open_now(&self, ino: Ino, flags: i32, passthrough: bool) -> Result<Option<Opened>> {
        self.open_tries(ino, flags, passthrough, 3)
    }

    /// [`Fs::open_now`], trying again at most `retries` times when the
    /// file leaves its place in the Real between the read of its inode and
    /// the open.
    fn open_tries(
        &self,
        ino: Ino,
        flags: i32,
        passthrough: bool,
        retries: u32,
    ) -> Result<Option<Opened>> {
        if let Some(node) = CtlNode::parse(ino) {
            return self.ctl_open(node, flags).map(Some);
        }
        let txn = self.store.read()?;
        let inode = self.tree.inode(&txn, ino)?;
        match inode.kind {
            Kind::Dir => return Err(Error::IsDir),
            Kind::Symlink => return Err(Error::Invalid("cannot open a symlink".into())),
            Kind::File => {}
            // The kernel opens these itself; never asked of a FUSE file system.
            Kind::Special(_) => return Err(Error::Invalid("cannot open a special file".into())),
        }
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if inode.unreal {
            if !writable {
                let uf = self.tree.open_unreal(ino)?;
                if inode.size <= crate::store::cache::CHUNK {
                    self.tree.prefetch_after(inode.parent, &inode.name)?;
                }
                let fh = self.new_handle(Handle::Unreal(Arc::new(uf)));
                return Ok(Some(Opened {
                    fh,
                    kind: OpenedKind::Unreal,
                }));
            }
            drop(txn);
            if flags & libc::O_TRUNC == 0 {
                // Copy-up, as overlayfs does: the whole blob first.
                return Ok(None);
            }
            // Cut to nothing: the old bytes are not needed.
            self.setattr_now(
                ino,
                None,
                super::SetAttr {
                    size: Some(0),
                    ..Default::default()
                },
            )?;
            return self.open_now(ino, flags, passthrough);
        }
        drop(txn);
        // From here to the handle's count, no pull or unrealize moves the
        // file (sync::fences): its place is read after any move ended.
        let Some((opening, unrecorded)) = self.tree.arrive(ino, writable)? else {
            return self.open_now(ino, flags, passthrough); // unrealized meanwhile
        };
        let how = if passthrough {
            libc::O_RDWR
        } else if writable {
            (flags & libc::O_ACCMODE) | (flags & libc::O_APPEND)
        } else {
            libc::O_RDONLY
        };
        let opened = self.store.read().map_err(Error::from).and_then(|txn| {
            let path = self.tree.real_path(&txn, ino)?;
            drop(txn);
            match self.real.open_file(&path, crate::real::Open::flags(how)) {
                Ok(file) => Ok(file),
                Err(e) => {
                    tracing::debug!("opening inode {ino} at {path}: {e}");
                    Err(e.into())
                }
            }
        });
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                drop(opening);
                if writable {
                    self.tree.recorder.released(ino);
                }
                // Gone from the Real since the inode was read (a kill left
                // LMDB ahead of it): once more, then the error.
                if e.errno() == libc::ENOENT && retries > 0 {
                    return self.open_tries(ino, flags, passthrough, retries - 1);
                }
                return Err(e);
            }
        };
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let opened = self.open_real(ino, file, writable, passthrough);
        drop(opening);
        if writable {
            // The writer counted, no record starts: the version this write
            // replaces stays restorable (saved outside the fence, since
            // saving takes LMDB's write lock, which a pull holds while it
            // waits for the opens under way).
            let cut = self.tree.save_before_write(ino, unrecorded).and_then(|()| {
                match (truncate, self.handle_file(opened.fh)) {
                    (true, Some(file)) => Ok(file.set_len(0)?),
                    _ => Ok(()),
                }
            });
            if let Err(e) = cut {
                self.release(opened.fh)?;
                return Err(e.into());
            }
        }
        if !writable && !self.tree.reader_stays(ino)? {
            // Unrealized between the open and the count: open it unreal.
            self.release(opened.fh)?;
            return self.open_tries(ino, flags, passthrough, retries.saturating_sub(1));
        }
        if truncate {
            self.tree.recorder.touched(ino, true);
        }
        Ok(Some(opened))
    }

    /// Registers an open backing file as a new handle (a writer is
    /// already counted by the recorder).
    pub(super) fn open_real(
        &self,
        ino: Ino,
        file: File,
        writable: bool,
        passthrough: bool,
    ) -> Opened {
        let file = Arc::new(file);
        self.tree.opened(ino, &file);
        let fh = self.new_handle(Handle::Real {
            ino,
            file: Arc::clone(&file),
            writable,
        });
        Opened {
            fh,
            kind: OpenedKind::Real {
                ino,
                file,
                passthrough,
            },
        }
    }

    pub(super) fn new_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, handle);
        fh
    }

    /// The backing file of handle `fh`, if it is a real file.
    pub(super) fn handle_file(&self, fh: u64) -> Option<Arc<File>> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::Real { file, .. }) => Some(Arc::clone(file)),
            _ => None,
        }
    }

    /// Reads up to `size` bytes at `offset` through handle `fh` and gives
    /// them to `done` (fewer only at the end of the file). Real and control
    /// files answer at once; an unreal file answers when its bytes are in
    /// the cache, which may be later, from another thread.
    pub fn read(&self, fh: u64, offset: u64, size: u32, done: ReadDone) {
        let size = size as usize;
        let file = {
            let handles = lock(&self.handles);
            match handles.get(&fh) {
                None => return done(Err(Error::BadHandle)),
                Some(Handle::Real { file, .. }) => Arc::clone(file),
                Some(Handle::Unreal(uf)) => {
                    let uf = Arc::clone(uf);
                    drop(handles);
                    return self.read_unreal(uf, offset, size, done);
                }
                Some(Handle::Ctl(ctl)) => return done(Ok(ctl.read(offset, size as u32))),
            }
        };
        with_read_buffer(size, |buf| {
            let mut n = 0;
            while n < size {
                match file.read_at(&mut buf[n..], offset + n as u64) {
                    Ok(0) => break,
                    Ok(read) => n += read,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return done(Err(e.into())),
                }
            }
            done(Ok(&buf[..n]))
        })
    }

    /// Writes `data` at `offset` through handle `fh` and gives the bytes
    /// taken to `done`. A control file runs the command `data` holds on a
    /// thread of its own (`now`, `connect`, `fetch NAME` wait on peers) and
    /// answers once it took effect.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], done: Done<u32>) {
        let file = {
            let handles = lock(&self.handles);
            match handles.get(&fh) {
                Some(Handle::Real {
                    file,
                    writable: true,
                    ..
                }) => Arc::clone(file),
                None | Some(Handle::Real { .. } | Handle::Unreal(_)) => {
                    return done(Err(Error::BadHandle));
                }
                Some(Handle::Ctl(ctl)) => {
                    let node = ctl.node();
                    drop(handles);
                    let command = data.to_vec();
                    return self.later("ctl", done, move |fs| {
                        fs.ctl_write(node, &command)?;
                        Ok(command.len() as u32)
                    });
                }
            }
        };
        done(
            file.write_all_at(data, offset)
                .map(|()| data.len() as u32)
                .map_err(Error::from),
        )
    }

    /// `fallocate(2)` with `mode` (its FALLOC_FL_* flags, passed as they
    /// come) on the backing file of handle `fh`, which is open for writing
    /// (the kernel checks): every mode the file system under `DATA`
    /// supports, with its own errno otherwise (EOPNOTSUPP, EINVAL). A
    /// file opened for writing is real (copied up at its open), so this
    /// never fetches. What it changes is recorded when the handle closes,
    /// like a write.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        let file = match lock(&self.handles).get(&fh) {
            Some(Handle::Real {
                file,
                writable: true,
                ..
            }) => Arc::clone(file),
            _ => return Err(Error::BadHandle),
        };
        let too_big = |_| Error::Io(std::io::Error::from_raw_os_error(libc::EFBIG));
        let (offset, length) = (
            i64::try_from(offset).map_err(too_big)?,
            i64::try_from(length).map_err(too_big)?,
        );
        let flags = nix::fcntl::FallocateFlags::from_bits_retain(mode);
        nix::fcntl::fallocate(&*file, flags, offset, length)
            .map_err(|e| Error::Io(std::io::Error::from(e)))
    }

    /// Flushes handle `fh` (close of one descriptor): nothing to do, data
    /// is written through.
    pub fn flush(&self, fh: u64) -> Result<()> {
        if lock(&self.handles).contains_key(&fh) {
            Ok(())
        } else {
            Err(Error::BadHandle)
        }
    }

    /// Forces the data of handle `fh` to disk.
    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<()> {
        match self.handle_file(fh) {
            Some(file) if datasync => Ok(file.sync_data()?),
            Some(file) => Ok(file.sync_all()?),
            None => Ok(()),
        }
    }

    /// Closes handle `fh`. The last close of a written file starts its rest
    /// before the recorder hashes it; the last close of an unlinked file
    /// drops its record.
    pub fn release(&self, fh: u64) -> Result<()> {
        let handle = lock(&self.handles).remove(&fh).ok_or(Error::BadHandle)?;
        let Handle::Real { ino, writable, .. } = handle else {
            return Ok(());
        };
        if writable {
            self.tree.recorder.released(ino);
        }
        self.tree.closed(ino)?;
        Ok(())
    }
}
