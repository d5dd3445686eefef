//! Mount-time reconciliation of the namespace with the Real.
//!
//! Files changed under `DATA/real` while nothing was mounted, and whatever a
//! crash left between a change of the Real and its commit to LMDB, are
//! noticed here and recorded as history: a file whose size or mtime differs
//! from its recorded content is hashed again (an edit), a new file is a
//! create, a vanished one a delete. FIFOs, sockets and device nodes are
//! listed, never recorded. Inodes orphaned by a crash while
//! unlinked but open are dropped.
//!
//! After a crash (no mark of a clean unmount in `DATA/clean`), what
//! vanished from the Real is taken for lost by the crash, not deleted: a
//! power loss may drop what the disk had not written back of the Real (a
//! file a pull placed, a directory it made) while LMDB kept the commits
//! that recorded it. A recorded file becomes unreal (fetched again from a
//! peer that holds it), a directory or symlink is made again; nothing is
//! recorded, so no peer deletes its copy.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::{Result, Tree};
use crate::real::RealPath;
use crate::store::history::OpKind;
use crate::store::namespace::{Inode, Kind, Special, Timestamp};
use crate::store::{Ino, ROOT, RwTxn};

fn kind_of(meta: &Metadata) -> Option<Kind> {
    let t = meta.file_type();
    if t.is_dir() {
        Some(Kind::Dir)
    } else if t.is_file() {
        Some(Kind::File)
    } else if t.is_symlink() {
        Some(Kind::Symlink)
    } else {
        Special::from_mode(meta.mode(), meta.rdev()).map(Kind::Special)
    }
}

impl Tree {
    /// Brings the namespace in line with the Real (see the module doc).
    pub(crate) fn reconcile(&self) -> Result<()> {
        let crashed = !self.take_clean_mark()?;
        // Files a peer removed during a pull the process did not finish go
        // to the cache (`HASH-N`; anything else stays).
        let stash = self.stash_dir();
        crate::private::dir(&stash)?;
        for entry in std::fs::read_dir(&stash)? {
            let path = entry?.path();
            // A link an unrealize made of a file still in the Real (killed
            // before its commit): in the cache it would share the real
            // file's bytes, and an edit of the file would change the blob.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.nlink() > 1) {
                tracing::warn!("{}: a link to a real file; dropped", path.display());
                std::fs::remove_file(&path)?;
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().to_string());
            let hash = name
                .as_deref()
                .and_then(|n| n.split('-').next())
                .and_then(crate::format::parse_hash);
            if let Some(hash) = hash {
                self.stash_to_cache(&path, hash)?;
            }
        }
        // Areas first, each in its own transaction (make_area takes one).
        for (name, meta) in self.real.read_dir(&RealPath::root())? {
            let known = {
                let txn = self.store.read()?;
                self.store.namespace.lookup(&txn, ROOT, &name)?
            };
            if known.is_none() && meta.is_dir() && name != super::CTL_NAME.as_bytes() {
                let perm = (meta.permissions().mode() & 0o7777) as u16;
                self.make_area(&name, perm, (meta.uid(), meta.gid()), None)?;
            }
        }
        let mut wtxn = self.store.write()?;
        let mut orphans = Vec::new();
        self.store.namespace.for_each(&wtxn, |ino, inode| {
            if inode.parent == Ino::NONE {
                orphans.push(ino);
            }
            Ok(())
        })?;
        for ino in orphans {
            self.store.xattrs.remove_all(&mut wtxn, ino)?;
            self.store.namespace.remove(&mut wtxn, ino)?;
        }
        let mut areas = Vec::new();
        self.store.namespace.children(&wtxn, ROOT, 0, |_, e| {
            areas.push((e.ino, e.name));
            Ok(true)
        })?;
        for (area, name) in areas {
            let path = RealPath::root().join(&name);
            let present = self.real.metadata(&path).is_ok_and(|m| m.is_dir());
            if present || (crashed && self.restore_lost(&mut wtxn, area, &path)?) {
                self.reconcile_dir(&mut wtxn, area, &path, crashed)?;
            } else {
                tracing::warn!("area {path} vanished from the Real");
                // forget_tree drops the area's inode record too.
                self.store.namespace.unlink(&mut wtxn, ROOT, &name)?;
                self.forget_tree(&mut wtxn, area)?;
                self.store.areas.remove(&mut wtxn, area)?;
                self.store.history.remove_area(&mut wtxn, area)?;
                self.store.versions.remove_area(&mut wtxn, area)?;
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    fn reconcile_dir(
        &self,
        wtxn: &mut RwTxn,
        dir: Ino,
        path: &RealPath,
        crashed: bool,
    ) -> Result<()> {
        let mut known: HashMap<Vec<u8>, Ino> = HashMap::new();
        self.store.namespace.children(wtxn, dir, 0, |_, e| {
            known.insert(e.name, e.ino);
            Ok(true)
        })?;
        for (name, meta) in self.real.read_dir(path)? {
            let name = name.as_slice();
            let child_path = path.join(name);
            let Some(kind) = kind_of(&meta).filter(|_| name != super::CTL_NAME.as_bytes()) else {
                tracing::warn!("ignoring {child_path} in the Real");
                continue;
            };
            match known.remove(name) {
                Some(ino) => {
                    let inode = self.inode(wtxn, ino)?;
                    if inode.kind == kind {
                        self.reconcile_entry(wtxn, ino, inode, &child_path, &meta, crashed)?;
                        continue;
                    }
                    self.store.namespace.unlink(wtxn, dir, name)?;
                    self.forget_tree(wtxn, ino)?;
                    self.adopt(wtxn, dir, name, kind, &child_path, &meta)?;
                }
                None => self.adopt(wtxn, dir, name, kind, &child_path, &meta)?,
            }
        }
        for (name, ino) in known {
            if self.inode(wtxn, ino)?.unreal {
                continue; // its bytes were never in the Real
            }
            let child_path = path.join(&name);
            if crashed && self.restore_lost(wtxn, ino, &child_path)? {
                if self.inode(wtxn, ino)?.kind == Kind::Dir {
                    self.reconcile_dir(wtxn, ino, &child_path, crashed)?;
                }
                continue;
            }
            self.store.namespace.unlink(wtxn, dir, &name)?;
            self.forget_tree(wtxn, ino)?;
        }
        Ok(())
    }

    /// Compares a known entry with its backing file.
    fn reconcile_entry(
        &self,
        wtxn: &mut RwTxn,
        ino: Ino,
        mut inode: Inode,
        path: &RealPath,
        meta: &Metadata,
        crashed: bool,
    ) -> Result<()> {
        match inode.kind {
            Kind::Dir => self.reconcile_dir(wtxn, ino, path, crashed),
            Kind::File => {
                if inode.unreal {
                    if self.shares_cache_file(&inode, meta) {
                        // An unrealize committed, then was killed before it
                        // unlinked the real file: finished here, so that no
                        // edit of the file changes the cached blob.
                        tracing::warn!("{path}: left by an unrealize; removed");
                        return Ok(self.real.remove_file(path)?);
                    }
                    // Realized from the stash just before a crash.
                    inode.unreal = false;
                    self.store.namespace.put(wtxn, ino, &inode)?;
                }
                let mtime = Timestamp::from(meta.modified()?);
                if inode.hash.is_none() || inode.size != meta.size() || inode.mtime != mtime {
                    tracing::debug!(
                        "{path}: changed in the Real (inode {ino}, size {} to {}, mtime {:?} to {:?})",
                        inode.size,
                        meta.size(),
                        inode.mtime,
                        mtime
                    );
                    self.recorder.touched(ino, false);
                }
                Ok(())
            }
            Kind::Symlink => {
                let target = self.real.read_link(path)?;
                if target != inode.target {
                    inode.hash = Some(crate::blob::hash_bytes(&target));
                    inode.size = target.len() as u64;
                    inode.target = target;
                    self.store.namespace.put(wtxn, ino, &inode)?;
                    let op = Self::op(OpKind::Overwrite, self.area_path(wtxn, ino)?, inode.hash);
                    self.record(wtxn, inode.area, op)?;
                }
                Ok(())
            }
            // Local to this peer: nothing recorded to compare with.
            Kind::Special(_) => Ok(()),
        }
    }

    /// Entry `ino`, missing from the Real at `path` after a crash, as it
    /// was before (see the module doc): a recorded file unreal, a
    /// directory or symlink made again. `false` for what was never
    /// recorded (it goes, as when the Real lost nothing).
    fn restore_lost(&self, wtxn: &mut RwTxn, ino: Ino, path: &RealPath) -> Result<bool> {
        let mut inode = self.inode(wtxn, ino)?;
        match inode.kind {
            Kind::File if inode.hash.is_some() => {
                inode.unreal = true;
                self.store.namespace.put(wtxn, ino, &inode)?;
                let area_path = self.area_path(wtxn, ino)?;
                self.hold(wtxn, inode.area, &area_path, None)?;
            }
            Kind::Dir => {
                self.real.mkdir(path, inode.perm)?;
                // mkdir(2) drops the set-id and sticky bits.
                self.real.chmod(path, inode.perm)?;
            }
            Kind::Symlink => self.real.symlink(&inode.target, path)?,
            Kind::File | Kind::Special(_) => return Ok(false),
        }
        tracing::warn!("{path}: not in the Real after a crash; kept as it was recorded");
        Ok(true)
    }

    /// Whether the last unmount was clean (its mark in `DATA/clean`,
    /// which [`Tree::mark_clean`] left); the mark is removed, durably, so
    /// that a crash of this mount is seen at the next.
    fn take_clean_mark(&self) -> Result<bool> {
        let mark = self.clean_mark();
        match std::fs::remove_file(&mark) {
            Ok(()) => {
                if let Some(data) = mark.parent() {
                    std::fs::File::open(data)?.sync_all()?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Leaves the mark of a clean unmount (see [`Tree::take_clean_mark`]),
    /// once LMDB is flushed.
    pub(super) fn mark_clean(&self) -> Result<()> {
        crate::private::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.clean_mark())?;
        Ok(())
    }

    fn clean_mark(&self) -> std::path::PathBuf {
        self.real.location().with_file_name("clean")
    }

    /// Whether the real file `meta` describes is the cache's file of
    /// `inode`'s blob (one file under two names).
    fn shares_cache_file(&self, inode: &Inode, meta: &Metadata) -> bool {
        let Some(hash) = inode.hash else {
            return false;
        };
        meta.nlink() > 1
            && std::fs::metadata(self.cache.path(&hash))
                .is_ok_and(|c| c.ino() == meta.ino() && c.dev() == meta.dev())
    }

    /// Adds an entry found only in the Real.
    fn adopt(
        &self,
        wtxn: &mut RwTxn,
        dir: Ino,
        name: &[u8],
        kind: Kind,
        path: &RealPath,
        meta: &Metadata,
    ) -> Result<()> {
        let area = self.inode(wtxn, dir)?.area;
        let perm = (meta.permissions().mode() & 0o7777) as u16;
        let mut inode = Inode::new(dir, name, kind, perm, area);
        (inode.uid, inode.gid) = (meta.uid(), meta.gid());
        if kind == Kind::Symlink {
            inode.target = self.real.read_link(path)?;
            inode.size = inode.target.len() as u64;
            inode.hash = Some(crate::blob::hash_bytes(&inode.target));
        }
        let ino = self.insert(wtxn, dir, name, &inode)?;
        match kind {
            Kind::File => self.recorder.touched(ino, false),
            Kind::Symlink => {
                let op = Self::op(OpKind::Create, self.area_path(wtxn, ino)?, inode.hash);
                self.record(wtxn, area, op)?;
            }
            Kind::Dir => {
                let op = Self::op(OpKind::Mkdir, self.area_path(wtxn, ino)?, None);
                self.record(wtxn, area, op)?;
                self.reconcile_dir(wtxn, ino, path, false)?;
            }
            Kind::Special(_) => {}
        }
        Ok(())
    }

    /// Removes the records under and of `ino`, whose entry in its parent
    /// is gone already (unlinked first, so that its parent's directory
    /// count still knows it for a directory), recording a delete per recorded file and an rmdir per
    /// directory, deepest first.
    fn forget_tree(&self, wtxn: &mut RwTxn, ino: Ino) -> Result<()> {
        let inode = self.inode(wtxn, ino)?;
        if inode.kind == Kind::Dir {
            let mut children = Vec::new();
            self.store.namespace.children(wtxn, ino, 0, |_, e| {
                children.push((e.ino, e.name));
                Ok(true)
            })?;
            for (child, name) in children {
                self.store.namespace.unlink(wtxn, ino, &name)?;
                self.forget_tree(wtxn, child)?;
            }
        }
        let path = self.area_path(wtxn, ino)?;
        let kind = match inode.kind {
            Kind::Dir => Some(OpKind::Rmdir),
            _ if inode.hash.is_some() => Some(OpKind::Delete),
            _ => None,
        };
        if let Some(kind) = kind.filter(|_| inode.parent != ROOT) {
            self.record(wtxn, inode.area, Self::op(kind, path, inode.hash))?;
        }
        self.recorder.forget(ino);
        self.store.xattrs.remove_all(wtxn, ino)?;
        Ok(self.store.namespace.remove(wtxn, ino)?)
    }
}
