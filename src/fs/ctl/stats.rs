//! `/.ctl/stats`: `name value` counters since the mount started.

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::{Fs, Result};
use crate::store::Ino;

/// The counters kept by the file system core. `net.*` and
/// `handshake.refused` come from the [`crate::net::Household`].
#[derive(Default)]
pub struct Stats {
    /// FUSE requests served (passthrough reads and writes never come here).
    pub fuse_ops: AtomicU64,
    /// FUSE requests waiting on peers now (a gauge: reads of missing
    /// bytes, copy-ups and control commands handed off the workers).
    pub fuse_waiting: std::sync::Arc<AtomicU64>,
    /// Blobs fetched from peers.
    pub fetch_blobs: AtomicU64,
    /// Bytes fetched from peers.
    pub fetch_bytes: AtomicU64,
    /// Bytes of edited blobs copied from the blob they are based on
    /// instead of fetched (delta edits).
    pub fetch_reused: AtomicU64,
    /// Pieces verified against their blob's outboard (or small blobs
    /// verified whole), fetched or read from the cache.
    pub verify_pieces: AtomicU64,
    /// Pieces (or small blobs) that failed BLAKE3 verification.
    pub verify_failures: AtomicU64,
    /// Blobs realized (moved or copied into the Real by a mode).
    pub realized: AtomicU64,
    /// Real files unrealized (moved into the cache by a mode).
    pub unrealized: AtomicU64,
    /// Consensus rounds run.
    pub consensus_rounds: AtomicU64,
    /// Conflicts resolved.
    pub conflicts: AtomicU64,
}

impl Stats {
    /// Counts one FUSE request.
    pub fn fuse_op(&self) {
        self.fuse_ops.fetch_add(1, Ordering::Relaxed);
    }

    fn lines(&self, household: &crate::net::Household) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = [
            ("fuse.ops", get(&self.fuse_ops)),
            ("fuse.waiting", get(&self.fuse_waiting)),
            ("net.rx_bytes", get(&household.rx_bytes)),
            ("net.tx_bytes", get(&household.tx_bytes)),
            ("fetch.blobs", get(&self.fetch_blobs)),
            ("fetch.bytes", get(&self.fetch_bytes)),
            ("fetch.reused", get(&self.fetch_reused)),
            ("verify.pieces", get(&self.verify_pieces)),
            ("verify.failures", get(&self.verify_failures)),
            ("realized", get(&self.realized)),
            ("unrealized", get(&self.unrealized)),
            ("handshake.refused", household.trust.refused()),
            ("consensus.rounds", get(&self.consensus_rounds)),
            ("conflicts", get(&self.conflicts)),
        ];
        counters
            .iter()
            .map(|(name, value)| format!("{name} {value}\n"))
            .collect()
    }
}

/// Every counter, one `name value` line each.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    Ok(fs.stats.lines(fs.household()))
}
