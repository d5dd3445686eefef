//! [`Tree`]: the namespace as sync keeps it. It owns what the life of a
//! file needs beyond LMDB: the recorder's pending writes, the life
//! thread's queue, copy-ups under way, which inodes are open (an unlinked
//! open file stays as an orphan), and the kernel's caches to tell of
//! remote changes. Its methods are spread over this module's files:
//!
//! - this file: the state, and the namespace changes every concern makes
//!   (an entry inserted, a directory touched, an inode dropped, an op
//!   recorded with its versions), modes;
//! - [`super::paths`]: where an inode lives in the Real;
//! - [`super::recorder`]: rested writes into history;
//! - [`super::reconcile`]: the mount-time comparison with the Real;
//! - [`super::remote`]: a peer's records merged and shown;
//! - [`super::life`]: modes at work (realize, unrealize);
//! - [`super::unreal`]: unreal files opened from the cache, copy-up;
//! - [`super::held`], [`super::sharing`], [`super::peering`]: what the
//!   household sees of this peer ([`crate::net::core::Core`]).

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::local::Left;
use super::merge::Content;
use super::{Error, Result, life, lock, recorder, unreal};
use crate::cache::Cache;
use crate::ids::{BlobHash, PeerId};
use crate::net::Household;
use crate::real::Real;
use crate::stats::{ErrorLog, Stats};
use crate::store::history::{Op, OpKind};
use crate::store::namespace::{Inode, Kind, Mode, Timestamp};
use crate::store::{Ino, ROOT, RoTxn, RwTxn, Store};

/// The kernel's caches, for changes the kernel did not make itself
/// (control commands, remote changes). Implemented over fuser's notifier
/// by [`crate::fuse`]; absent when tests drive the core directly.
pub trait KernelCache: Send + Sync {
    /// Forgets the cached entry `name` of directory `parent`, and the
    /// directory's attributes (its link count and times change with it).
    fn forget_entry(&self, parent: u64, name: &[u8]);
}

/// Open state of an inode: how many handles, and one open file to `fstat`
/// when the inode has no path any more (unlinked while open).
struct OpenInode {
    count: u32,
    file: Arc<File>,
}

/// The namespace as sync keeps it (see the module doc).
pub struct Tree {
    pub(crate) store: Arc<Store>,
    pub(crate) real: Arc<Real>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) household: Arc<Household>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) errors: Arc<ErrorLog>,
    pub(crate) peer_id: PeerId,
    /// Written files not yet recorded.
    pub(crate) recorder: recorder::Recorder,
    pub(crate) life: life::Life,
    /// Opens of real files against the moves that take them from their
    /// place.
    pub(crate) fences: super::fences::Fences,
    pub(crate) unreal: unreal::Unreal,
    open: Mutex<HashMap<Ino, OpenInode>>,
    /// Files stashed by pulls since the mount: numbers their names.
    pub(crate) stashed: std::sync::atomic::AtomicU64,
    /// Bytes of the kept versions, `u64::MAX` until counted
    /// ([`super::kept`]).
    pub(crate) kept_bytes: std::sync::atomic::AtomicU64,
    kernel: OnceLock<Box<dyn KernelCache>>,
    /// Directories a peer removed, shown only for the entries below them,
    /// that a local removal left empty: (area, path). The next pull
    /// removes them ([`Tree::left_empty`]).
    pub(crate) emptied: Mutex<Vec<(Ino, Vec<u8>)>>,
    /// Areas a pull is applying to now: one pull per area at a time
    /// ([`super::peering`]), since a pull's end (the stash it claims, the
    /// files it caches) assumes the namespace it left.
    pub(crate) pulling: Mutex<std::collections::HashSet<Ino>>,
    /// Signalled when a pull ends.
    pub(crate) pull_ended: std::sync::Condvar,
    /// This tree, for work that outlives a call (pulls, pins).
    pub(crate) me: Weak<Tree>,
}

/// What a [`Tree`] is made of: the concerns below it, shared.
pub struct Parts {
    /// LMDB.
    pub store: Arc<Store>,
    /// The Real.
    pub real: Arc<Real>,
    /// The blob cache.
    pub cache: Arc<Cache>,
    /// The network's handle.
    pub household: Arc<Household>,
    /// Counters of `/.ctl/stats`.
    pub stats: Arc<Stats>,
    /// Lines of `/.ctl/errors`.
    pub errors: Arc<ErrorLog>,
    /// This peer.
    pub peer_id: PeerId,
}

impl Tree {
    /// The tree over `parts`, reconciled with the Real (see
    /// [`super::reconcile`]); [`Tree::start`] starts its threads.
    pub fn open(parts: Parts) -> Result<Arc<Tree>> {
        let tree = Arc::new_cyclic(|me| Tree {
            store: parts.store,
            real: parts.real,
            cache: parts.cache,
            household: parts.household,
            stats: parts.stats,
            errors: parts.errors,
            peer_id: parts.peer_id,
            recorder: recorder::Recorder::default(),
            life: life::Life::default(),
            fences: super::fences::Fences::default(),
            unreal: unreal::Unreal::default(),
            open: Mutex::new(HashMap::new()),
            stashed: std::sync::atomic::AtomicU64::new(0),
            kept_bytes: std::sync::atomic::AtomicU64::new(u64::MAX),
            kernel: OnceLock::new(),
            emptied: Mutex::new(Vec::new()),
            pulling: Mutex::new(Default::default()),
            pull_ended: std::sync::Condvar::new(),
            me: me.clone(),
        });
        let weak = Arc::downgrade(&tree);
        tree.cache.set_shown(Box::new(move |hash| {
            weak.upgrade().is_some_and(|tree| {
                tree.unreal_shows(hash).unwrap_or_else(|e| {
                    tracing::warn!("looking for unreal files of a blob: {e}");
                    true // kept, in doubt
                })
            })
        }));
        tree.reconcile()?;
        Ok(tree)
    }

    /// Whether an unreal file of the namespace shows blob `hash` (a scan
    /// of every inode: asked only before a delta edit takes its base's
    /// file).
    pub(crate) fn unreal_shows(&self, hash: &BlobHash) -> Result<bool> {
        let txn = self.store.read()?;
        let mut shows = false;
        self.store.namespace.for_each(&txn, |_, inode| {
            shows |= inode.unreal && inode.parent != Ino::NONE && inode.hash == Some(*hash);
            Ok(())
        })?;
        Ok(shows)
    }

    /// Starts the thread that records rested writes into history, and the
    /// one that realizes and unrealizes files by their modes (after a scan
    /// of every area); returns the recorder's.
    pub fn start(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("life".into())
            .spawn(move || Tree::run_life(weak))?;
        self.life_job(life::Job::Scan(ROOT));
        let tree = Arc::clone(self);
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || tree.run_recorder())
    }

    /// Records every pending write now, whatever its rest, stops the
    /// threads and flushes LMDB to disk. Called at unmount.
    pub fn shutdown(&self) {
        self.life.stop();
        self.recorder.stop();
        if let Err(e) = self.record_pending(true) {
            tracing::error!("recording pending writes at unmount: {e}");
        }
        match self.store.sync() {
            Ok(()) => {
                if let Err(e) = self.mark_clean() {
                    tracing::error!("marking the unmount clean: {e}");
                }
            }
            Err(e) => tracing::error!("flushing the database: {e}"),
        }
    }

    /// Connects the kernel's caches, once the mount exists.
    pub fn set_kernel_cache(&self, kernel: Box<dyn KernelCache>) {
        let _ = self.kernel.set(kernel);
    }

    /// This peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A handle on real file `ino` was opened with `file`.
    pub(crate) fn opened(&self, ino: Ino, file: &Arc<File>) {
        lock(&self.open)
            .entry(ino)
            .and_modify(|o| o.count += 1)
            .or_insert_with(|| OpenInode {
                count: 1,
                file: Arc::clone(file),
            });
    }

    /// A handle on real file `ino` was closed; an orphan (unlinked while
    /// open) is removed at its last close.
    pub(crate) fn closed(&self, ino: Ino) -> Result<()> {
        let last = {
            let mut open = lock(&self.open);
            match open.get_mut(&ino) {
                Some(o) if o.count > 1 => {
                    o.count -= 1;
                    false
                }
                _ => {
                    open.remove(&ino);
                    true
                }
            }
        };
        if last {
            let mut wtxn = self.store.write()?;
            if let Some(inode) = self.store.namespace.get(&wtxn, ino)?
                && inode.parent == Ino::NONE
            {
                self.store.xattrs.remove_all(&mut wtxn, ino)?;
                self.store.namespace.remove(&mut wtxn, ino)?;
                wtxn.commit()?;
            }
        }
        Ok(())
    }

    /// Makes area `name` in the namespace: a directory at the root in
    /// `mode` owned by `uid`:`gid`, `DATA/real/NAME` behind it (made when
    /// absent). EEXIST when the area exists.
    pub(crate) fn make_area(
        &self,
        name: &[u8],
        perm: u16,
        (uid, gid): (u32, u32),
        mode: Option<Mode>,
    ) -> Result<Ino> {
        let mut wtxn = self.store.write()?;
        if self.store.namespace.lookup(&wtxn, ROOT, name)?.is_some() {
            return Err(Error::Exists(format!(
                "area {} exists",
                crate::format::escape(name)
            )));
        }
        let path = self.real_child(&wtxn, ROOT, name)?;
        match self.real.mkdir(&path, perm) {
            Err(e)
                if !(e.kind() == std::io::ErrorKind::AlreadyExists
                    && self.real.metadata(&path).is_ok_and(|m| m.is_dir())) =>
            {
                return Err(e.into());
            }
            _ => {}
        }
        self.real.chmod(&path, perm)?;
        let default = self
            .store
            .config
            .get(&wtxn, crate::store::config::Key::ModeLocal)?;
        let mut inode = Inode::new(ROOT, name, Kind::Dir, perm, Ino::NONE);
        (inode.uid, inode.gid) = (uid, gid);
        inode.mode = Some(mode.unwrap_or(Mode::parse(&default).unwrap_or(Mode::Real)));
        let ino = self.insert(&mut wtxn, ROOT, name, &inode)?;
        inode.area = ino;
        self.store.namespace.put(&mut wtxn, ino, &inode)?;
        self.store
            .areas
            .put(&mut wtxn, ino, &crate::store::areas::Area::default())?;
        wtxn.commit()?;
        Ok(ino)
    }

    pub(crate) fn inode(&self, txn: &RoTxn, ino: Ino) -> Result<Inode> {
        self.store
            .namespace
            .get(txn, ino)?
            .ok_or_else(Error::not_found)
    }

    /// The path of `ino` inside its area, joined by `/`.
    /// Notes directory `dir`, which a local removal just left empty,
    /// when a peer removed it (its record shows a deletion: it was shown
    /// only for its entries); the next pull removes it, as every peer
    /// does. Not at once: the user may be about to put a file there.
    pub(crate) fn left_empty(&self, txn: &RoTxn, dir: Ino) -> Result<()> {
        let inode = self.inode(txn, dir)?;
        if inode.kind != Kind::Dir
            || inode.area == dir
            || !self.store.namespace.is_empty(txn, dir)?
        {
            return Ok(());
        }
        let path = self.area_path(txn, dir)?;
        let deleted = self
            .store
            .versions
            .get(txn, inode.area, &path)?
            .and_then(|r| r.siblings.first().map(|w| w.content == Content::Deleted))
            .unwrap_or(false);
        if deleted {
            lock(&self.emptied).push((inode.area, path));
        }
        Ok(())
    }

    pub(crate) fn area_path(&self, txn: &RoTxn, ino: Ino) -> Result<Vec<u8>> {
        Ok(self.store.namespace.path_in_area(txn, ino)?.join(&b'/'))
    }

    /// The inode at `path` (components joined by `/`) inside `area`.
    pub(crate) fn ino_at(&self, txn: &RoTxn, area: Ino, path: &[u8]) -> Result<Option<Ino>> {
        let mut at = area;
        for name in path.split(|&b| b == b'/') {
            match self.store.namespace.lookup(txn, at, name)? {
                Some(ino) => at = ino,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    /// The op for a path: `kind` at `path` with `hash`.
    pub(crate) fn op(kind: OpKind, path: Vec<u8>, hash: Option<BlobHash>) -> Op {
        Op {
            time: Timestamp::now(),
            kind,
            path,
            hash,
            base: None,
            new_path: None,
        }
    }

    /// Whether the peers see something at `path` of `area` (its record's
    /// winner is not a deletion): then a local change there must be
    /// recorded even when the file the namespace shows was never recorded
    /// (an unrecorded file renamed over a recorded one).
    pub(crate) fn shown_to_peers(&self, txn: &RoTxn, area: Ino, path: &[u8]) -> Result<bool> {
        Ok(self
            .store
            .versions
            .get(txn, area, path)?
            .and_then(|r| r.siblings.first().map(|w| w.content != Content::Deleted))
            .unwrap_or(false))
    }

    /// Appends an op to the history of `area` with its next sequence
    /// number, and the versions it makes (what it left at its path is read
    /// from the namespace, so call it after the change).
    pub(crate) fn record(&self, wtxn: &mut RwTxn, area: Ino, op: Op) -> Result<()> {
        tracing::debug!(
            "{}: {:?} {}{}",
            self.peer_id,
            op.kind,
            String::from_utf8_lossy(&op.path),
            op.new_path
                .as_ref()
                .map(|p| format!(" -> {}", String::from_utf8_lossy(p)))
                .unwrap_or_default()
        );
        // What the op replaced stays restorable.
        self.keep_replaced(wtxn, area, &op.path)?;
        if let Some(new_path) = &op.new_path {
            self.keep_replaced(wtxn, area, new_path)?;
        }
        let left = match self.ino_at(wtxn, area, &op.path)? {
            Some(ino) => {
                let inode = self.inode(wtxn, ino)?;
                let content = match inode.kind {
                    Kind::Dir => Content::Dir,
                    Kind::Symlink => Content::Symlink(inode.target.clone()),
                    Kind::File => match inode.hash {
                        Some(hash) => Content::File(hash),
                        None => Content::Deleted,
                    },
                    // Never sent: peers see nothing there.
                    Kind::Special(_) => Content::Deleted,
                };
                Some(Left {
                    content,
                    mtime: inode.mtime.secs,
                    size: if inode.kind == Kind::File {
                        inode.size
                    } else {
                        0
                    },
                    perm: inode.perm,
                })
            }
            None => None,
        };
        crate::sync::local::note(&self.store, wtxn, self.peer_id, area, &op, left)?;
        // Numbered after its versions: a peer that applied the feed up to
        // an op's number has all the op did, and the op may be trimmed.
        let seq = self.store.areas.next_seq(wtxn, area)?;
        self.store.history.append(wtxn, area, seq, &op)?;
        let name = self.inode(wtxn, area)?.name;
        self.household.send(crate::net::Command::Changed {
            area: name,
            kind: op.kind,
        });
        Ok(())
    }

    /// Adds `inode` as `name` in `parent`, updating the parent's times.
    pub(crate) fn insert(
        &self,
        wtxn: &mut RwTxn,
        parent: Ino,
        name: &[u8],
        inode: &Inode,
    ) -> Result<Ino> {
        let ino = self.store.meta.alloc_ino(wtxn)?;
        self.store.namespace.put(wtxn, ino, inode)?;
        self.store.namespace.link(wtxn, parent, name, ino)?;
        self.touch_dir(wtxn, parent)?;
        Ok(ino)
    }

    /// Sets a directory's mtime and ctime to now.
    pub(crate) fn touch_dir(&self, wtxn: &mut RwTxn, dir: Ino) -> Result<()> {
        let mut inode = self.inode(wtxn, dir)?;
        inode.mtime = Timestamp::now();
        inode.ctime = inode.mtime;
        Ok(self.store.namespace.put(wtxn, dir, &inode)?)
    }

    /// Drops inode `ino` (already unlinked): kept as an orphan while open,
    /// removed otherwise.
    pub(crate) fn drop_inode(&self, wtxn: &mut RwTxn, ino: Ino, mut inode: Inode) -> Result<()> {
        self.recorder.forget(ino);
        if self.open_file(ino).is_some() {
            inode.parent = Ino::NONE;
            Ok(self.store.namespace.put(wtxn, ino, &inode)?)
        } else {
            self.store.xattrs.remove_all(wtxn, ino)?;
            Ok(self.store.namespace.remove(wtxn, ino)?)
        }
    }

    /// The mode in force at `ino`, and whether it is set on `ino` itself.
    /// Walks up to the first entry with a mode; an area without one takes
    /// `config mode.local`.
    pub(crate) fn effective_mode(&self, txn: &RoTxn, ino: Ino) -> Result<(Mode, bool)> {
        let mut at = ino;
        loop {
            let inode = self.inode(txn, at)?;
            if let Some(mode) = inode.mode {
                return Ok((mode, at == ino));
            }
            if inode.parent == ROOT || inode.parent == Ino::NONE || at == ROOT {
                let default = self
                    .store
                    .config
                    .get(txn, crate::store::config::Key::ModeLocal)?;
                return Ok((Mode::parse(&default).unwrap_or(Mode::Real), false));
            }
            at = inode.parent;
        }
    }

    /// Sets (`Some`) or clears (`None`, inherit) the mode of `ino`.
    pub(crate) fn set_mode(&self, ino: Ino, mode: Option<Mode>) -> Result<()> {
        let mut wtxn = self.store.write()?;
        let mut inode = self.inode(&wtxn, ino)?;
        inode.mode = mode;
        self.store.namespace.put(&mut wtxn, ino, &inode)?;
        wtxn.commit()?;
        self.life_job(life::Job::Scan(ino));
        Ok(())
    }

    /// Tells the kernel that entry `name` of `parent` changed.
    pub(crate) fn forget_entry(&self, parent: Ino, name: &[u8]) {
        if let Some(kernel) = self.kernel.get() {
            kernel.forget_entry(parent.0, name);
        }
    }

    /// One open backing file of `ino`, if any handle is open.
    pub(crate) fn open_file(&self, ino: Ino) -> Option<Arc<File>> {
        lock(&self.open).get(&ino).map(|o| Arc::clone(&o.file))
    }
}
