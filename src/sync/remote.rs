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

use super::local::{Left, put_local};
use super::merge::{Content, Version, add_sibling, conflict_path, losers, numbered_conflict_path};
use super::{Result, Tree, lock};
use crate::ids::{BlobHash, PeerId, Seq};
use crate::store::history::{Op, OpKind};
use crate::store::namespace::{Inode, Kind, Timestamp};
use crate::store::versions::{Holding, PathRecord};
use crate::store::{Ino, RoTxn, RwTxn};

/// The highest number a conflict copy's name takes (`-N`).
const MAX_COPY_NUMBER: u32 = 100;

/// What one pull has done so far; [`Tree::finish_pull`] ends it.
#[derive(Default)]
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
    forget: Vec<(Ino, Vec<u8>)>,
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
    let text = String::from_utf8_lossy(path);
    let copies = losers(siblings)
        .map(|l| (conflict_path(&text, l).into_bytes(), l.clone()))
        .collect();
    (winner, copies)
}

/// Splits `a/b/c` into (`a/b`, `c`); the parent of a top entry is empty.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl Tree {
    /// Merges one page of records from `peer` into `area` and shows the
    /// changes, in one transaction that also notes `last`, the peer's feed
    /// number of the page's last record, as applied.
    pub fn apply_remote(
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
            let holders_changed = record.merge_holders(&incoming.holders);
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
        wtxn.commit()?;
        for (parent, name) in pull.forget.drain(..) {
            self.forget_entry(parent, &name);
        }
        Ok(())
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
            let own = self
                .store
                .versions
                .get(wtxn, area, copy)?
                .and_then(|r| r.siblings.first().map(|w| w.content != Content::Deleted))
                .unwrap_or(false);
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

    /// Makes `loser`, a version of `path` that just lost a conflict, an
    /// ordinary file of its own at its conflict copy: shown, recorded as
    /// this peer's version there (so it is sent, outlives the conflict and
    /// moves with its directory) and held when its bytes are here. A copy
    /// another peer made already is only shown. When the name holds
    /// another file, the copy is numbered (`-2`, `-3`…).
    fn copy_loser(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        loser: &Version<PeerId>,
        pull: &mut Pull,
    ) -> Result<()> {
        let Some((copy, made)) = self.copy_name(wtxn, area, path, loser)? else {
            tracing::warn!(
                "no free name for a conflict copy of {}",
                String::from_utf8_lossy(path)
            );
            return Ok(());
        };
        tracing::debug!(
            "conflict copy {} made {made} for {loser:?}",
            String::from_utf8_lossy(&copy)
        );
        self.place(wtxn, area, &copy, Some(loser), pull)?;
        if made {
            return Ok(());
        }
        let Some(ino) = self.ino_at(wtxn, area, &copy)? else {
            // Not shown (a file is in the way of its directory).
            return Ok(());
        };
        let held = !self.inode(wtxn, ino)?.unreal;
        let left = Left::of(loser);
        put_local(&self.store, wtxn, self.peer_id, area, &copy, left, held)?;
        let op = Op {
            time: Timestamp::now(),
            kind: OpKind::Create,
            path: copy,
            hash: match &loser.content {
                Content::File(hash) => Some(*hash),
                _ => None,
            },
            base: None,
            new_path: None,
        };
        let seq = self.store.areas.next_seq(wtxn, area)?;
        Ok(self.store.history.append(wtxn, area, seq, &op)?)
    }

    /// The name of the conflict copy of `version`, a version of `path`:
    /// the first of `NAME.conflict-AUTHOR8-TIME.EXT`, `…-TIME-2.EXT`… that
    /// holds no other file (no live record, no entry of the namespace),
    /// and whether it holds this version already. `None` when the first
    /// [`MAX_COPY_NUMBER`] names are all taken.
    fn copy_name(
        &self,
        txn: &RoTxn,
        area: Ino,
        path: &[u8],
        version: &Version<PeerId>,
    ) -> Result<Option<(Vec<u8>, bool)>> {
        let text = String::from_utf8_lossy(path);
        for n in 1..=MAX_COPY_NUMBER {
            let copy = numbered_conflict_path(&text, version, n).into_bytes();
            let winner = self
                .store
                .versions
                .get(txn, area, &copy)?
                .and_then(|r| r.siblings.first().map(|w| w.content.clone()))
                .filter(|c| *c != Content::Deleted);
            match winner {
                Some(c) if c == version.content => return Ok(Some((copy, true))),
                Some(_) => continue,
                None if self.ino_at(txn, area, &copy)?.is_some() => continue,
                None => return Ok(Some((copy, false))),
            }
        }
        Ok(None)
    }

    /// Makes `path` show `version` (nothing when `None`).
    fn place(
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
                let path = real()?;
                self.real.mkdir(&path, inode.perm).or_else(exists_ok)?;
                self.real.chmod(&path, inode.perm)?;
            }
            Content::Symlink(target) => {
                inode.kind = Kind::Symlink;
                inode.perm = 0o777;
                inode.size = target.len() as u64;
                inode.target = target.clone();
                inode.hash = Some(crate::blob::hash_bytes(target));
                self.real.symlink(target, &real()?)?;
            }
            Content::File(hash) => {
                inode.size = version.size;
                inode.hash = Some(*hash);
                let stashed = pull.stash.get_mut(hash).and_then(|s| s.pop());
                match stashed {
                    Some(from) => {
                        let path = real()?;
                        self.real.rename_in(&from, &path)?;
                        self.real.chmod(&path, inode.perm)?;
                    }
                    None => inode.unreal = true,
                }
            }
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
                self.real.remove_dir(&real).or_else(missing_ok)?;
            }
            Kind::Symlink => self.real.remove_file(&real).or_else(missing_ok)?,
            Kind::File if inode.unreal => {
                // Its blob may be in the cache: a base for an edit.
                if let Some(hash) = inode.hash {
                    pull.replaced.push((area, path.to_vec(), hash));
                }
            }
            Kind::File => {
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

    /// Whether file `ino` has changes not recorded yet.
    /// A file waiting to be recorded whose bytes are still the recorded
    /// ones (touched by a reconciliation, or written with the same bytes)
    /// is not: a peer's version replaces it like any recorded file. Its
    /// bytes are hashed to tell, when their size has not changed.
    fn dirty(&self, wtxn: &RwTxn, ino: Ino, inode: &Inode) -> Result<bool> {
        if inode.kind != Kind::File || inode.unreal {
            return Ok(false);
        }
        if inode.hash.is_none() || self.recorder.is_written(ino) {
            return Ok(true);
        }
        if !self.recorder.is_pending(ino) {
            return Ok(false);
        }
        let real = self.real_path(wtxn, ino)?;
        let file = match self.real.open_file(&real, crate::real::Open::read()) {
            Ok(file) => file,
            Err(_) => return Ok(true),
        };
        if file.metadata()?.len() != inode.size {
            return Ok(true);
        }
        let (hash, _) = crate::blob::outboard_file(&file)?;
        Ok(inode.hash != Some(hash))
    }

    /// Moves a local file with unrecorded changes out of a peer's way, to
    /// `NAME.conflict-THISPEER8-TIME.EXT`, where it is recorded as new.
    /// The kernel forgets both names: a stale entry at the old one would
    /// send the next write of `path` into the copy.
    fn keep_local(
        &self,
        wtxn: &mut RwTxn,
        ino: Ino,
        mut inode: Inode,
        path: &[u8],
        pull: &mut Pull,
    ) -> Result<()> {
        let mine = Version {
            vv: Default::default(),
            content: Content::Deleted,
            mtime: Timestamp::now().secs,
            size: 0,
            perm: 0,
            author: self.peer_id,
        };
        let area = inode.area;
        let Some((copy, _)) = self.copy_name(wtxn, area, path, &mine)? else {
            return Err(super::Error::Exists(format!(
                "no free name for the conflict copy of {}",
                String::from_utf8_lossy(path)
            )));
        };
        tracing::debug!(
            "moved inode {ino} aside, changes not recorded: {} to {}",
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(&copy)
        );
        let (_, name) = split(&copy);
        let parent = inode.parent;
        let from = self.real_path(wtxn, ino)?;
        let to = self.real_child(wtxn, parent, name)?;
        self.real.rename(&from, &to, true)?;
        self.store.namespace.unlink(wtxn, parent, &inode.name)?;
        self.store.namespace.link(wtxn, parent, name, ino)?;
        pull.forget.push((parent, inode.name.clone()));
        pull.forget.push((parent, name.to_vec()));
        inode.name = name.to_vec();
        inode.hash = None;
        self.store.namespace.put(wtxn, ino, &inode)?;
        self.recorder.touched(ino, false);
        Ok(())
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
                    self.real.mkdir(&path, inode.perm).or_else(exists_ok)?;
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
                        self.real.rename_in(&file, &path)?;
                        self.real.chmod(&path, inode.perm)?;
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

    /// Copies into the cache the blobs of unreal files a pull brought that
    /// this peer holds real at another path of the same area (a file it
    /// renamed while a peer renamed it elsewhere shows at both paths):
    /// otherwise nobody would serve it at the new path, this peer
    /// included. One pass over the records of each area concerned.
    fn cache_held_elsewhere(&self, brought: HashMap<BlobHash, Vec<(Ino, Ino)>>) -> Result<()> {
        let mut wanted: HashMap<Ino, std::collections::HashSet<BlobHash>> = HashMap::new();
        {
            let txn = self.store.read()?;
            for (hash, files) in brought {
                if self.store.cache.verified(&txn, &hash)? {
                    continue;
                }
                for (area, _) in files {
                    wanted.entry(area).or_default().insert(hash);
                }
            }
        }
        for (area, hashes) in wanted {
            // Every path this peer is noted holding one of them at: a
            // note may be older than the file there (a path it held the
            // blob at until this pull replaced it).
            let mut found: HashMap<BlobHash, Vec<Vec<u8>>> = HashMap::new();
            {
                let txn = self.store.read()?;
                self.store.versions.for_each(&txn, area, |path, record| {
                    let mine = record.holders.get(&self.peer_id).and_then(|h| h.hash);
                    if let Some(hash) = mine.filter(|h| hashes.contains(h)) {
                        found.entry(hash).or_default().push(path.to_vec());
                    }
                    Ok(())
                })?;
            }
            for (hash, paths) in found {
                for path in paths {
                    let real = {
                        let txn = self.store.read()?;
                        let Some(ino) = self.ino_at(&txn, area, &path)? else {
                            continue;
                        };
                        let inode = self.inode(&txn, ino)?;
                        if inode.unreal || inode.hash != Some(hash) || self.recorder.is_pending(ino)
                        {
                            continue;
                        }
                        self.real_path(&txn, ino)?
                    };
                    self.copy_to_cache(&real, hash, "held")?;
                    let txn = self.store.read()?;
                    if self.store.cache.verified(&txn, &hash)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies real file `real`, recorded as blob `hash`, into the cache
    /// (through a stash file named for `why`), verified against the hash
    /// there: a copy of a file changed meanwhile is dropped, the real file
    /// stays.
    pub(crate) fn copy_to_cache(
        &self,
        real: &crate::real::RealPath,
        hash: BlobHash,
        why: &str,
    ) -> Result<()> {
        let n = self
            .stashed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let to = self.stash_dir().join(format!("{hash}-{why}-{n}"));
        let mut from = self.real.open_file(real, crate::real::Open::read())?;
        std::io::copy(&mut from, &mut std::fs::File::create(&to)?)?;
        self.stash_to_cache(&to, hash)?;
        Ok(std::fs::remove_file(&to).or_else(missing_ok)?)
    }

    /// Moves a stashed file that holds blob `hash` into the cache, as a
    /// whole verified blob; a file that does not match stays in the stash
    /// (logged), since nothing else may know its bytes. Returns whether it
    /// moved.
    ///
    /// The file takes the blob's cache path unless a handle has the blob
    /// open or a fetch fills it: then its bytes are copied into the cache
    /// file in place, so the handle's descriptor sees them.
    pub(crate) fn stash_to_cache(&self, file: &std::path::Path, hash: BlobHash) -> Result<()> {
        let verified = |txn: &crate::store::RoTxn| -> Result<bool> {
            Ok(self.store.cache.verified(txn, &hash)?)
        };
        let (have, outboard) = {
            let txn = self.store.read()?;
            (verified(&txn)?, self.store.cache.outboard(&txn, &hash)?)
        };
        if have {
            return Ok(std::fs::remove_file(file).or_else(missing_ok)?);
        }
        let opened = std::fs::File::open(file)?;
        let size = opened.metadata()?.len();
        // With its outboard known, the file is trusted as recorded: reads
        // from the cache verify each piece anyway. Otherwise it is hashed.
        if size <= crate::blob::PIECE || outboard.is_none() {
            let (actual, outboard) = crate::blob::outboard_file(&opened)?;
            if actual != hash {
                tracing::warn!(
                    "{} does not hold the blob it was recorded with: left in the stash",
                    file.display()
                );
                return Ok(());
            }
            let mut wtxn = self.store.write()?;
            self.store.cache.put_outboard(&mut wtxn, &hash, &outboard)?;
            wtxn.commit()?;
        }
        let target = self.cache.path(&hash);
        // Lock order: the open counts, the chunk waiters, then LMDB.
        let grew = self.cache.with_open(|open| -> Result<bool> {
            let busy = crate::cache::count(open, &hash) > 0 || self.cache.chunks.fetching(&hash);
            let mut wtxn = self.store.write()?;
            if verified(&wtxn)? {
                drop(wtxn);
                std::fs::remove_file(file).or_else(missing_ok)?;
                return Ok(false);
            }
            if busy {
                // A handle reads (or a fetch fills) a partial copy: its file
                // stays and gets the bytes in place, as a fetch would.
                let mut into = std::fs::File::options()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&target)?;
                std::io::copy(&mut std::fs::File::open(file)?, &mut into)?;
                std::fs::remove_file(file)?;
            } else {
                std::fs::rename(file, &target)?;
            }
            let cached = crate::store::cache::Cached::whole(size);
            self.store.cache.put(&mut wtxn, &hash, &cached)?;
            wtxn.commit()?;
            Ok(true)
        })?;
        if grew && let Err(e) = self.cache.cache_grew(size) {
            tracing::warn!("keeping the cache within its bound: {e}");
        }
        Ok(())
    }

    /// `DATA/stash`, where files removed by a peer wait for the pull to end.
    pub(crate) fn stash_dir(&self) -> PathBuf {
        self.real.location().with_file_name("stash")
    }
}

fn exists_ok(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        Ok(())
    } else {
        Err(e)
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
