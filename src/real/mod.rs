//! The Real: complete local files, stored plain under `DATA/real/AREA/PATH`
//! so that they stay usable without realize.
//!
//! Every file-system call under `DATA/real` goes through [`Real`], which
//! holds a descriptor of that directory and resolves every [`RealPath`]
//! beneath it with `openat2(2)` and `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`:
//! no `..`, no absolute path and no symlink, planted by a peer, a user or a
//! race, can take a call out of the Real. (openat2 rather than cap-std:
//! cap-std follows symlinks that stay inside its root, and realize is
//! Linux-only anyway, through FUSE passthrough.) A path longer than the
//! kernel takes in one call (PATH_MAX, 4096 bytes) is walked a stretch of
//! directories at a time, each stretch resolved beneath the one before, so
//! any depth a user can reach through the mount works here too.
//!
//! The last component of a path is never followed either: calls act on a
//! symlink itself (`lstat`, `unlink`, `rename`), and opening one fails
//! with ELOOP.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The longest stretch of a path resolved in one call: PATH_MAX (4096,
/// with its NUL) less room for one more component.
const STRETCH: usize = 4096 - 256 - 1;

/// A path beneath `DATA/real`: `AREA/DIR/…/NAME`, components joined by
/// `/`, none empty, `.` or `..` (names come from the namespace, which
/// refuses them); empty for the Real itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RealPath(Vec<u8>);

impl RealPath {
    /// The Real itself.
    pub fn root() -> RealPath {
        RealPath(Vec::new())
    }

    /// The path of names `names`, from the area down.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> RealPath {
        let mut path = RealPath::root();
        for name in names {
            path.push(name);
        }
        path
    }

    /// Appends component `name`.
    pub fn push(&mut self, name: &[u8]) {
        if !self.0.is_empty() {
            self.0.push(b'/');
        }
        self.0.extend_from_slice(name);
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &[u8]) -> RealPath {
        let mut path = self.clone();
        path.push(name);
        path
    }

    /// The bytes, components joined by `/`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// (parent, last component); `None` for the root.
    fn split(&self) -> Option<(&[u8], &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.0[..i], &self.0[i + 1..]),
            None => (&[][..], &self.0[..]),
        })
    }
}

impl std::fmt::Display for RealPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

/// How a file is opened: `open(2)` flags (`O_ACCMODE`, `O_APPEND`,
/// `O_CREAT`, `O_EXCL`, `O_TRUNC`) and the mode of a file it creates.
#[derive(Clone, Copy, Debug)]
pub struct Open {
    /// `open(2)` flags; `O_NOFOLLOW` and `O_CLOEXEC` are always added.
    pub flags: OFlag,
    /// Permission bits of a created file.
    pub mode: u32,
}

impl Open {
    /// Read only.
    pub fn read() -> Open {
        Open {
            flags: OFlag::O_RDONLY,
            mode: 0,
        }
    }

    /// Read and write.
    pub fn read_write() -> Open {
        Open {
            flags: OFlag::O_RDWR,
            mode: 0,
        }
    }

    /// A new file, read and write, with permission bits `mode`; EEXIST
    /// when the name is taken.
    pub fn create_new(mode: u32) -> Open {
        Open {
            flags: OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        }
    }

    /// `flags` as open(2) takes them (access mode, `O_APPEND`, …).
    pub fn flags(flags: i32) -> Open {
        Open {
            flags: OFlag::from_bits_truncate(flags),
            mode: 0,
        }
    }
}

/// `DATA/real`, every call rooted beneath it (see the module doc).
pub struct Real {
    root: OwnedFd,
    path: PathBuf,
}

impl Real {
    /// The Real at `path` (`DATA/real`), created when absent.
    pub fn open(path: &Path) -> io::Result<Real> {
        std::fs::create_dir_all(path)?;
        let root = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Real {
            root,
            path: path.to_path_buf(),
        })
    }

    /// Where the Real is, for messages and `statvfs`.
    pub fn location(&self) -> &Path {
        &self.path
    }

    /// Resolves `path` beneath `dir` with `flags`, one stretch of at most
    /// [`STRETCH`] bytes at a time; `O_PATH | O_DIRECTORY` for every
    /// stretch but the last.
    fn resolve(&self, path: &[u8], flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        let how = |flags: OFlag, mode: u32| {
            OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
                .mode(Mode::from_bits_truncate(mode))
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
        };
        let mut rest = if path.is_empty() { &b"."[..] } else { path };
        let mut dir: Option<OwnedFd> = None;
        while rest.len() > STRETCH {
            let cut = rest[..STRETCH]
                .iter()
                .rposition(|&b| b == b'/')
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
            let at = dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
            let stretch = OsStr::from_bytes(&rest[..cut]);
            let next =
                openat2(at, stretch, how(OFlag::O_PATH | OFlag::O_DIRECTORY, 0)).map_err(errno)?;
            dir = Some(next);
            rest = &rest[cut + 1..];
        }
        let at = dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
        openat2(at, OsStr::from_bytes(rest), how(flags, mode)).map_err(errno)
    }

    /// The directory holding `path`, and the last component's name.
    fn parent<'a>(&self, path: &'a RealPath) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (parent, name) = path
            .split()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let dir = self.resolve(parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
        Ok((dir, OsStr::from_bytes(name)))
    }

    /// Opens the file at `path` (never through a symlink: ELOOP).
    pub fn open_file(&self, path: &RealPath, how: Open) -> io::Result<File> {
        Ok(File::from(self.resolve(
            path.as_bytes(),
            how.flags,
            how.mode,
        )?))
    }

    /// A descriptor of directory `path`, to list it.
    pub fn open_dir(&self, path: &RealPath) -> io::Result<OwnedFd> {
        self.resolve(path.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
    }

    /// The metadata of `path` itself (a symlink is not followed), as
    /// `lstat(2)` gives it.
    pub fn metadata(&self, path: &RealPath) -> io::Result<Metadata> {
        File::from(self.resolve(path.as_bytes(), OFlag::O_PATH, 0)?).metadata()
    }

    /// The names in directory `path` with their metadata (symlinks not
    /// followed), `.` and `..` left out.
    pub fn read_dir(&self, path: &RealPath) -> io::Result<Vec<(Vec<u8>, Metadata)>> {
        let mut names = Vec::new();
        for entry in nix::dir::Dir::from_fd(self.open_dir(path)?)
            .map_err(errno)?
            .iter()
        {
            let name = entry.map_err(errno)?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        // Each entry resolved beneath the directory, not walked from the
        // root again.
        let dir = self.resolve(path.as_bytes(), OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            match openat2(&dir, OsStr::from_bytes(&name), how) {
                Ok(fd) => entries.push((name, File::from(fd).metadata()?)),
                // Gone since it was listed.
                Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(entries)
    }

    /// Makes directory `path` with permission bits `perm` (less the
    /// process umask, which realize sets to 0).
    pub fn mkdir(&self, path: &RealPath, perm: u16) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(perm.into())).map_err(errno)
    }

    /// Makes FIFO, socket or device node `path`: `mode` is its `S_IFMT`
    /// bits and permission bits, `rdev` its device number (0 but for
    /// devices, which need CAP_MKNOD: EPERM otherwise).
    pub fn mknod(&self, path: &RealPath, mode: u32, rdev: u64) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let format = nix::sys::stat::SFlag::from_bits_truncate(mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(mode & 0o7777);
        nix::sys::stat::mknodat(&dir, name, format, perm, rdev).map_err(errno)
    }

    /// Removes the empty directory `path`.
    pub fn remove_dir(&self, path: &RealPath) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::RemoveDir).map_err(errno)
    }

    /// Removes the file, symlink or special file `path`.
    pub fn remove_file(&self, path: &RealPath) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(errno)
    }

    /// Renames `from` to `to`, both in the Real; `no_replace` fails with
    /// EEXIST instead of replacing `to`.
    pub fn rename(&self, from: &RealPath, to: &RealPath, no_replace: bool) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        let flags = match no_replace {
            true => nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            false => nix::fcntl::RenameFlags::empty(),
        };
        nix::fcntl::renameat2(&from_dir, from_name, &to_dir, to_name, flags).map_err(errno)
    }

    /// Moves `from`, a file of DATA outside the Real (the stash, the
    /// cache), to `to` in the Real, replacing what is there.
    pub fn rename_in(&self, from: &Path, to: &RealPath) -> io::Result<()> {
        let (to_dir, to_name) = self.parent(to)?;
        nix::fcntl::renameat(nix::fcntl::AT_FDCWD, from, &to_dir, to_name).map_err(errno)
    }

    /// Moves `from` in the Real to `to`, a path of DATA outside it.
    pub fn rename_out(&self, from: &RealPath, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        nix::fcntl::renameat(&from_dir, from_name, nix::fcntl::AT_FDCWD, to).map_err(errno)
    }

    /// Hard-links file `from` in the Real at `to`, a path of DATA outside
    /// it (the cache); a symlink is linked itself, never followed.
    pub fn link_out(&self, from: &RealPath, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        nix::unistd::linkat(
            &from_dir,
            from_name,
            nix::fcntl::AT_FDCWD,
            to,
            AtFlags::empty(),
        )
        .map_err(errno)
    }

    /// Makes symlink `path` pointing at `target` (kept as given: it is
    /// never followed by realize).
    pub fn symlink(&self, target: &[u8], path: &RealPath) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        nix::unistd::symlinkat(OsStr::from_bytes(target), &dir, name).map_err(errno)
    }

    /// The target of symlink `path`.
    pub fn read_link(&self, path: &RealPath) -> io::Result<Vec<u8>> {
        let (dir, name) = self.parent(path)?;
        let target: OsString = nix::fcntl::readlinkat(&dir, name).map_err(errno)?;
        Ok(target.into_vec())
    }

    /// Sets the permission bits of file or directory `path` (a symlink has
    /// none to set: EOPNOTSUPP).
    pub fn chmod(&self, path: &RealPath, perm: u16) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let mode = Mode::from_bits_truncate(perm.into());
        nix::sys::stat::fchmodat(&dir, name, mode, FchmodatFlags::NoFollowSymlink).map_err(errno)
    }

    /// Sets the owner and group of `path` itself (a symlink is not
    /// followed); `None` leaves one as it is. Needs root for another owner.
    pub fn chown(&self, path: &RealPath, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        nix::unistd::fchownat(
            &dir,
            name,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// Sets access and modification times of `path` itself (a symlink is
    /// not followed). `None`: leave as is; `Some(None)`: now.
    pub fn set_times(
        &self,
        path: &RealPath,
        atime: Option<Option<SystemTime>>,
        mtime: Option<Option<SystemTime>>,
    ) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        nix::sys::stat::utimensat(
            &dir,
            name,
            &timespec(atime),
            &timespec(mtime),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(errno)
    }

    /// Statistics of the disk holding the Real.
    pub fn statvfs(&self) -> io::Result<nix::sys::statvfs::Statvfs> {
        nix::sys::statvfs::fstatvfs(&self.root).map_err(errno)
    }

    /// The root's descriptor, for calls relative to it.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

fn timespec(time: Option<Option<SystemTime>>) -> TimeSpec {
    match time {
        None => TimeSpec::UTIME_OMIT,
        Some(None) => TimeSpec::UTIME_NOW,
        Some(Some(t)) => {
            let ts = crate::store::namespace::Timestamp::from(t);
            TimeSpec::new(ts.secs, i64::from(ts.nanos))
        }
    }
}
