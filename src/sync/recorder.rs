//! Recording writes into history (DESIGN.md "Sync": writes are recorded when
//! the file is closed and has rested `consensus.rest`).
//!
//! FUSE threads only note, in memory, which inodes were written and when
//! their last writer closed; a background thread hashes each file once it
//! has rested and commits the new hash with its history op (create, edit
//! based on the previous blob, or overwrite after a truncation to zero).
//! Whatever is pending at a crash is found again by [`super::reconcile`],
//! since the recorded size and mtime no longer match the Real.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Error, Result, Tree, lock};
use crate::store::Ino;
use crate::store::history::{Op, OpKind};

/// How often the recorder flushes LMDB to disk when idle.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A written file waiting to be recorded.
struct Pending {
    /// Open handles that may write.
    writers: u32,
    /// Last change: open for writing, close, truncation.
    changed: Instant,
    /// Truncated to zero since the last record: an overwrite, not an edit.
    overwrite: bool,
}

impl Pending {
    /// Nobody writes it, and it has not changed since `changed`.
    fn rests_since(&self, changed: Instant) -> bool {
        self.writers == 0 && self.changed == changed
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<Ino, Pending>,
    stopped: bool,
    /// When the sleeping recorder means to wake (`None`: it is awake).
    wake_at: Option<Instant>,
    /// The rest it last read from the config.
    rest: Duration,
}

impl State {
    /// Wakes the recorder if a file closed now falls due before it would
    /// wake anyway (each change used to wake it, costing a scan of every
    /// pending file: quadratic in a burst of creates).
    fn closed_now(&self, wake: &Condvar) {
        if self
            .wake_at
            .is_some_and(|at| Instant::now() + self.rest < at)
        {
            wake.notify_all();
        }
    }
}

/// A writer counted by [`Recorder::writer`].
pub(crate) struct Writer<'a> {
    recorder: &'a Recorder,
    ino: Ino,
    /// What [`Recorder::opened_for_write`] returned.
    pub(crate) unrecorded: bool,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.recorder.released(self.ino);
    }
}

/// The in-memory set of written files not yet recorded.
#[derive(Default)]
pub(crate) struct Recorder {
    state: Mutex<State>,
    wake: Condvar,
}

impl Recorder {
    /// Notes a change of `ino`; true when it was pending already.
    fn change(&self, ino: Ino, update: impl FnOnce(&mut Pending)) -> bool {
        let mut state = lock(&self.state);
        let mut was = true;
        let pending = state.pending.entry(ino).or_insert_with(|| {
            was = false;
            Pending {
                writers: 0,
                changed: Instant::now(),
                overwrite: false,
            }
        });
        pending.changed = Instant::now();
        update(pending);
        let closed = pending.writers == 0;
        if closed {
            state.closed_now(&self.wake);
        }
        was
    }

    /// A handle that may write `ino` was opened; true when `ino` was
    /// waiting to be recorded already (its bytes may not be the recorded
    /// ones, or a record of them is under way). From now until its
    /// release, no record of `ino` starts.
    pub(crate) fn opened_for_write(&self, ino: Ino) -> bool {
        self.change(ino, |p| p.writers += 1)
    }

    /// A writer of `ino` for the time of one change made without a handle
    /// (a truncation), released when dropped.
    pub(crate) fn writer(&self, ino: Ino) -> Writer<'_> {
        let unrecorded = self.opened_for_write(ino);
        Writer {
            recorder: self,
            ino,
            unrecorded,
        }
    }

    /// A writing handle of `ino` was closed; its rest starts now.
    pub(crate) fn released(&self, ino: Ino) {
        let mut state = lock(&self.state);
        let closed = state.pending.get_mut(&ino).is_some_and(|p| {
            p.writers = p.writers.saturating_sub(1);
            p.changed = Instant::now();
            p.writers == 0
        });
        if closed {
            state.closed_now(&self.wake);
        }
    }

    /// `ino` changed without a handle (truncate, create); `overwrite` when
    /// its content was cut to nothing.
    pub(crate) fn touched(&self, ino: Ino, overwrite: bool) {
        self.change(ino, |p| p.overwrite |= overwrite);
    }

    /// `ino` could not be recorded now (its file is not at its place in
    /// the Real yet): it rests again before the next try.
    fn rest_again(&self, ino: Ino) {
        if let Some(p) = lock(&self.state).pending.get_mut(&ino) {
            p.changed = Instant::now();
        }
    }

    /// `ino` is gone: nothing to record.
    pub(crate) fn forget(&self, ino: Ino) {
        lock(&self.state).pending.remove(&ino);
    }

    /// Whether `ino` is open for writing now.
    pub(crate) fn is_written(&self, ino: Ino) -> bool {
        lock(&self.state)
            .pending
            .get(&ino)
            .is_some_and(|p| p.writers > 0)
    }

    /// Whether `ino` waits to be recorded (its status is `dirty`).
    pub(crate) fn is_pending(&self, ino: Ino) -> bool {
        lock(&self.state).pending.contains_key(&ino)
    }

    /// The inodes open for writing now (waiting to be recorded when their
    /// last writer closes), in no order.
    pub(crate) fn writing(&self) -> Vec<Ino> {
        lock(&self.state)
            .pending
            .iter()
            .filter(|(_, p)| p.writers > 0)
            .map(|(&ino, _)| ino)
            .collect()
    }

    /// Stops the background thread.
    pub(crate) fn stop(&self) {
        lock(&self.state).stopped = true;
        self.wake.notify_all();
    }

    /// The closed files that have rested `rest` (all closed ones with
    /// `all`), with the time of their last change and overwrite flag.
    fn due(&self, rest: Duration, all: bool) -> Vec<(Ino, Instant, bool)> {
        lock(&self.state)
            .pending
            .iter()
            .filter(|(_, p)| p.writers == 0 && (all || p.changed.elapsed() >= rest))
            .map(|(&ino, p)| (ino, p.changed, p.overwrite))
            .collect()
    }

    /// Whether `ino` may be recorded as it was at `changed`: nobody
    /// writes it and it has not changed since; false means record it
    /// later. It stays pending (its status `dirty`) until
    /// [`Recorder::recorded`]: taken off before the new hash is committed,
    /// a reader would see the old hash as clean.
    fn unchanged_since(&self, ino: Ino, changed: Instant) -> bool {
        lock(&self.state)
            .pending
            .get(&ino)
            .is_some_and(|p| p.rests_since(changed))
    }

    /// The record of `ino` as it was at `changed` is committed: off the
    /// pending set, unless it changed since (then it is recorded again).
    fn recorded(&self, ino: Ino, changed: Instant) {
        let mut state = lock(&self.state);
        if state
            .pending
            .get(&ino)
            .is_some_and(|p| p.rests_since(changed))
        {
            state.pending.remove(&ino);
        }
    }

    /// Sleeps until the next closed file has rested `rest`, a file closed
    /// later falls due sooner, [`SYNC_EVERY`] passes, or a stop; true when
    /// stopped.
    fn wait(&self, rest: Duration) -> bool {
        let mut state = lock(&self.state);
        if state.stopped {
            return true;
        }
        let now = Instant::now();
        let timeout = state
            .pending
            .values()
            .filter(|p| p.writers == 0)
            .map(|p| (p.changed + rest).saturating_duration_since(now))
            .min()
            .unwrap_or(SYNC_EVERY)
            .clamp(Duration::from_millis(5), SYNC_EVERY);
        state.rest = rest;
        state.wake_at = Some(now + timeout);
        let mut state = super::wait(&self.wake, state, timeout);
        state.wake_at = None;
        state.stopped
    }
}

impl Tree {
    /// The recorder thread's loop: record what has rested, flush LMDB now
    /// and then, sleep until the next file is due.
    pub(crate) fn run_recorder(&self) {
        let mut synced = Instant::now();
        loop {
            if let Err(e) = self.record_pending(false) {
                tracing::error!("recording writes: {e}");
            }
            if synced.elapsed() >= SYNC_EVERY {
                if let Err(e) = self.store.sync() {
                    tracing::error!("flushing the database: {e}");
                }
                synced = Instant::now();
            }
            if self.recorder.wait(self.rest()) {
                return;
            }
        }
    }

    fn rest(&self) -> Duration {
        self.store.duration_or(
            crate::store::config::Key::ConsensusRest,
            Duration::from_secs(10),
        )
    }

    /// Records every closed file now, rested or not (as `sync(1)`
    /// flushes); files still open for writing wait.
    pub fn record_closed(&self) -> Result<()> {
        self.record_pending(true)
    }

    /// Records the closed files that have rested (all closed ones with
    /// `all`).
    ///
    /// A file that cannot be recorded (its place in the Real is no longer
    /// a plain path: a symlink planted there, a directory gone) is dropped
    /// from the pending set with a line in `/.ctl/errors`, and the others
    /// are recorded all the same; reconciliation looks at it again at the
    /// next mount. Only a failure of the database stops the pass.
    pub(crate) fn record_pending(&self, all: bool) -> Result<()> {
        for (ino, changed, overwrite) in self.recorder.due(self.rest(), all) {
            match self.record_write(ino, changed, overwrite) {
                Ok(()) => {}
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => {
                    self.recorder.forget(ino);
                    let path = self
                        .store
                        .read()
                        .ok()
                        .and_then(|txn| self.area_path(&txn, ino).ok())
                        .map(|p| String::from_utf8_lossy(&p).into_owned())
                        .unwrap_or_else(|| format!("inode {ino}"));
                    tracing::warn!("recording {path}: {e}");
                    self.errors.push("recorder", &format!("record {path}"), &e);
                }
            }
        }
        Ok(())
    }

    /// Hashes `ino` and commits its new hash with the history op.
    fn record_write(&self, ino: Ino, changed: Instant, overwrite: bool) -> Result<()> {
        let path = {
            let txn = self.store.read()?;
            match self.store.namespace.get(&txn, ino)? {
                Some(inode) if inode.parent != Ino::NONE => self.real_path(&txn, ino)?,
                _ => {
                    self.recorder.forget(ino);
                    return Ok(());
                }
            }
        };
        let file = match self.real.open_file(&path, crate::real::Open::read()) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Renamed meanwhile (by the user, or moved aside by a
                // pull), its new place perhaps not committed yet: still
                // pending while the inode lives, tried again after it
                // rests once more. Removed: nothing to record.
                tracing::debug!("recording inode {ino}: gone from {path}");
                let txn = self.store.read()?;
                match self.store.namespace.get(&txn, ino)? {
                    Some(inode) if inode.parent != Ino::NONE && !inode.unreal => {
                        self.recorder.rest_again(ino)
                    }
                    _ => self.recorder.forget(ino),
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let before = file.metadata()?;
        let (hash, outboard) = crate::blob::outboard_file(&file)?;
        let after = file.metadata()?;
        if (before.size(), before.mtime_nsec(), before.mtime())
            != (after.size(), after.mtime_nsec(), after.mtime())
        {
            return Ok(()); // written meanwhile (mmap, another process): later
        }
        let mut wtxn = self.store.write()?;
        let Some(mut inode) = self.store.namespace.get(&wtxn, ino)? else {
            self.recorder.forget(ino);
            return Ok(());
        };
        // The path was read before this transaction: a pull or a rename
        // may have moved the file since (a pull moves files in the Real
        // before it commits), and what was hashed may be another file.
        let still = inode.parent != Ino::NONE
            && self.real_path(&wtxn, ino)? == path
            && self
                .real
                .metadata(&path)
                .is_ok_and(|now| (now.dev(), now.ino()) == (after.dev(), after.ino()));
        if !still {
            tracing::debug!("recording inode {ino}: moved from {path} meanwhile");
            self.recorder.rest_again(ino);
            return Ok(());
        }
        if !self.recorder.unchanged_since(ino, changed) {
            return Ok(());
        }
        self.store.outboards.put(&mut wtxn, &hash, &outboard)?;
        let kind = match inode.hash {
            None => Some(OpKind::Create),
            Some(old) if old == hash => None,
            Some(_) if overwrite => Some(OpKind::Overwrite),
            Some(_) => Some(OpKind::Edit),
        };
        let base = inode.hash.filter(|_| kind == Some(OpKind::Edit));
        inode.hash = Some(hash);
        inode.size = after.size();
        inode.mtime = after.modified()?.into();
        self.store.namespace.put(&mut wtxn, ino, &inode)?;
        tracing::debug!("recorded inode {ino} at {path}: {kind:?} {hash}");
        if let Some(kind) = kind {
            let op = Op {
                base,
                ..Self::op(kind, self.area_path(&wtxn, ino)?, Some(hash))
            };
            self.record(&mut wtxn, inode.area, op)?;
        }
        let unreal = self.effective_mode(&wtxn, ino)?.0 == crate::store::namespace::Mode::Unreal;
        wtxn.commit()?;
        self.recorder.recorded(ino, changed);
        // Under an unreal mode it leaves the Real once it has holders.
        if unreal {
            self.life_job(super::life::Job::Unrealize(ino));
        }
        Ok(())
    }
}
