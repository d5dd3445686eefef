//! The bound of the blob cache (DESIGN.md "Modes and the life of a
//! file"): `cache.max` (a size, or a percentage of the disk holding DATA)
//! and `cache.min_free`. When a stored chunk takes the cache over its
//! bound, the least recently read blobs go first, down to nine tenths of
//! it (so that a read storm does not scan the cache per chunk); the blobs
//! of open files, of fetches under way and of kept versions
//! ([`crate::store::kept`]) are never evicted.

use std::sync::atomic::Ordering;

use super::count;
use super::{Cache, Result};
use crate::ids::BlobHash;
use crate::store::cache::Cached;

/// A blob of the cache and its record.
type CachedBlob = (BlobHash, Cached);

/// What `/.ctl/cache` shows.
pub struct CacheReport {
    /// Bytes in the cache.
    pub used: u64,
    /// The bound in force, in bytes.
    pub max: u64,
    /// Blobs with bytes in the cache.
    pub blobs: u64,
    /// Blobs that may not be evicted now.
    pub pinned: u64,
    /// Blobs evicted since the mount.
    pub evicted: u64,
}

impl Cache {
    /// `cache.max` in bytes, `cache.min_free`, and the bytes free on the
    /// disk of DATA (one `statvfs` of the cache directory).
    pub(crate) fn cache_limits(&self) -> Result<(u64, u64, u64)> {
        let txn = self.store.read()?;
        let max = self
            .store
            .config
            .get(&txn, crate::store::config::Key::CacheMax)?;
        let min_free = self
            .store
            .config
            .get(&txn, crate::store::config::Key::CacheMinFree)?;
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        let bsize = st.fragment_size();
        let max = match max.strip_suffix('%') {
            Some(p) => st.blocks() * bsize / 100 * p.parse::<u64>().unwrap_or(10),
            None => crate::format::parse_size(&max).unwrap_or(u64::MAX),
        };
        let min_free = crate::format::parse_size(&min_free).unwrap_or(0);
        Ok((max, min_free, st.blocks_available() * bsize))
    }

    /// Every blob with bytes in the cache, and their total.
    /// Bytes the cache holds now, counted from its records (what
    /// evicting everything could free, at most).
    pub(crate) fn counted_bytes(&self) -> Result<u64> {
        Ok(self.cached_blobs()?.1)
    }

    fn cached_blobs(&self) -> Result<(Vec<CachedBlob>, u64)> {
        let txn = self.store.read()?;
        let blobs = self.store.cache.all(&txn)?;
        let used = blobs.iter().map(|(_, c)| c.bytes()).sum();
        Ok((blobs, used))
    }

    /// Counts `bytes` more in the cache, and evicts when over the bound.
    pub(crate) fn cache_grew(&self, bytes: u64) -> Result<()> {
        let used = &self.used;
        if used.load(Ordering::Relaxed) == u64::MAX {
            let (_, total) = self.cached_blobs()?;
            used.store(total, Ordering::Relaxed);
        } else {
            used.fetch_add(bytes, Ordering::Relaxed);
        }
        let (max, min_free, free) = self.cache_limits()?;
        if used.load(Ordering::Relaxed) > max || free < min_free {
            let target = (max / 10 * 9).min(
                used.load(Ordering::Relaxed)
                    .saturating_sub(min_free.saturating_sub(free)),
            );
            self.evict_down_to(target)?;
        }
        Ok(())
    }

    /// Evicts blob `hash` (`evict NAME`); EBUSY while a file has it open
    /// or a fetch is filling it.
    pub fn evict_blob(&self, hash: BlobHash) -> Result<()> {
        let gone = self.with_open(|open| -> Result<Option<Cached>> {
            if count(open, &hash) > 0 || self.chunks.fetching(&hash) {
                return Err(super::Error::Busy(
                    "the file is open or being fetched".into(),
                ));
            }
            self.remove_blob(hash)
        })?;
        let Some(cached) = gone else {
            return Ok(());
        };
        self.shrank(cached.bytes());
        self.evicted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes blob `hash` from the cache, record first (a crash between
    /// leaves a file without a record, never the reverse); what its record
    /// said, if it had one. Called within [`crate::cache::Cache::with_open`].
    fn remove_blob(&self, hash: BlobHash) -> Result<Option<Cached>> {
        let mut wtxn = self.store.write()?;
        let cached = self.store.cache.get(&wtxn, &hash)?;
        self.store.cache.remove(&mut wtxn, &hash)?;
        wtxn.commit()?;
        let _ = std::fs::remove_file(self.path(&hash));
        Ok(cached)
    }

    /// Evicts least recently read blobs until `bytes` left the cache (or
    /// nothing more may go); returns how many went.
    pub(crate) fn evict_bytes(&self, bytes: u64) -> Result<u64> {
        let (_, used) = self.cached_blobs()?;
        self.evict_down_to(used.saturating_sub(bytes))
    }

    /// Evicts every blob that may go (`/.ctl/cache evict`); returns how many.
    pub fn evict_all(&self) -> Result<u64> {
        self.evict_down_to(0)
    }

    /// Whether a kept version names blob `hash` (DESIGN.md "Sync": its
    /// bytes stay until the version expires).
    pub(crate) fn kept(&self, hash: &BlobHash) -> Result<bool> {
        let txn = self.store.read()?;
        Ok(self.store.kept.count(&txn, hash)? > 0)
    }

    /// Evicts the least recently read blobs, not pinned (open, being
    /// fetched, or named by a kept version), until at most `target` bytes
    /// stay; returns how many went.
    fn evict_down_to(&self, target: u64) -> Result<u64> {
        let (mut blobs, mut used) = self.cached_blobs()?;
        blobs.sort_by_key(|(_, c)| (c.last_read.secs, c.last_read.nanos));
        let mut gone = 0;
        for (hash, cached) in blobs {
            if used <= target {
                break;
            }
            if self.kept(&hash)? {
                continue;
            }
            let removed = self.with_open(|open| {
                if count(open, &hash) > 0 || self.chunks.fetching(&hash) {
                    return Ok(None);
                }
                self.remove_blob(hash)
            })?;
            if removed.is_none() {
                continue;
            }
            used -= cached.bytes();
            gone += 1;
        }
        self.used.store(used, Ordering::Relaxed);
        self.evicted.fetch_add(gone, Ordering::Relaxed);
        Ok(gone)
    }

    /// What `/.ctl/cache` shows.
    pub fn cache_report(&self) -> Result<CacheReport> {
        let (blobs, used) = self.cached_blobs()?;
        let (max, _, _) = self.cache_limits()?;
        let pinned = blobs
            .iter()
            .filter(|(h, _)| {
                self.pinned(h) || self.chunks.fetching(h) || self.kept(h).unwrap_or(false)
            })
            .count() as u64;
        Ok(CacheReport {
            used,
            max,
            blobs: blobs.len() as u64,
            pinned,
            evicted: self.evicted.load(Ordering::Relaxed),
        })
    }
}
