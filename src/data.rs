//! The DATA directory (DESIGN.md "What a user does"):
//!
//! ```text
//! DATA            mode 0700, like everything realize keeps beside the Real
//! DATA/key        this peer's ED25519 seed (32 bytes, mode 0600, refused
//!                 when open to other users)
//! DATA/db/        the LMDB environment
//! DATA/real/AREA/PATH   the Real: complete local files, plain
//! DATA/lock       held (flock) by the running realize
//! ```
//!
//! `DATA` defaults to `$XDG_DATA_HOME/realize`, else `~/.local/share/realize`.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::ids::PeerId;
use crate::net::identity::{self, Identity};
use crate::store::{self, Store};

/// Errors of the DATA directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another realize holds the lock.
    #[error("{0} is in use by another running realize")]
    Locked(String),
    /// A file or directory of DATA could not be made or read.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The key file failed.
    #[error(transparent)]
    Key(#[from] identity::Error),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] store::Error),
    /// `--name` was refused.
    #[error("bad name: {0}")]
    Name(String),
    /// No data directory was given and none can be derived.
    #[error("no --data given and neither XDG_DATA_HOME nor HOME is set")]
    NoDefault,
}

/// The default DATA directory.
pub fn default_path() -> Result<PathBuf, Error> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("realize"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or(Error::NoDefault)?;
    Ok(PathBuf::from(home).join(".local/share/realize"))
}

/// An open, locked DATA directory.
pub struct DataDir {
    root: PathBuf,
    identity: Identity,
    store: Store,
    _lock: Flock<File>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DataDir {
    /// Opens DATA at `root`, creating it (key pair, database, the Real)
    /// when absent, and takes its lock. `name`, when given, is stored as
    /// the `name` setting.
    pub fn open(root: &Path, name: Option<&str>) -> Result<DataDir, Error> {
        crate::private::dir(root).map_err(io_error(root))?;
        let lock_path = root.join("lock");
        let lock_file = crate::private::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| Error::Locked(root.display().to_string()))?;
        let real = root.join("real");
        std::fs::create_dir_all(&real).map_err(io_error(&real))?;
        let key = root.join("key");
        let identity = if key.exists() {
            Identity::load(&key)?
        } else {
            let identity = Identity::generate()?;
            identity.save(&key)?;
            identity
        };
        let store = Store::open(&root.join("db"))?;
        if let Some(name) = name {
            let mut wtxn = store.write()?;
            store
                .config
                .set(&mut wtxn, crate::store::config::Key::Name, name)
                .map_err(|e| Error::Name(e.to_string()))?;
            wtxn.commit().map_err(store::Error::from)?;
        }
        Ok(DataDir {
            root: root.to_path_buf(),
            identity,
            store,
            _lock: lock,
        })
    }

    /// The DATA directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Real: `DATA/real`.
    pub fn real(&self) -> PathBuf {
        self.root.join("real")
    }

    /// This peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Gives up the parts a mount needs; the lock stays held by the
    /// returned guard.
    pub fn into_parts(self) -> (PathBuf, Identity, Store, Flock<File>) {
        (self.root, self.identity, self.store, self._lock)
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
