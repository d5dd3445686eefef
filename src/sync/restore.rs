//! `restore NAME HASH` (DESIGN.md `DIR/.ctl/ctl`): a kept version
//! ([`super::kept`]) becomes the current one, as a write like any other.
//! Its bytes come from the cache, fetched first from any peer that still
//! has them when this peer does not; the file that NAME showed is replaced
//! (its own version kept in turn), and the recorder records the restored
//! file as an overwrite and offers it at the next round.

use super::{Error, Result, Tree};
use crate::cache::BlobRef;
use crate::ids::BlobHash;
use crate::store::Ino;
use crate::store::namespace::{Inode, Kind};

impl Tree {
    /// Makes the kept version of entry `name` of directory `dir` with blob
    /// `hash` the current one. ENOENT when there is none, EHOSTUNREACH
    /// when its bytes are not here and no peer sent them within
    /// `net.timeout`, EEXIST when `name` is now a directory or a symlink.
    pub(crate) fn restore(&self, dir: Ino, name: &[u8], hash: BlobHash) -> Result<()> {
        let txn = self.store.read()?;
        let dir_inode = self.inode(&txn, dir)?;
        let area = dir_inode.area;
        if area == Ino::NONE || dir_inode.kind != Kind::Dir {
            return Err(Error::NotFound("not a directory of an area".into()));
        }
        let mut path = match dir == area {
            true => Vec::new(),
            false => self.area_path(&txn, dir)?,
        };
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let kept = self.kept_version(&txn, area, &path, hash)?;
        let blob = BlobRef {
            hash,
            size: kept.size,
            area,
            area_name: self.inode(&txn, area)?.name,
            path: path.clone(),
        };
        drop(txn);
        let n = self
            .stashed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = self.stash_dir().join(format!("{hash}-restore-{n}"));
        // Pinned while its bytes are fetched and copied.
        self.cache.opened(hash);
        let copied = (|| -> Result<()> {
            let txn = self.store.read()?;
            let whole = self.store.cache.verified(&txn, &hash)?;
            drop(txn);
            if !whole {
                self.cache.fetch_whole(&blob)?;
            }
            std::fs::copy(self.cache.path(&hash), &copy)?;
            Ok(())
        })();
        self.cache.closed(hash);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&copy);
            return Err(e);
        }
        let placed = self.place_restored(dir, name, &copy);
        if placed.is_err() {
            let _ = std::fs::remove_file(&copy);
        }
        let replaced = placed?;
        self.forget_entry(dir, name);
        if let Some((file, hash)) = replaced {
            self.stash_to_cache(&file, hash)?;
        }
        Ok(())
    }

    /// Puts the file `copy` at entry `name` of `dir` as a new inode (the
    /// kernel forgets the old entry, so no stale page shows), replacing
    /// the file there, and hands it to the recorder: the stashed bytes of
    /// the replaced file, kept.
    fn place_restored(
        &self,
        dir: Ino,
        name: &[u8],
        copy: &std::path::Path,
    ) -> Result<Option<(std::path::PathBuf, BlobHash)>> {
        let mut wtxn = self.store.write()?;
        let area = self.inode(&wtxn, dir)?.area;
        let mut inode = Inode::new(dir, name, Kind::File, 0o644, area);
        let mut replaced = None;
        if let Some(ino) = self.store.namespace.lookup(&wtxn, dir, name)? {
            let old = self.inode(&wtxn, ino)?;
            if old.kind != Kind::File {
                return Err(Error::Exists(
                    "the entry is a directory or a symlink now".into(),
                ));
            }
            (inode.perm, inode.uid, inode.gid, inode.hash) = (old.perm, old.uid, old.gid, old.hash);
            if !old.unreal {
                let real = self.real_path(&wtxn, ino)?;
                replaced = self.stash_replaced(&wtxn, ino, &real)?;
                if replaced.is_none() {
                    self.real
                        .remove_file(&real)
                        .or_else(super::remote::missing_ok)?;
                }
            }
            self.store.namespace.unlink(&mut wtxn, dir, name)?;
            self.drop_inode(&mut wtxn, ino, old)?;
        }
        let file = std::fs::File::options().write(true).open(copy)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            inode.perm.into(),
        ))?;
        inode.size = file.metadata()?.len();
        drop(file);
        self.real
            .rename_in(copy, &self.real_child(&wtxn, dir, name)?)?;
        let ino = self.insert(&mut wtxn, dir, name, &inode)?;
        // Dirty before anyone sees it: not served as the hash it replaced.
        self.recorder.touched(ino, inode.hash.is_some());
        wtxn.commit()?;
        Ok(replaced)
    }
}
