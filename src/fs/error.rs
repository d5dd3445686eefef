//! The dispatcher's error type and its mapping to errno, in one place.

use crate::{cache, store, sync};

/// Why a file or control operation failed. [`Error::errno`] is the errno
/// the kernel (and so the user's `write(2)` or `open(2)`) sees; the text
/// is what `/.ctl/errors` records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ENOENT: no such entry, area, peer or name.
    #[error("{0}")]
    NotFound(String),
    /// EEXIST: already there.
    #[error("{0}")]
    Exists(String),
    /// EINVAL: bad syntax, unknown command or bad value.
    #[error("{0}")]
    Invalid(String),
    /// EBUSY: the target is in the wrong state.
    #[error("{0}")]
    Busy(String),
    /// EACCES: a read-only (or write-only) control file.
    #[error("{0}")]
    Access(String),
    /// EPERM: refused by the design (files at the root, `.ctl`, hard links…).
    #[error("{0}")]
    Perm(String),
    /// EROFS: a change under `/.ctl/dump`.
    #[error("the dump is read-only")]
    ReadOnly,
    /// ENAMETOOLONG: a name over 255 bytes.
    #[error("name longer than 255 bytes")]
    NameTooLong,
    /// ENOTDIR.
    #[error("not a directory")]
    NotDir,
    /// EISDIR.
    #[error("is a directory")]
    IsDir,
    /// ENOTEMPTY.
    #[error("directory not empty")]
    NotEmpty,
    /// EXDEV: a rename between areas.
    #[error("rename between areas")]
    CrossArea,
    /// ENODATA: no such extended attribute.
    #[error("no such attribute")]
    NoData,
    /// ERANGE: an attribute name too long.
    #[error("attribute name too long")]
    Range,
    /// E2BIG: an attribute value too large.
    #[error("attribute value too large")]
    TooBig,
    /// EOPNOTSUPP: an attribute namespace other than user.
    #[error("{0}")]
    Unsupported(String),
    /// EHOSTUNREACH: no peer could be reached.
    #[error("{0}")]
    Unreachable(String),
    /// EIO: bytes that do not match their blob's hash (a piece failed
    /// verification and no holder sent good bytes in time).
    #[error("{0}")]
    Corrupt(String),
    /// ENOSPC: neither the cache nor the Real can make room.
    #[error("{0}")]
    NoSpace(String),
    /// ETIMEDOUT: no answer in time.
    #[error("{0}")]
    TimedOut(String),
    /// EROFS: an unreal file's bytes cannot be changed where they are
    /// (they are made real first: copy-up).
    #[error("an unreal file cannot be changed in place")]
    Unreal,
    /// EBADF: an unknown file handle.
    #[error("bad file handle")]
    BadHandle,
    /// An I/O error on the Real, with its own errno.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The database failed (EIO).
    #[error("database: {0}")]
    Store(#[from] store::Error),
    /// The blob cache failed: its own error, kept whole.
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    /// Sync failed (the namespace, recording, modes): its own error, kept
    /// whole.
    #[error(transparent)]
    Sync(#[from] crate::sync::Error),
}

impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Error {
        Error::Store(store::Error::from(e))
    }
}

impl Error {
    /// The errno this error is reported as.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::Exists(_) => libc::EEXIST,
            Error::Invalid(_) => libc::EINVAL,
            Error::Busy(_) => libc::EBUSY,
            Error::Access(_) => libc::EACCES,
            Error::Perm(_) => libc::EPERM,
            Error::ReadOnly => libc::EROFS,
            Error::NameTooLong => libc::ENAMETOOLONG,
            Error::NotDir => libc::ENOTDIR,
            Error::IsDir => libc::EISDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::CrossArea => libc::EXDEV,
            Error::NoData => libc::ENODATA,
            Error::Range => libc::ERANGE,
            Error::TooBig => libc::E2BIG,
            Error::Unsupported(_) => libc::EOPNOTSUPP,
            Error::Unreachable(_) => libc::EHOSTUNREACH,
            Error::Corrupt(_) => libc::EIO,
            Error::NoSpace(_) => libc::ENOSPC,
            Error::TimedOut(_) => libc::ETIMEDOUT,
            Error::Unreal => libc::EROFS,
            Error::BadHandle => libc::EBADF,
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Error::Store(_) => libc::EIO,
            Error::Cache(e) => cache_errno(e),
            Error::Sync(e) => match e {
                sync::Error::NotFound(_) => libc::ENOENT,
                sync::Error::Exists(_) => libc::EEXIST,
                sync::Error::NoSpace(_) => libc::ENOSPC,
                sync::Error::TimedOut(_) => libc::ETIMEDOUT,
                sync::Error::Unreachable(_) => libc::EHOSTUNREACH,
                sync::Error::Cache(e) => cache_errno(e),
                sync::Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
                sync::Error::Store(_) => libc::EIO,
            },
        }
    }

    /// Whether this is "no such entry", whichever concern said it.
    pub fn is_not_found(&self) -> bool {
        self.errno() == libc::ENOENT
    }

    /// A plain "no such entry".
    pub fn not_found() -> Error {
        Error::NotFound("no such file or directory".into())
    }
}

fn cache_errno(e: &cache::Error) -> i32 {
    match e {
        cache::Error::Unreachable(_) => libc::EHOSTUNREACH,
        cache::Error::Corrupt(_) => libc::EIO,
        cache::Error::NoSpace(_) => libc::ENOSPC,
        cache::Error::Busy(_) => libc::EBUSY,
        cache::Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        cache::Error::Store(_) => libc::EIO,
    }
}

/// Result of dispatcher operations.
pub type Result<T> = std::result::Result<T, Error>;
