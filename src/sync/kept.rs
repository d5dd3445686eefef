//! Kept versions (DESIGN.md "Sync"): every version of a file that a local
//! write, truncation, rename over it, delete, or a peer's record replaced
//! here stays restorable for `versions.keep` within `versions.max`, oldest
//! going first ([`crate::store::kept`] holds the records).
//!
//! The record is made where the change is recorded: [`Tree::record`] for
//! local ops, [`Tree::show`](super::remote) for a peer's. The bytes go to
//! the cache, where eviction leaves them while a kept version names them:
//! a real file deleted or renamed over is moved there (not unlinked), a
//! real file about to be written in place is copied there first (when it
//! fits in `versions.max`), and a peer's version replacing a real file
//! stashes it there as before. A version whose bytes this peer never had
//! is fetched from any peer that still has them when it is restored.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Error, Result, Tree};
use crate::ids::{BlobHash, PeerId};
use crate::store::config::Key;
use crate::store::kept::Kept;
use crate::store::namespace::{Kind, Timestamp};
use crate::store::versions::{Content, Version};
use crate::store::{Ino, RoTxn, RwTxn};

impl Tree {
    /// `versions.keep`: how long versions stay; `None` when not kept.
    pub(crate) fn versions_keep(&self, txn: &RoTxn) -> Result<Option<Duration>> {
        let text = self.store.config.get(txn, Key::VersionsKeep)?;
        let keep = crate::format::parse_duration(&text).unwrap_or(Duration::from_secs(30 * 86_400));
        Ok((!keep.is_zero()).then_some(keep))
    }

    /// `versions.max` in bytes (a percentage of the disk of DATA, or a
    /// size).
    pub(crate) fn versions_max(&self, txn: &RoTxn) -> Result<u64> {
        let text = self.store.config.get(txn, Key::VersionsMax)?;
        Ok(match text.strip_suffix('%') {
            Some(p) => {
                let st = self.real.statvfs()?;
                st.blocks() * st.fragment_size() / 100 * p.parse::<u64>().unwrap_or(5)
            }
            None => crate::format::parse_size(&text).unwrap_or(0),
        })
    }

    /// Keeps what `path` of `area` showed before this change (its winning
    /// version in the versions store) when it was a file whose blob the
    /// namespace no longer shows there. Call before the versions store
    /// learns of the change.
    pub(crate) fn keep_replaced(&self, wtxn: &mut RwTxn, area: Ino, path: &[u8]) -> Result<()> {
        let Some(record) = self.store.versions.get(wtxn, area, path)? else {
            return Ok(());
        };
        let Some(old) = record.siblings.first().cloned() else {
            return Ok(());
        };
        let Content::File(hash) = old.content else {
            return Ok(());
        };
        let now = match self.ino_at(wtxn, area, path)? {
            Some(ino) => self.inode(wtxn, ino)?.hash,
            None => None,
        };
        if now == Some(hash) {
            return Ok(());
        }
        self.keep(wtxn, area, path, &old)
    }

    /// Keeps `old`, a version of the file at `path` of `area` that stops
    /// being current now, and drops the oldest versions past
    /// `versions.keep` or over `versions.max`.
    pub(crate) fn keep(
        &self,
        wtxn: &mut RwTxn,
        area: Ino,
        path: &[u8],
        old: &Version<PeerId>,
    ) -> Result<()> {
        let Content::File(hash) = old.content else {
            return Ok(());
        };
        if self.versions_keep(wtxn)?.is_none() {
            // Not kept (any more): what was kept goes too.
            return self.expire_versions(wtxn);
        }
        let kept = Kept {
            path: path.to_vec(),
            hash,
            size: old.size,
            mtime: old.mtime,
            author: old.author,
            until: Timestamp::now(),
        };
        if self.store.kept.put(wtxn, area, &kept)? {
            let _ = self
                .kept_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    (t != u64::MAX).then(|| t.saturating_add(kept.size))
                });
        }
        self.expire_versions(wtxn)
    }

    /// Drops kept versions older than `versions.keep`, then the oldest
    /// while the kept versions' sizes add up to more than `versions.max`.
    /// Their blobs stay in the cache as ordinary (evictable) blobs.
    pub(crate) fn expire_versions(&self, wtxn: &mut RwTxn) -> Result<()> {
        let keep = self.versions_keep(wtxn)?.unwrap_or(Duration::ZERO);
        let max = self.versions_max(wtxn)?;
        let cutoff = std::time::SystemTime::now()
            .checked_sub(keep)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut total = match self.kept_bytes.load(Ordering::Relaxed) {
            u64::MAX => self.store.kept.total(wtxn)?,
            known => known,
        };
        while let Some((key, kept)) = self.store.kept.oldest(wtxn)? {
            let Some(kept) = kept else {
                self.store.kept.remove(wtxn, &key)?; // a stray index entry
                continue;
            };
            let until: std::time::SystemTime = kept.until.into();
            if until > cutoff && total <= max {
                break;
            }
            self.store.kept.remove(wtxn, &key)?;
            total = total.saturating_sub(kept.size);
        }
        self.kept_bytes.store(total, Ordering::Relaxed);
        Ok(())
    }

    /// [`Tree::expire_versions`] in a transaction of its own.
    /// The running count of kept bytes is taken again from the database
    /// (a transaction that failed after counting may have left it wrong).
    pub(crate) fn expire_kept(&self) -> Result<()> {
        self.kept_bytes.store(u64::MAX, Ordering::Relaxed);
        let mut wtxn = self.store.write()?;
        self.expire_versions(&mut wtxn)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Before real file `ino` is written in place or truncated: copies its
    /// recorded bytes into the cache, so the version the write replaces
    /// stays restorable. Nothing when versions are not kept, the file has
    /// unrecorded changes (its recorded bytes are gone already, or were
    /// copied when they started), the cache has the blob, or the file is
    /// larger than `versions.max`.
    ///
    /// Call with the writer counted ([`super::recorder::Recorder::opened_for_write`]),
    /// so that no record of the file starts meanwhile; `unrecorded` is what
    /// that count returned. A record under way then ends first: its bytes
    /// are the version this write replaces (read before it committed, the
    /// inode would show the version before, and they would be lost).
    pub(crate) fn save_before_write(&self, ino: Ino, unrecorded: bool) -> Result<()> {
        if unrecorded {
            drop(self.store.write()?);
        }
        let txn = self.store.read()?;
        let inode = self.inode(&txn, ino)?;
        let Some(hash) = inode.hash else {
            return Ok(());
        };
        if inode.kind != Kind::File
            || inode.unreal
            || self.versions_keep(&txn)?.is_none()
            || inode.size > self.versions_max(&txn)?
            || self.store.cache.verified(&txn, &hash)?
            // Other bytes than the recorded ones: not a version.
            || (unrecorded && !self.holds_recorded(&txn, ino, &inode)?)
        {
            return Ok(());
        }
        let path = self.real_path(&txn, ino)?;
        drop(txn);
        self.copy_to_cache(&path, hash, "kept")
    }

    /// Moves the recorded bytes of real file `ino` (about to be unlinked or
    /// renamed over, at `real` in the Real) into the stash instead of
    /// losing them: the stash file to hand to [`Tree::stash_to_cache`]
    /// after the commit, with its blob. `None` (and the caller removes the
    /// file) when versions are not kept or the file has unrecorded changes.
    pub(crate) fn stash_replaced(
        &self,
        txn: &RoTxn,
        ino: Ino,
        real: &crate::real::RealPath,
    ) -> Result<Option<(std::path::PathBuf, BlobHash)>> {
        let inode = self.inode(txn, ino)?;
        let Some(hash) = inode.hash else {
            return Ok(None);
        };
        if inode.kind != Kind::File
            || inode.unreal
            || self.recorder.is_pending(ino)
            || self.versions_keep(txn)?.is_none()
        {
            return Ok(None);
        }
        let n = self
            .stashed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let to = self.stash_dir().join(format!("{hash}-kept-{n}"));
        match self.real.rename_out(real, &to) {
            Ok(()) => Ok(Some((to, hash))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The kept version of `path` in `area` with blob `hash`, the newest
    /// when there are several; [`Error::NotFound`] when there is none.
    pub(crate) fn kept_version(
        &self,
        txn: &RoTxn,
        area: Ino,
        path: &[u8],
        hash: BlobHash,
    ) -> Result<Kept> {
        self.store
            .kept
            .of_path(txn, area, path)?
            .into_iter()
            .rev()
            .find(|k| k.hash == hash)
            .ok_or_else(|| Error::NotFound("no kept version with that hash".into()))
    }
}
