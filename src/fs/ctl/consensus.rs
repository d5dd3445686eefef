//! `/.ctl/consensus`: per peer and area, the last round
//! (`PEERID AREA LAST_TIME RESULT SENT RECEIVED CONFLICTS`, read); `now`,
//! `now PEERID`, `now AREA` run rounds and block until they end (write).
//!
//! RESULT is `ok`, `unreachable`, `timeout`, `refused` or `failed`. A write
//! fails with EHOSTUNREACH when a peer could not be reached or refused,
//! ETIMEDOUT when the rounds outlast `consensus.timeout`, so that a cron
//! script can tell.

use std::sync::mpsc::RecvTimeoutError;

use super::super::{Error, Fs, Result};
use super::cmdtab::{self, Cmd};
use super::name_field;
use crate::format::{escape, format_time};
use crate::ids::PeerId;
use crate::net::{Command, RequestError};
use crate::store::Ino;

fn word(outcome: &std::result::Result<(), RequestError>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(RequestError::Unreachable(_)) => "unreachable",
        Err(RequestError::TimedOut) => "timeout",
        Err(RequestError::Refused(_)) => "refused",
        Err(RequestError::Local(_)) => "failed",
    }
}

/// One line per peer and area that had a round since the mount.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let mut out = String::new();
    for (peer, area, r) in fs.household().rounds() {
        out.push_str(&format!(
            "{peer} {} {} {} {} {} {}\n",
            escape(&area),
            format_time(r.time),
            word(&r.outcome),
            r.sent,
            r.received,
            r.conflicts
        ));
    }
    Ok(out)
}

/// Runs rounds with `peer` (all when `None`) for `area` (all when `None`).
///
/// Every closed file still resting is recorded first, so that `now` after
/// a `cp` sends what was copied; files open for writing wait (listed as
/// `pending` in `/.ctl/health`).
fn now(fs: &Fs, peer: Option<PeerId>, area: Option<Vec<u8>>) -> Result<()> {
    fs.tree().record_closed()?;
    let timeout = {
        let txn = fs.store().read()?;
        fs.store()
            .config
            .duration(&txn, crate::store::config::Key::ConsensusTimeout)?
    };
    // Capacity 1: the manager's send never blocks the runtime; this is a
    // FUSE thread, which may wait.
    let (done, results) = std::sync::mpsc::sync_channel(1);
    if !fs.household().send(Command::Consensus { peer, area, done }) {
        return Err(Error::Unreachable("the network is not running".into()));
    }
    let results = match results.recv_timeout(timeout) {
        Ok(results) => results,
        Err(RecvTimeoutError::Timeout) => {
            return Err(Error::TimedOut(
                "the round outlasted consensus.timeout".into(),
            ));
        }
        Err(RecvTimeoutError::Disconnected) => {
            return Err(Error::Unreachable("the network stopped".into()));
        }
    };
    let mut failures = Vec::new();
    let mut timed_out = false;
    for (peer, area, result) in &results {
        if let Err(e) = &result.outcome {
            timed_out |= matches!(e, RequestError::TimedOut);
            failures.push(format!("{peer} {}: {e}", escape(area)));
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false if timed_out => Err(Error::TimedOut(failures.join("; "))),
        false => Err(Error::Unreachable(failures.join("; "))),
    }
}

/// The commands of `/.ctl/consensus`.
const COMMANDS: &[Cmd] = &[Cmd {
    name: "now",
    args: "[PEERID|AREA]",
    run: |fs, _, args| match args.first() {
        None => now(fs, None, None),
        Some(target) => {
            if let Ok(peer) = target.parse::<PeerId>() {
                super::peers::known_peer(fs, target)?;
                return now(fs, Some(peer), None);
            }
            let name = name_field(target)?;
            if fs.tree.area_named(&name, false)?.is_none() {
                return Err(Error::NotFound(format!("no peer or area {target}")));
            }
            now(fs, None, Some(name))
        }
    },
}];

/// Runs one command of [`COMMANDS`]: `now`, `now PEERID` or `now AREA`.
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    cmdtab::run(COMMANDS, fs, owner, fields)
}
