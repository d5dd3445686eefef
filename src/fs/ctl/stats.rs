//! `/.ctl/stats`: `name value` counters since the mount started.

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::{Fs, Result};
use crate::stats::Stats;
use crate::store::Ino;

/// Every counter of `stats` and `household`, one `name value` line each.
fn lines(stats: &Stats, household: &crate::net::Household) -> String {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let counters = [
        ("fuse.ops", get(&stats.fuse_ops)),
        ("fuse.waiting", get(&stats.fuse_waiting)),
        ("net.rx_bytes", get(&household.rx_bytes)),
        ("net.tx_bytes", get(&household.tx_bytes)),
        ("fetch.blobs", get(&stats.fetch_blobs)),
        ("fetch.bytes", get(&stats.fetch_bytes)),
        ("fetch.reused", get(&stats.fetch_reused)),
        ("verify.pieces", get(&stats.verify_pieces)),
        ("verify.failures", get(&stats.verify_failures)),
        ("realized", get(&stats.realized)),
        ("unrealized", get(&stats.unrealized)),
        ("handshake.refused", household.trust.refused()),
        ("consensus.rounds", get(&stats.consensus_rounds)),
        ("conflicts", get(&stats.conflicts)),
    ];
    counters
        .iter()
        .map(|(name, value)| format!("{name} {value}\n"))
        .collect()
}

/// Every counter, one `name value` line each.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    Ok(lines(&fs.stats, fs.household()))
}
