//! Verified pieces (DESIGN.md "Sync", [`crate::blob`]): outboards fetched
//! and checked against their blob's hash, bytes from the cache checked
//! piece by piece before they are read or sent, and damaged cache files
//! fetched again.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::fetch::BlobRef;
use super::{Cache, Error, Result, lock};
use crate::blob::{Outboard, PART, PIECE, root_of, root_of_parts, subtree_value};
use crate::ids::{BlobHash, PeerId};
use crate::net::protocol::{BlobRange, MAX_READ};
use crate::net::{Command, Fetch};
use crate::store::cache::CHUNK;

impl Cache {
    /// The outboard of blob `hash` (`size` bytes) whose bytes are in
    /// `file`: from LMDB, or computed from the file and kept when the file
    /// matches the hash; `None` when it does not (damaged).
    pub(crate) fn local_outboard(
        &self,
        hash: BlobHash,
        size: u64,
        file: &File,
    ) -> Result<Option<Outboard>> {
        if size <= PIECE {
            return Ok(Some(Outboard::default()));
        }
        if !self.know_local_outboard(hash, size, file)? {
            return Ok(None);
        }
        let txn = self.store.read()?;
        Ok(self.store.outboards.get(&txn, &hash)?)
    }

    /// Makes sure LMDB knows the outboard of blob `hash` (`size` bytes)
    /// whose bytes are in `file`, computing it from the file when it does
    /// not; false when the file does not match the hash (damaged).
    pub(crate) fn know_local_outboard(
        &self,
        hash: BlobHash,
        size: u64,
        file: &File,
    ) -> Result<bool> {
        if size <= PIECE {
            return Ok(true);
        }
        let txn = self.store.read()?;
        if self.store.outboards.known(&txn, &hash)? {
            return Ok(true);
        }
        drop(txn);
        // Computed whole: the file is local, its size this disk's.
        let (actual, outboard) = crate::blob::outboard_file(&file.try_clone()?)?;
        if actual != hash {
            return Ok(false);
        }
        let mut wtxn = self.store.write()?;
        self.store.outboards.put(&mut wtxn, &hash, &outboard)?;
        wtxn.commit()?;
        Ok(true)
    }

    /// Reads `buf.len()` bytes at `offset` of the cache file `file` of
    /// blob `hash` (`size` bytes), verifying every piece they touch
    /// (unless `cache.verify` is off); `Err(piece)` names the first piece
    /// that does not match. A read of whole pieces is verified where it
    /// lands; another is read with the rest of its pieces first.
    pub(crate) fn read_verified(
        &self,
        file: &File,
        hash: BlobHash,
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<std::result::Result<(), u64>> {
        if !self.verify_cache_reads() {
            file.read_exact_at(buf, offset)?;
            return Ok(Ok(()));
        }
        let first = offset / PIECE;
        let start = first * PIECE;
        let end = (offset + buf.len() as u64)
            .div_ceil(PIECE)
            .saturating_mul(PIECE)
            .min(size);
        let count = (end - start).div_ceil(PIECE);
        let values = if size <= PIECE {
            Some(Outboard::default())
        } else {
            let txn = self.store.read()?;
            let part = self.store.outboards.pieces(&txn, &hash, first, count)?;
            drop(txn);
            match part {
                Some(part) => Some(part),
                // Not known yet: computed from the (complete) file once.
                None => self.local_outboard(hash, size, file)?.map(|o| Outboard {
                    pieces: o
                        .pieces
                        .get(first as usize..(first + count) as usize)
                        .unwrap_or_default()
                        .to_vec(),
                }),
            }
        };
        let Some(values) = values else {
            return Ok(Err(first));
        };
        self.stats.verify_pieces.fetch_add(count, Ordering::Relaxed);
        let verdict = if start == offset && end == offset + buf.len() as u64 {
            file.read_exact_at(buf, offset)?;
            values.verify_part(&hash, size, first, first, buf)
        } else {
            let mut span = vec![0; (end - start) as usize];
            file.read_exact_at(&mut span, start)?;
            let verdict = values.verify_part(&hash, size, first, first, &span);
            let skip = (offset - start) as usize;
            buf.copy_from_slice(&span[skip..skip + buf.len()]);
            verdict
        };
        Ok(verdict.map_or(Ok(()), Err))
    }

    fn verify_cache_reads(&self) -> bool {
        self.store
            .read()
            .and_then(|txn| {
                self.store
                    .config
                    .get(&txn, crate::store::config::Key::CacheVerify)
            })
            .map_or(true, |v| v != "off")
    }

    /// A piece of blob `hash` in the cache no longer matches (bit rot, a
    /// damaged DATA): counted, logged, and its chunk marked absent so that
    /// it is fetched again.
    pub(crate) fn cache_damaged(&self, hash: BlobHash, piece: u64) -> Result<()> {
        self.stats.verify_failures.fetch_add(1, Ordering::Relaxed);
        let hex = crate::format::format_hash(Some(&hash));
        tracing::warn!(
            "blob {hex}: piece {piece} in the cache does not match its hash; fetching it again"
        );
        let mut wtxn = self.store.write()?;
        if let Some(mut cached) = self.store.cache.get(&wtxn, &hash)? {
            cached.unset(piece * PIECE / CHUNK);
            cached.verified = false;
            self.store.cache.put(&mut wtxn, &hash, &cached)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// The cache file of blob `hash` is `len` bytes long, shorter than its
    /// size (a power loss dropped or cut it): the chunks its record claims
    /// past `len` are marked absent, so that they are fetched again rather
    /// than read as zeros or realized short.
    pub(crate) fn cache_cut(&self, hash: BlobHash, len: u64) -> Result<()> {
        let mut wtxn = self.store.write()?;
        let Some(mut cached) = self.store.cache.get(&wtxn, &hash)? else {
            return Ok(());
        };
        let claimed: Vec<u64> = (0..cached.size.div_ceil(CHUNK))
            .filter(|&c| cached.has(c) && (c * CHUNK + CHUNK).min(cached.size) > len)
            .collect();
        if claimed.is_empty() {
            return Ok(());
        }
        let hex = crate::format::format_hash(Some(&hash));
        tracing::warn!(
            "blob {hex}: its cache file ends at {len} of {} bytes; fetching the rest again",
            cached.size
        );
        for c in claimed {
            cached.unset(c);
        }
        cached.verified = false;
        self.store.cache.put(&mut wtxn, &hash, &cached)?;
        wtxn.commit()?;
        Ok(())
    }

    /// The whole outboard of `blob`, fetched from its holders (`first`
    /// first) when LMDB lacks it ([`Cache::know_outboard`]).
    pub(crate) fn outboard_for(&self, blob: &BlobRef, first: Option<PeerId>) -> Result<Outboard> {
        if blob.size <= PIECE {
            return Ok(Outboard::default());
        }
        self.know_outboard(blob, first)?;
        let txn = self.store.read()?;
        let outboard = self.store.outboards.get(&txn, &blob.hash)?;
        outboard.ok_or_else(|| Error::Unreachable("the outboard was dropped".into()))
    }

    /// Makes sure LMDB knows the outboard of `blob` (more than one
    /// piece): fetched from its holders (`first` first) when it does not,
    /// one fetch at a time per blob.
    fn know_outboard(&self, blob: &BlobRef, first: Option<PeerId>) -> Result<()> {
        let known = |cache: &Cache| -> Result<bool> {
            let txn = cache.store.read()?;
            Ok(cache.store.outboards.known(&txn, &blob.hash)?)
        };
        if known(self)? {
            return Ok(());
        }
        let one = self.fetches.outboard_lock(blob.hash);
        let _fetching = lock(&one);
        if known(self)? {
            return Ok(());
        }
        let result = self.fetch_outboard(blob, first);
        self.fetches.outboard_fetched(&blob.hash);
        result
    }

    /// Chaining values `first..first + count` of `blob`'s outboard (the
    /// outboard fetched first from `peer`, then the holders, when unknown);
    /// empty for a blob of one piece.
    pub(crate) fn piece_values(
        &self,
        blob: &BlobRef,
        first: u64,
        count: u64,
        peer: Option<PeerId>,
    ) -> Result<Outboard> {
        if blob.size <= PIECE {
            return Ok(Outboard::default());
        }
        let end = (first + count).min(blob.size.div_ceil(PIECE));
        let pieces = |cache: &Cache| -> Result<Option<Outboard>> {
            let txn = cache.store.read()?;
            let count = end.saturating_sub(first);
            Ok(cache
                .store
                .outboards
                .pieces(&txn, &blob.hash, first, count)?)
        };
        if let Some(values) = pieces(self)? {
            return Ok(values);
        }
        self.know_outboard(blob, peer)?;
        Ok(pieces(self)?.unwrap_or_default())
    }

    /// Fetches the outboard of `blob` a part at a time ([`PART`] values:
    /// no buffer grows with the size a peer claims), keeps each part as it
    /// arrives, and marks them trusted once their values merge to the
    /// blob's hash; drops them otherwise.
    fn fetch_outboard(&self, blob: &BlobRef, first: Option<PeerId>) -> Result<()> {
        let total = blob.size.div_ceil(PIECE);
        let parts = total.div_ceil(PART);
        let mut values = Vec::new();
        let mut sender = self.peer_id;
        for part in 0..parts {
            let count = PART.min(total - part * PART);
            let (peer, bytes) = self.fetch_part(blob, part * PART * 32, count * 32, first)?;
            sender = peer;
            let part_values = Outboard::from_bytes(&bytes).unwrap_or_default();
            if parts == 1 {
                if root_of(&part_values, blob.size) != blob.hash {
                    return Err(self.failed_verification(blob.hash, sender));
                }
                let mut wtxn = self.store.write()?;
                self.store
                    .outboards
                    .put(&mut wtxn, &blob.hash, &part_values)?;
                wtxn.commit()?;
                return Ok(());
            }
            let Some(value) = subtree_value(part, &part_values.pieces, blob.size) else {
                return Err(self.failed_verification(blob.hash, sender));
            };
            let mut wtxn = self.store.write()?;
            self.store
                .outboards
                .put_part(&mut wtxn, &blob.hash, part, &part_values.pieces)?;
            wtxn.commit()?;
            values.push(value);
        }
        let mut wtxn = self.store.write()?;
        if root_of_parts(&values, blob.size) != blob.hash {
            self.store.outboards.drop_parts(&mut wtxn, &blob.hash, 0)?;
            wtxn.commit()?;
            return Err(self.failed_verification(blob.hash, sender));
        }
        self.store.outboards.trust(&mut wtxn, &blob.hash, total)?;
        wtxn.commit()?;
        Ok(())
    }

    /// `len` bytes at `offset` of `blob`'s outboard (one part), in as
    /// many requests as the holders need, grown as they arrive.
    fn fetch_part(
        &self,
        blob: &BlobRef,
        offset: u64,
        len: u64,
        first: Option<PeerId>,
    ) -> Result<(PeerId, Vec<u8>)> {
        let mut bytes = Vec::new();
        let mut sender = self.peer_id;
        while (bytes.len() as u64) < len {
            let at = offset + bytes.len() as u64;
            let want = (len - bytes.len() as u64).min(MAX_READ);
            let (peer, part) = self.fetch_range(blob, at, want, true, first)?;
            if part.is_empty() {
                return Err(Error::Unreachable(format!("{peer} sent an empty outboard")));
            }
            if part.len() as u64 > want {
                return Err(self.failed_verification(blob.hash, peer));
            }
            bytes.extend_from_slice(&part);
            sender = peer;
        }
        Ok((sender, bytes))
    }

    /// Reads `len` bytes at `offset` of `blob` (or of its outboard) from
    /// its holders (`first` first), waiting at most `net.timeout`: the
    /// bytes, unverified, and who sent them.
    pub(crate) fn fetch_range(
        &self,
        blob: &BlobRef,
        offset: u64,
        len: u64,
        outboard: bool,
        first: Option<PeerId>,
    ) -> Result<(PeerId, Vec<u8>)> {
        let mut holders = self.holders_to_ask(blob, offset / CHUNK)?;
        if let Some(first) = first {
            holders.retain(|p| *p != first);
            holders.insert(0, first);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let me = self.me.clone();
        let fetch = Fetch {
            holders,
            range: BlobRange {
                area: blob.area_name.clone(),
                path: blob.path.clone(),
                hash: blob.hash,
                offset,
                len,
            },
            outboard,
            done: Box::new(move |outcome| {
                if let Some(cache) = me.upgrade() {
                    for peer in &outcome.passed_over {
                        cache.fetches.in_trouble(*peer);
                    }
                }
                let _ = tx.try_send(outcome.result);
            }),
        };
        if !self.household.send(Command::Fetch(fetch)) {
            return Err(Error::Unreachable("the network is not running".into()));
        }
        rx.recv_timeout(self.net_timeout() + Duration::from_secs(1))
            .map_err(|_| Error::Unreachable("no holder sent the bytes within net.timeout".into()))?
            .map_err(|e| Error::Unreachable(e.to_string()))
    }

    /// Counts and logs bytes from `peer` that do not match blob `hash`,
    /// and asks `peer` last for a while.
    pub(crate) fn failed_verification(&self, hash: BlobHash, peer: PeerId) -> Error {
        self.stats.verify_failures.fetch_add(1, Ordering::Relaxed);
        self.fetches.in_trouble(peer);
        let hex = crate::format::format_hash(Some(&hash));
        tracing::warn!("blob {hex}: bytes from {peer} do not match its hash: dropped");
        Error::Corrupt(format!("blob {hex} from {peer} failed verification"))
    }
}
