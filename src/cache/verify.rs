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
use crate::blob::{Outboard, PIECE, root_of};
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
        let txn = self.store.read()?;
        let known = self.store.cache.outboard(&txn, &hash)?;
        drop(txn);
        if let Some(outboard) = known {
            return Ok(Some(outboard));
        }
        let (actual, outboard) = crate::blob::outboard_file(&file.try_clone()?)?;
        if actual != hash {
            return Ok(None);
        }
        let mut wtxn = self.store.write()?;
        self.store.cache.put_outboard(&mut wtxn, &hash, &outboard)?;
        wtxn.commit()?;
        Ok(Some(outboard))
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
            let part = self.store.cache.pieces(&txn, &hash, first, count)?;
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

    /// The outboard of `blob`, fetched from its holders (`first` first)
    /// when LMDB lacks it, and checked against the blob's hash.
    pub(crate) fn outboard_for(&self, blob: &BlobRef, first: Option<PeerId>) -> Result<Outboard> {
        if blob.size <= PIECE {
            return Ok(Outboard::default());
        }
        let known = |cache: &Cache| -> Result<Option<Outboard>> {
            let txn = cache.store.read()?;
            Ok(cache.store.cache.outboard(&txn, &blob.hash)?)
        };
        if let Some(outboard) = known(self)? {
            return Ok(outboard);
        }
        let one = self.fetches.outboard_lock(blob.hash);
        let _fetching = lock(&one);
        if let Some(outboard) = known(self)? {
            return Ok(outboard);
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
        let txn = self.store.read()?;
        let known = self.store.cache.pieces(&txn, &blob.hash, first, count)?;
        drop(txn);
        if let Some(values) = known {
            return Ok(values);
        }
        let outboard = self.outboard_for(blob, peer)?;
        let end = ((first + count) as usize).min(outboard.pieces.len());
        Ok(Outboard {
            pieces: outboard
                .pieces
                .get(first as usize..end)
                .unwrap_or_default()
                .to_vec(),
        })
    }

    fn fetch_outboard(&self, blob: &BlobRef, first: Option<PeerId>) -> Result<Outboard> {
        let total = blob.size.div_ceil(PIECE) * 32;
        // Grown as parts arrive, never sized ahead from a peer's claim.
        let mut bytes = Vec::new();
        let mut sender = None;
        while (bytes.len() as u64) < total {
            let offset = bytes.len() as u64;
            let len = (total - offset).min(MAX_READ);
            let (peer, part) = self.fetch_range(blob, offset, len, true, first)?;
            if part.is_empty() {
                return Err(Error::Unreachable(format!("{peer} sent an empty outboard")));
            }
            bytes.extend_from_slice(&part);
            sender = Some(peer);
        }
        let outboard = Outboard::from_bytes(&bytes).unwrap_or_default();
        if root_of(&outboard, blob.size) != blob.hash {
            let peer = sender.unwrap_or(self.peer_id);
            return Err(self.failed_verification(blob.hash, peer));
        }
        let mut wtxn = self.store.write()?;
        self.store
            .cache
            .put_outboard(&mut wtxn, &blob.hash, &outboard)?;
        wtxn.commit()?;
        Ok(outboard)
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
