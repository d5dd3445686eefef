//! The errors of sync: the namespace, recording, remote pages, modes and
//! the life of a file. The dispatcher maps them to an errno
//! ([`crate::fs::Error::errno`], the one place errnos are chosen).

use crate::{cache, store};

/// Why a change of the namespace or of a file's life failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such entry or area (ENOENT).
    #[error("{0}")]
    NotFound(String),
    /// The entry or area exists already (EEXIST).
    #[error("{0}")]
    Exists(String),
    /// Neither the cache nor the Real can make room (ENOSPC).
    #[error("{0}")]
    NoSpace(String),
    /// No peer answered in time (ETIMEDOUT).
    #[error("{0}")]
    TimedOut(String),
    /// No peer could be reached (EHOSTUNREACH).
    #[error("{0}")]
    Unreachable(String),
    /// The blob cache failed: its own error, kept whole.
    #[error(transparent)]
    Cache(#[from] cache::Error),
    /// An I/O error on the Real, with its own errno.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The database failed (EIO).
    #[error("database: {0}")]
    Store(#[from] store::Error),
}

impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Error {
        Error::Store(store::Error::from(e))
    }
}

impl Error {
    /// A plain "no such entry".
    pub fn not_found() -> Error {
        Error::NotFound("no such file or directory".into())
    }

    /// Whether the failure is that no peer answered (the work may succeed
    /// when one does).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            Error::Unreachable(_) | Error::TimedOut(_) | Error::Cache(cache::Error::Unreachable(_))
        )
    }

    /// Whether the failure is a full disk (the work may succeed once
    /// space returns).
    pub fn no_space(&self) -> bool {
        match self {
            Error::NoSpace(_) | Error::Cache(cache::Error::NoSpace(_)) => true,
            Error::Io(e) | Error::Cache(cache::Error::Io(e)) => {
                matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            _ => false,
        }
    }
}

/// Result of sync operations.
pub type Result<T> = std::result::Result<T, Error>;
