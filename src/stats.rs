//! The counters of `/.ctl/stats` that the core keeps: every concern
//! (the dispatcher, the cache, sync) counts into one shared [`Stats`];
//! [`crate::fs::ctl`] formats them.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
