//! Remote versions into the namespace (DESIGN.md "Sync").
//!
//! A pull brings records of paths from a peer, page by page. Each record
//! is merged into what this peer knows ([`super::merge`]); when the
//! siblings of a path change, what the path shows changes with them:
//! the winner at the path, each loser at its conflict copy. New files
//! appear unreal (their bytes stay with their holders). A real file a peer
//! removed goes to `DATA/stash` until the pull ends, so that a file the
//! peer only renamed moves into its new place instead of being fetched
//! again: renames travel as renames, in whatever order their two halves
//! come. What the pull did not claim becomes a verified blob of the cache,
//! never deleted outright: the peer that removed the file may have had no
//! copy of its own, and a rename's other half may come in a later round.

use std::collections::HashMap;
use std::path::PathBuf;

use super::merge::{Content, Version, add_sibling, conflict_path, losers};
use super::undo::{Journal, Step};
use super::{Result, Tree, lock};
use crate::ids::{BlobHash, PeerId, Seq};
use crate::real::RealPath;
use crate::store::namespace::{Inode, Kind, Timestamp};
use crate::store::versions::{Holding, PathRecord};
use crate::store::{Ino, RwTxn};

/// What one pull has done so far; [`Tree::finish_pull`] ends it.
#[derive(Default, Clone)]
pub struct Pull {
    /// Real files removed by the peer, by blob, waiting in `DATA/stash`.
    stash: HashMap<BlobHash, Vec<PathBuf>>,
    /// Where those files, and the unreal files the peer replaced, were:
    /// (area, path, blob), for delta edits.
    replaced: Vec<(Ino, Vec<u8>, BlobHash)>,
    /// Unreal files this pull created: (parent, inode), to realize those
    /// under a real mode.
    brought: Vec<(Ino, Ino)>,
    /// Unreal files this pull created, by blob: (area, inode).
    unreal: HashMap<BlobHash, Vec<(Ino, Ino)>>,
    /// Directories removed by the peer that still had entries.
    rmdirs: Vec<(Ino, Vec<u8>)>,
    /// Records whose versions changed here.
    pub applied: u64,
    /// Conflicts seen (paths left with more than one sibling).
    pub conflicts: u64,
    /// Entries the kernel must forget: (parent, name).
    pub(super) forget: Vec<(Ino, Vec<u8>)>,
    /// What the page being applied changed in the Real.
    pub(super) journal: Journal,
    /// Real files the page being applied took out of the Real, whose
    /// opens wait until its transaction ends (see [`super::fences`]).
    fenced: Vec<Ino>,
}

/// What a path shows: its winner (none when deleted) and its conflict
/// copies (path, version).
type Shown = (Option<Version<PeerId>>, Vec<(Vec<u8>, Version<PeerId>)>);

/// What a path shows, from its siblings.
pub(crate) fn shown(path: &[u8], siblings: &[Version<PeerId>]) -> Shown {
    let winner = siblings
        .first()
        .filter(|w| w.content != Content::Deleted)
        .cloned();
    let copies = losers(siblings)
        .map(|l| (conflict_path(path, l), l.clone()))
        .collect();
    (winner, copies)
}

/// Splits `a/b/c` into (`a/b`, `c`); the parent of a top entry is empty.
pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl Tree {
    /// Merges one page of records from `peer` into `area` and shows the
    /// changes, in one transaction that also notes `last`, the peer's feed
    /// number of the page's last record, as applied. All or nothing: when
    /// a record fails, what the page changed in the Real is undone, the
    /// transaction dropped and `pull` left as it was before the page.
    pub fn apply_remote(
        &self,
        area: Ino,
        peer: PeerId,
        last: Seq,
        records: Vec<(Vec<u8>, PathRecord)>,
        pull: &mut Pull,
    ) -> Result<()> {
        let before = pull.clone();
        let applied = self.apply_page(area, peer, last, records, pull);
        if applied.is_err() {
            pull.journal.undo(&self.real);
        }
        // Committed or dropped: the files' opens find what is there now.
        self.fences.release(pull.fenced.drain(..));
        match applied {
            Ok(()) => {
                pull.journal.clear();
                for (parent, name) in pull.forget.drain(..) {
                    self.forget_entry(parent, &name);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!("a page from {peer} failed, undone: {e}");
                *pull = before;
                Err(e)
            }
        }
    }

    /// [`Tree::apply_remote`] but the undo.
    fn apply_page(
        &self,
        area: Ino,
        peer: PeerId,
        last: Seq,
        records: Vec<(Vec<u8>, PathRecord)>,
        pull: &mut Pull,
    ) -> Result<()> {
        let mut wtxn = self.store.write()?;
        for (path, incoming) in records {
            let mut record = self
                .store
                .versions
                .get(&wtxn, area, &path)?
                .unwrap_or_default();
            let before = record.siblings.clone();
            let mut changed = false;
            for version in incoming.siblings {
                changed |= add_sibling(&mut record.siblings, version);
            }
            let holders_changed = record.merge_holders(&incoming.holders, self.peer_id);
            if !changed && !holders_changed {
                continue;
            }
            let after = record.siblings.clone();
            let seq = self.store.areas.next_seq(&mut wtxn, area)?;
            self.store
                .versions
                .put(&mut wtxn, area, &path, record, seq)?;
            if changed {
                tracing::debug!(
                    "{}: from {peer}: {} {before:?} -> {after:?}",
                    self.peer_id,
                    String::from_utf8_lossy(&path)
                );
                pull.applied += 1;
                if losers(&after).next().is_some() {
                    pull.conflicts += 1;
                }
                self.show(&mut wtxn, area, &path, &before, &after, pull)?;
            }
        }
        if let Some(mut record) = self.store.areas.get(&wtxn, area)? {
            record.received.insert(peer, last);
            self.store.areas.put(&mut wtxn, area, &record)?;
        }
        Ok(wtxn.commit()?)
    }

    /// Changes the namespace from what `before` showed at `path` to what
    /// `after` shows.
    fn show(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        before: &[Version<PeerId>],
        after: &[Version<PeerId>],
        pull: &mut Pull,
    ) -> Result<()> {
        let (old_winner, old_copies) = shown(path, before);
        let (new_winner, new_copies) = shown(path, after);
        for (copy, _) in &old_copies {
            let own = self.shown_to_peers(wtxn, area, copy)?;
            if !own && !new_copies.iter().any(|(c, _)| c == copy) {
                self.place(wtxn, area, copy, None, pull)?;
            }
        }
        for (_, version) in &new_copies {
            if !old_copies.iter().any(|(_, v)| v == version) {
                self.copy_loser(wtxn, area, path, version, pull)?;
            }
        }
        let same = match (&old_winner, &new_winner) {
            (Some(a), Some(b)) => a.content == b.content,
            (None, None) => true,
            _ => false,
        };
        if !same
            && let Some(old) = &old_winner
            && !new_copies.iter().any(|(_, v)| v == old)
        {
            self.keep(wtxn, area, path, old)?;
        }
        if !same || self.ino_at(wtxn, area, path)?.is_none() {
            self.place(wtxn, area, path, new_winner.as_ref(), pull)?;
        }
        Ok(())
    }

    /// Makes `path` show `version` (nothing when `None`).
    pub(super) fn place(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        version: Option<&Version<PeerId>>,
        pull: &mut Pull,
    ) -> Result<()> {
        let existing = self.ino_at(wtxn, area, path)?;
        let content = version.map_or(&Content::Deleted, |v| &v.content);
        if let Some(ino) = existing {
            let inode = self.inode(wtxn, ino)?;
            let keep = match content {
                Content::Dir => inode.kind == Kind::Dir,
                Content::File(hash) => inode.kind == Kind::File && inode.hash == Some(*hash),
                Content::Symlink(target) => inode.kind == Kind::Symlink && &inode.target == target,
                Content::Deleted => false,
            };
            // An edit beats a concurrent delete: a file with changes not
            // yet recorded stays where it is, and its record, made soon,
            // dominates the deletion.
            if keep || (version.is_none() && self.dirty(wtxn, ino, &inode)?) {
                return Ok(());
            }
            if !self.remove_shown(wtxn, area, path, ino, inode, pull)? {
                // A directory that still has entries stays.
                return Ok(());
            }
        }
        let Some(version) = version else {
            return Ok(());
        };
        let (parent_path, name) = split(path);
        let Some(parent) = self.make_dirs(wtxn, area, parent_path, pull)? else {
            tracing::warn!(
                "{}: a file is in the way of its directory; not shown",
                String::from_utf8_lossy(path)
            );
            return Ok(());
        };
        let dir = self.inode(wtxn, parent)?;
        // The author's permission bits (a version from before they were
        // carried has 0: the defaults).
        let perm = match version.perm & 0o7777 {
            0 => 0o644,
            p => p,
        };
        let mut inode = Inode::new(parent, name, Kind::File, perm, area);
        (inode.uid, inode.gid) = (dir.uid, dir.gid);
        inode.mtime = Timestamp {
            secs: version.mtime,
            nanos: 0,
        };
        // Unreal files have nothing in the Real: the path is made only when
        // something goes there.
        let real = || self.real_child(wtxn, parent, name);
        match &version.content {
            Content::Deleted => return Ok(()),
            Content::Dir => {
                inode.kind = Kind::Dir;
                inode.perm = match version.perm & 0o7777 {
                    0 => 0o755,
                    p => p,
                };
                self.made_dir(&real()?, Some(inode.perm), pull)?;
            }
            Content::Symlink(target) => {
                inode.kind = Kind::Symlink;
                inode.perm = 0o777;
                inode.size = target.len() as u64;
                inode.target = target.clone();
                inode.hash = Some(crate::blob::hash_bytes(target));
                let path = real()?;
                self.real.symlink(target, &path)?;
                pull.journal.push(Step::Linked(path));
            }
            Content::File(hash) => {
                inode.size = version.size;
                inode.hash = Some(*hash);
                let stashed = pull.stash.get_mut(hash).and_then(|s| s.pop());
                match stashed {
                    Some(from) => self.claim(&from, &real()?, &inode, &mut pull.journal)?,
                    None => inode.unreal = true,
                }
            }
        }
        if !inode.unreal {
            self.own_real(&real()?, &inode)?;
        }
        let ino = self.insert(wtxn, parent, name, &inode)?;
        pull.forget.push((parent, name.to_vec()));
        if let Content::File(hash) = &version.content {
            if inode.unreal {
                pull.unreal.entry(*hash).or_default().push((area, ino));
                pull.brought.push((parent, ino));
            } else {
                self.hold(wtxn, area, path, Some(*hash))?;
            }
        }
        Ok(())
    }

    /// Moves stashed file `from` to `to` in the Real, where it shows
    /// `inode`, with the inode's permission bits and mtime: the Real then
    /// matches the namespace, and a reconciliation after a crash takes it
    /// for unchanged.
    fn claim(
        &self,
        from: &std::path::Path,
        to: &RealPath,
        inode: &Inode,
        journal: &mut Journal,
    ) -> Result<()> {
        self.real.rename_in(from, to)?;
        journal.push(Step::Claimed {
            stash: from.to_path_buf(),
            real: to.clone(),
        });
        self.real.chmod(to, inode.perm)?;
        let mtime = std::time::SystemTime::from(inode.mtime);
        Ok(self.real.set_times(to, None, Some(Some(mtime)))?)
    }

    /// Gives `path` in the Real the owner and group of `inode` when realize
    /// runs as root (a peer's entry belongs here to the owner of its
    /// directory; otherwise the Real's files are realize's user's).
    pub(super) fn own_real(&self, path: &RealPath, inode: &Inode) -> Result<()> {
        if nix::unistd::geteuid().is_root() {
            self.real.chown(path, Some(inode.uid), Some(inode.gid))?;
        }
        Ok(())
    }

    /// Makes directory `path` in the Real with `perm` (0755 when `None`),
    /// noted in the page's journal. A directory already there (the Real
    /// ahead of the namespace) is used, its bits set to `perm` when given;
    /// anything else there (a file, a symlink) is never taken for a
    /// directory: ENOTDIR.
    fn made_dir(&self, path: &RealPath, perm: Option<u16>, pull: &mut Pull) -> Result<()> {
        match self.real.mkdir(path, perm.unwrap_or(0o755)) {
            Ok(()) => {
                pull.journal.push(Step::Made(path.clone()));
                if let Some(perm) = perm {
                    // mkdir(2) drops the set-id and sticky bits.
                    self.real.chmod(path, perm)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = self.real.metadata(path)?;
                if !meta.is_dir() {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR).into());
                }
                let old =
                    (std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777) as u16;
                if let Some(perm) = perm.filter(|p| *p != old) {
                    self.real.chmod(path, perm)?;
                    pull.journal.push(Step::Chmod(path.clone(), old));
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Notes in `path`'s record that this peer holds `hash` there.
    pub(crate) fn hold(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        hash: Option<BlobHash>,
    ) -> Result<()> {
        let seq = self.store.areas.next_seq(wtxn, area)?;
        let mut record = self
            .store
            .versions
            .get(wtxn, area, path)?
            .unwrap_or_default();
        record
            .holders
            .insert(self.peer_id, Holding { clock: seq.0, hash });
        Ok(self.store.versions.put(wtxn, area, path, record, seq)?)
    }

    /// Removes the entry `ino` at `path` because a peer replaced or removed
    /// it. A real file goes to the stash; one with changes not yet recorded
    /// stays, renamed to a conflict copy of this peer. Returns false when a
    /// directory with entries stays.
    fn remove_shown(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        ino: Ino,
        inode: Inode,
        pull: &mut Pull,
    ) -> Result<bool> {
        let real = self.real_path(wtxn, ino)?;
        match inode.kind {
            Kind::Dir => {
                if !self.store.namespace.is_empty(wtxn, ino)? {
                    pull.rmdirs.push((area, path.to_vec()));
                    return Ok(false);
                }
                if gone(self.real.remove_dir(&real))? {
                    pull.journal.push(Step::RemovedDir(real, inode.perm));
                }
            }
            Kind::Symlink => {
                if gone(self.real.remove_file(&real))? {
                    pull.journal
                        .push(Step::RemovedLink(real, inode.target.clone()));
                }
            }
            // Never shown to peers: moved out of their way, still local.
            Kind::Special(_) => {
                return self.keep_local(wtxn, ino, inode, path, pull).map(|_| true);
            }
            Kind::File if inode.unreal => {
                // Its blob may be in the cache: a base for an edit.
                if let Some(hash) = inode.hash {
                    pull.replaced.push((area, path.to_vec(), hash));
                }
            }
            Kind::File => {
                // From here, an open either counted its handle and writer
                // (and the file is dirty) or waits for the end of the
                // transaction.
                self.fences.hold(ino, || true);
                pull.fenced.push(ino);
                let dirty = self.dirty(wtxn, ino, &inode)?;
                let recorded = inode.hash.filter(|_| !dirty);
                let Some(hash) = recorded else {
                    return self.keep_local(wtxn, ino, inode, path, pull).map(|_| true);
                };
                let hex = crate::format::format_hash(Some(&hash));
                // Numbered across pulls: two pulls (from two peers) may
                // stash the same blob at once.
                let n = self
                    .stashed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let to = self.stash_dir().join(format!("{hex}-{n}"));
                match self.real.rename_out(&real, &to) {
                    Ok(()) => {
                        tracing::debug!("stashed inode {ino} from {real}");
                        pull.journal.push(Step::Stashed {
                            real,
                            stash: to.clone(),
                        });
                        pull.stash.entry(hash).or_default().push(to);
                    }
                    // Gone already (the Real changed under LMDB): nothing
                    // to stash, and nothing for the pull to claim.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::warn!("stashing inode {ino}: {real} was not in the Real");
                    }
                    Err(e) => return Err(e.into()),
                }
                pull.replaced.push((area, path.to_vec(), hash));
            }
        }
        let parent = inode.parent;
        self.store.namespace.unlink(wtxn, parent, &inode.name)?;
        pull.forget.push((parent, inode.name.clone()));
        self.drop_inode(wtxn, ino, inode)?;
        // Its directory goes too if a peer removed it and it is empty now.
        if let (dir @ [_, ..], _) = split(path) {
            pull.rmdirs.push((area, dir.to_vec()));
        }
        Ok(true)
    }

    /// The directory at `path` in `area`, made with its parents where
    /// missing; `None` when a file is in the way.
    fn make_dirs(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        pull: &mut Pull,
    ) -> Result<Option<Ino>> {
        let mut at = area;
        if path.is_empty() {
            return Ok(Some(at));
        }
        for name in path.split(|&b| b == b'/') {
            match self.store.namespace.lookup(wtxn, at, name)? {
                Some(ino) => {
                    if self.inode(wtxn, ino)?.kind != Kind::Dir {
                        return Ok(None);
                    }
                    at = ino;
                }
                None => {
                    let dir = self.inode(wtxn, at)?;
                    let mut inode = Inode::new(at, name, Kind::Dir, 0o755, area);
                    (inode.uid, inode.gid) = (dir.uid, dir.gid);
                    let path = self.real_child(wtxn, at, name)?;
                    self.made_dir(&path, None, pull)?;
                    self.own_real(&path, &inode)?;
                    let ino = self.insert(wtxn, at, name, &inode)?;
                    pull.forget.push((at, name.to_vec()));
                    at = ino;
                }
            }
        }
        Ok(Some(at))
    }

    /// Removes the directories of `pull.rmdirs` that are empty and
    /// deleted, deepest first; their parents may join `pull.rmdirs`.
    fn remove_dirs(&self, wtxn: &mut RwTxn, pull: &mut Pull) -> Result<()> {
        let mut rmdirs = std::mem::take(&mut pull.rmdirs);
        rmdirs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.cmp(b)));
        rmdirs.dedup();
        for (area, path) in rmdirs {
            let gone = self
                .store
                .versions
                .get(wtxn, area, &path)?
                .and_then(|r| r.siblings.first().map(|w| w.content == Content::Deleted))
                .unwrap_or(false);
            if let (true, Some(ino)) = (gone, self.ino_at(wtxn, area, &path)?)
                && self.store.namespace.is_empty(wtxn, ino)?
            {
                let inode = self.inode(wtxn, ino)?;
                self.remove_shown(wtxn, area, &path, ino, inode, pull)?;
            }
        }
        Ok(())
    }

    /// Ends a pull, also one cut short: stashed files whose blob an unreal
    /// file of this pull shows move there (the two halves of a rename came
    /// in that order); the rest of the stash goes to the cache; directories
    /// the peer removed go once empty.
    pub fn finish_pull(&self, mut pull: Pull) -> Result<()> {
        let mut unclaimed = Vec::new();
        let mut wtxn = self.store.write()?;
        for (hash, files) in std::mem::take(&mut pull.stash) {
            let mut targets = pull.unreal.remove(&hash).unwrap_or_default();
            for file in files {
                let target = loop {
                    match targets.pop() {
                        Some((area, ino)) => match self.store.namespace.get(&wtxn, ino)? {
                            Some(inode) if inode.unreal && inode.parent != Ino::NONE => {
                                break Some((area, ino, inode));
                            }
                            _ => continue,
                        },
                        None => break None,
                    }
                };
                match target {
                    Some((area, ino, mut inode)) => {
                        let path = self.real_path(&wtxn, ino)?;
                        // Not undone: the pull's end is not a page.
                        self.claim(&file, &path, &inode, &mut Journal::default())?;
                        inode.unreal = false;
                        self.store.namespace.put(&mut wtxn, ino, &inode)?;
                        let path = self.area_path(&wtxn, ino)?;
                        self.hold(&mut wtxn, area, &path, Some(hash))?;
                    }
                    None => unclaimed.push((file, hash)),
                }
            }
            // The blob's other unreal files: cached below, from the file
            // that claimed it.
            if !targets.is_empty() {
                pull.unreal.insert(hash, targets);
            }
        }
        pull.rmdirs
            .extend(std::mem::take(&mut *lock(&self.emptied)));
        // Removing a directory may empty its parent: until none is left.
        while !pull.rmdirs.is_empty() {
            self.remove_dirs(&mut wtxn, &mut pull)?;
        }
        wtxn.commit()?;
        for (parent, name) in pull.forget.drain(..) {
            self.forget_entry(parent, &name);
        }
        // After the commit: the cache takes them in transactions of its own.
        for (file, hash) in unclaimed {
            self.stash_to_cache(&file, hash)?;
        }
        self.cache_held_elsewhere(std::mem::take(&mut pull.unreal))?;
        // An unreal file where another blob was (stashed, or cached here,
        // whole or in part) is likely an edit of it: its fetches start
        // from that blob.
        let txn = self.store.read()?;
        let mut edits = Vec::new();
        for (area, path, old) in std::mem::take(&mut pull.replaced) {
            if self.store.cache.get(&txn, &old)?.is_some()
                && let Some(ino) = self.ino_at(&txn, area, &path)?
                && let Some(inode) = self.store.namespace.get(&txn, ino)?
                && let (true, Some(new)) = (inode.unreal, inode.hash)
            {
                edits.push((new, old));
            }
        }
        // One mode lookup per directory, not per file.
        let mut modes = HashMap::new();
        let mut real = Vec::new();
        for (parent, ino) in std::mem::take(&mut pull.brought) {
            let mode = match modes.get(&parent) {
                Some(mode) => *mode,
                None => {
                    let mode = self.effective_mode(&txn, parent).map(|m| m.0).ok();
                    modes.insert(parent, mode);
                    mode
                }
            };
            if mode == Some(crate::store::namespace::Mode::Real) {
                real.push(ino);
            }
        }
        drop(txn);
        for (new, old) in edits {
            self.cache.note_base(new, old)?;
        }
        self.life_after_pull(real);
        Ok(())
    }
}

/// Whether a removal removed something: `false` when it was gone
/// already.
fn gone(removed: std::io::Result<()>) -> std::io::Result<bool> {
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `Ok` for an error saying the file was not there (already gone).
pub(crate) fn missing_ok(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}
