//! `/.ctl/stats`: `name value` counters since the mount started.

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::{Result, Vfs};
use crate::store::Ino;

/// The counters. Those of the network (`net.*`, `fetch.*`, `verify.*`,
/// `handshake.*`, `consensus.*`, `conflicts`) stay 0 until a household
/// exists.
#[derive(Default)]
pub struct Stats {
    /// FUSE requests served (passthrough reads and writes never come here).
    pub fuse_ops: AtomicU64,
    /// QUIC payload bytes received.
    pub net_rx_bytes: AtomicU64,
    /// QUIC payload bytes sent.
    pub net_tx_bytes: AtomicU64,
    /// Blobs fetched from peers.
    pub fetch_blobs: AtomicU64,
    /// Bytes fetched from peers.
    pub fetch_bytes: AtomicU64,
    /// Pieces that failed BLAKE3 verification.
    pub verify_failures: AtomicU64,
    /// TLS handshakes refused (unknown keys).
    pub handshake_refused: AtomicU64,
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

    fn lines(&self) -> String {
        let counters = [
            ("fuse.ops", &self.fuse_ops),
            ("net.rx_bytes", &self.net_rx_bytes),
            ("net.tx_bytes", &self.net_tx_bytes),
            ("fetch.blobs", &self.fetch_blobs),
            ("fetch.bytes", &self.fetch_bytes),
            ("verify.failures", &self.verify_failures),
            ("handshake.refused", &self.handshake_refused),
            ("consensus.rounds", &self.consensus_rounds),
            ("conflicts", &self.conflicts),
        ];
        counters
            .iter()
            .map(|(name, value)| format!("{name} {}\n", value.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Every counter, one `name value` line each.
pub(super) fn read(vfs: &Vfs, _owner: Ino) -> Result<String> {
    Ok(vfs.stats.lines())
}
