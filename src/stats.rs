//! What the core reports: the counters of `/.ctl/stats` ([`Stats`]) and
//! the failed commands of `/.ctl/errors` ([`ErrorLog`]). Every concern
//! (the dispatcher, the cache, sync) writes into the one shared instance;
//! [`crate::fs::ctl`] shows them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

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

/// How many lines are kept.
pub const KEEP: usize = 100;

/// The in-memory log of failed commands (it starts empty at each mount).
#[derive(Default)]
pub struct ErrorLog {
    lines: Mutex<VecDeque<String>>,
}

impl ErrorLog {
    /// Appends a failure, dropping the oldest past [`KEEP`].
    pub fn push(&self, file: &str, command: &str, error: &dyn std::fmt::Display) {
        let reason = error.to_string().replace('\n', " ");
        let line = format!(
            "{} {file} {command}: {reason}\n",
            crate::format::format_time(SystemTime::now())
        );
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The log, oldest first, one line each.
    pub fn lines(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().map(String::as_str).collect()
    }
}
