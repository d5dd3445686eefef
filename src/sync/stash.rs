//! The stash and the cache at a pull's end: files a peer's version
//! replaced wait in `DATA/stash` until the pull ends, then move to an
//! unreal file of the same blob or into the cache; blobs this peer holds
//! real at another path are copied into the cache for the unreal files a
//! pull brought. Called by [`super::remote`] and by the kept versions
//! ([`super::kept`]).

use std::collections::HashMap;
use std::path::PathBuf;

use super::remote::missing_ok;
use super::{Result, Tree};
use crate::ids::BlobHash;
use crate::store::Ino;

impl Tree {
    /// Copies into the cache the blobs of unreal files a pull brought that
    /// this peer holds real at another path of the same area (a file it
    /// renamed while a peer renamed it elsewhere shows at both paths):
    /// otherwise nobody would serve it at the new path, this peer
    /// included. One pass over the records of each area concerned.
    pub(super) fn cache_held_elsewhere(
        &self,
        brought: HashMap<BlobHash, Vec<(Ino, Ino)>>,
    ) -> Result<()> {
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
        let mut into = crate::private::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&to)?;
        std::io::copy(&mut from, &mut into)?;
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
        // Verified, and its file there whole: a record without its file
        // (a power loss) takes this one.
        let verified = |txn: &crate::store::RoTxn| -> Result<bool> {
            let Some(cached) = self.store.cache.get(txn, &hash)? else {
                return Ok(false);
            };
            Ok(cached.verified && self.cache.file_is_whole(&hash, cached.size))
        };
        let (have, outboard) = {
            let txn = self.store.read()?;
            (verified(&txn)?, self.store.outboards.get(&txn, &hash)?)
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
            self.store.outboards.put(&mut wtxn, &hash, &outboard)?;
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
                let mut into = crate::private::options()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&target)?;
                std::io::copy(&mut std::fs::File::open(file)?, &mut into)?;
                std::fs::remove_file(file)?;
            } else {
                // A file of the Real keeps its owner's mode until here.
                crate::private::file(file)?;
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
