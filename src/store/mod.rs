//! LMDB (heed): one environment under `DATA/db`, one module per database.
//!
//! All databases live in the same environment, so one write transaction
//! covers a namespace change and the history op that records it: a crash
//! (even `kill -9`) leaves either both or neither.
//!
//! The environment is opened with `NO_META_SYNC`: a commit flushes its
//! pages to disk and writes its meta page without waiting for it, so a
//! power loss takes at most the last commits (their meta pages) and never
//! leaves a meta page that points at pages not on disk. `NO_SYNC` could:
//! the kernel writes back in any order, and tests/durability.rs found a
//! database that no longer opened after a simulated power loss.
//! [`Store::sync`] flushes the meta page too; it is called before anything
//! a peer may keep leaves this peer, every second, and at unmount (see
//! realize.7, "Durability").

pub mod areas;
pub mod cache;
pub mod config;
mod group;
pub mod history;
pub mod kept;
pub mod meta;
pub mod namespace;
pub mod outboards;
pub mod peers;
pub mod versions;
pub mod xattrs;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::path::Path;

use heed::{BoxedError, BytesDecode, BytesEncode, CommitOrAbort, EnvFlags, EnvOpenOptions};

pub use heed::{RoTxn, RwTxn};

pub use crate::ids::Ino;

/// The inode number of the mount's root directory (FUSE_ROOT_ID).
pub const ROOT: Ino = Ino(1);

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// LMDB refused an operation (map full, I/O error, …).
    #[error("LMDB: {0}")]
    Lmdb(#[from] heed::Error),
    /// A record that does not decode: the database is damaged or from
    /// another version.
    #[error("corrupt record in {0}")]
    Corrupt(&'static str),
    /// Creating the database directory failed.
    #[error("database directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A heed codec storing any serde type as postcard bytes.
pub struct Postcard<T>(PhantomData<T>);

impl<'a, T: serde::Serialize + 'a> BytesEncode<'a> for Postcard<T> {
    type EItem = T;
    fn bytes_encode(item: &'a T) -> std::result::Result<Cow<'a, [u8]>, BoxedError> {
        Ok(Cow::Owned(postcard::to_stdvec(item)?))
    }
}

impl<'a, T: serde::Deserialize<'a> + 'a> BytesDecode<'a> for Postcard<T> {
    type DItem = T;
    fn bytes_decode(bytes: &'a [u8]) -> std::result::Result<T, BoxedError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// The open LMDB environment and its databases.
pub struct Store {
    env: heed::Env<heed::WithoutTls>,
    /// Flushes done ([`Store::sync`]).
    syncs: std::sync::atomic::AtomicU64,
    /// The last transaction id a flush covered ([`Store::sync_committed`]).
    synced: std::sync::atomic::AtomicU64,
    /// Transactions waiting for a shared commit ([`Store::write_grouped`]).
    group: group::Group,
    /// Inodes and directory entries.
    pub namespace: namespace::Namespace,
    /// Per-area operation logs.
    pub history: history::History,
    /// Area records: sequence counters and shares.
    pub areas: areas::Areas,
    /// Settings of `/.ctl/config`.
    pub config: config::ConfigDb,
    /// User extended attributes.
    pub xattrs: xattrs::Xattrs,
    /// Counters (next inode number).
    pub meta: meta::Meta,
    /// Known peers.
    pub peers: peers::Peers,
    /// Versions and holders of every path, and the feed of changes.
    pub versions: versions::Versions,
    /// What the blob cache holds.
    pub cache: cache::Cache,
    /// Outboards of blobs, in parts.
    pub outboards: outboards::Outboards,
    /// Kept versions of replaced and deleted files.
    pub kept: kept::KeptDb,
}

/// Map size of the environment: address space reserved, not disk used.
const MAP_SIZE: usize = 64 << 30;

impl Store {
    /// Opens (creating when absent) the environment in `dir` and all its
    /// databases, and makes sure the root inode exists.
    pub fn open(dir: &Path) -> Result<Store> {
        crate::private::dir(dir)?;
        // Without thread-local read slots, a thread may hold several read
        // transactions (readdirplus reads attributes inside a listing).
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(24);
        // SAFETY: NO_META_SYNC only defers the flush of the meta page; the
        // DATA lock guarantees one process opens the environment.
        unsafe { options.flags(EnvFlags::NO_META_SYNC) };
        // SAFETY: the environment is opened once per process (DATA lock).
        let env = unsafe { options.open(dir)? };
        for file in ["data.mdb", "lock.mdb"] {
            crate::private::file(&dir.join(file))?;
        }
        let wtxn = env.write_txn()?;
        let dbs = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("inodes"))?,
                    dbo.create_database(wtxn, Some("entries"))?,
                    dbo.create_database(wtxn, Some("names"))?,
                    dbo.create_database(wtxn, Some("history"))?,
                    dbo.create_database(wtxn, Some("areas"))?,
                    dbo.create_database(wtxn, Some("config"))?,
                    dbo.create_database(wtxn, Some("xattrs"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                    (
                        dbo.create_database(wtxn, Some("peers"))?,
                        dbo.create_database(wtxn, Some("subdirs"))?,
                    ),
                    (
                        dbo.create_database(wtxn, Some("paths"))?,
                        dbo.create_database(wtxn, Some("long_paths"))?,
                        dbo.create_database(wtxn, Some("feed"))?,
                    ),
                    (
                        dbo.create_database(wtxn, Some("cache"))?,
                        dbo.create_database(wtxn, Some("outboards"))?,
                        dbo.create_database(wtxn, Some("bases"))?,
                    ),
                    (
                        dbo.create_database(wtxn, Some("kept"))?,
                        dbo.create_database(wtxn, Some("kept_times"))?,
                        dbo.create_database(wtxn, Some("kept_blobs"))?,
                    ),
                )))
            })?
            .unwrap_commit();
        let (
            inodes,
            entries,
            names,
            history,
            areas,
            config,
            xattrs,
            meta,
            (peers, subdirs),
            (paths, long_paths, feed),
            (cache, outboards, bases),
            (kept, kept_times, kept_blobs),
        ) = dbs;
        let store = Store {
            env,
            syncs: Default::default(),
            synced: Default::default(),
            group: Default::default(),
            namespace: namespace::Namespace::new(inodes, entries, names, subdirs),
            history: history::History::new(history),
            areas: areas::Areas::new(areas),
            config: config::ConfigDb::new(config),
            xattrs: xattrs::Xattrs::new(xattrs),
            meta: meta::Meta::new(meta),
            peers: peers::Peers::new(peers),
            versions: versions::Versions::new(paths, long_paths, feed),
            cache: cache::Cache::new(cache, bases),
            outboards: outboards::Outboards::new(outboards),
            kept: kept::KeptDb::new(kept, kept_times, kept_blobs),
        };
        let mut wtxn = store.write()?;
        store.namespace.ensure_root(&mut wtxn)?;
        // Layout 1: directories counted in `subdirs`.
        if store.meta.layout(&wtxn)? < 1 {
            store.namespace.count_subdirs(&mut wtxn)?;
            store.meta.set_layout(&mut wtxn, 1)?;
        }
        wtxn.commit()?;
        Ok(store)
    }

    /// Duration setting `key`, read in a transaction of its own;
    /// `fallback` when the database cannot be read.
    pub fn duration_or(
        &self,
        key: config::Key,
        fallback: std::time::Duration,
    ) -> std::time::Duration {
        self.read()
            .and_then(|txn| self.config.duration(&txn, key))
            .unwrap_or(fallback)
    }

    /// Starts a read transaction (a consistent snapshot).
    pub fn read(&self) -> Result<RoTxn<'_, heed::WithoutTls>> {
        Ok(self.env.read_txn()?)
    }

    /// Starts the write transaction (LMDB allows one at a time).
    pub fn write(&self) -> Result<RwTxn<'_>> {
        Ok(self.env.write_txn()?)
    }

    /// Flushes committed transactions to disk, meta page included (the
    /// environment runs with `NO_META_SYNC`: the last commits are durable
    /// once this returns). Called before anything a peer may keep leaves
    /// this peer, every second by the recorder, and at unmount.
    pub fn sync(&self) -> Result<()> {
        let last = self.env.info().last_txn_id as u64;
        self.env.force_sync()?;
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.synced
            .fetch_max(last, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// [`Store::sync`] unless no transaction committed since the last
    /// flush (a page of changes asked for again, with nothing new).
    pub fn sync_committed(&self) -> Result<()> {
        let last = self.env.info().last_txn_id as u64;
        if self.synced.load(std::sync::atomic::Ordering::Relaxed) >= last {
            return Ok(());
        }
        self.sync()
    }

    /// How many flushes [`Store::sync`] did since the store opened.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// An inode number as an LMDB key: 8 bytes big-endian, so keys sort by
/// number (the encoding `heed::types::U64<BE>` gave before [`Ino`] was a
/// newtype).
pub struct InoKey;

impl<'a> BytesEncode<'a> for InoKey {
    type EItem = Ino;
    fn bytes_encode(ino: &'a Ino) -> std::result::Result<Cow<'a, [u8]>, BoxedError> {
        Ok(Cow::Owned(ino.0.to_be_bytes().to_vec()))
    }
}

impl<'a> BytesDecode<'a> for InoKey {
    type DItem = Ino;
    fn bytes_decode(bytes: &'a [u8]) -> std::result::Result<Ino, BoxedError> {
        let bytes: [u8; 8] = bytes.try_into()?;
        Ok(Ino(u64::from_be_bytes(bytes)))
    }
}

/// Appends a big-endian u64 (an inode number or a sequence number) to a
/// key.
pub(crate) fn key_u64(prefix: impl Into<u64>, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + rest.len());
    key.extend_from_slice(&prefix.into().to_be_bytes());
    key.extend_from_slice(rest);
    key
}

/// Reads the big-endian u64 at the start of a key.
pub(crate) fn key_prefix(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Corrupt("key"))?;
    Ok(u64::from_be_bytes(bytes))
}
