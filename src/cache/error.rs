//! The blob cache's error type. The dispatcher maps it to an errno
//! ([`crate::fs::Error::errno`], the one place errnos are chosen).

use crate::store;

/// Why the cache could not give or fetch bytes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No holder sent the bytes in time, or the network is not running
    /// (EHOSTUNREACH to the reader).
    #[error("{0}")]
    Unreachable(String),
    /// Bytes that do not match their blob's hash: a piece failed
    /// verification and no holder sent good bytes in time (EIO).
    #[error("{0}")]
    Corrupt(String),
    /// Neither eviction nor anything else could make room (ENOSPC).
    #[error("{0}")]
    NoSpace(String),
    /// The blob is open or being fetched (EBUSY, `evict NAME`).
    #[error("{0}")]
    Busy(String),
    /// An I/O error on a cache file, with its own errno.
    #[error("cache file: {0}")]
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

/// Result of cache operations.
pub type Result<T> = std::result::Result<T, Error>;
