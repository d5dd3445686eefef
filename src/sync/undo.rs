//! The Real's side of one page of a pull (issue "Hostile peers and hard
//! faults", point 1): every change a page makes in the Real is noted, and
//! undone in reverse order when a later record of the page fails, so that
//! a page is all or nothing in the Real as it is in LMDB (whose write
//! transaction is then dropped). Without it, a symlink or a directory a
//! page made would stay on disk, unknown to the namespace, for a later
//! record to walk into.

use std::path::PathBuf;

use crate::real::{Real, RealPath};

/// One change made in the Real, and how to take it back.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A directory made: removed (it is empty again once the later steps
    /// are undone).
    Made(RealPath),
    /// A symlink made: removed.
    Linked(RealPath),
    /// A file moved from the stash into the Real: moved back.
    Claimed {
        /// Where it was in the stash.
        stash: PathBuf,
        /// Where it went in the Real.
        real: RealPath,
    },
    /// A file moved from the Real to the stash: moved back.
    Stashed {
        /// Where it was in the Real.
        real: RealPath,
        /// Where it went in the stash.
        stash: PathBuf,
    },
    /// An empty directory removed: made again with its permission bits.
    RemovedDir(RealPath, u16),
    /// A symlink removed: made again with its target.
    RemovedLink(RealPath, Vec<u8>),
    /// A rename within the Real: renamed back.
    Renamed {
        /// The old path.
        from: RealPath,
        /// The new path.
        to: RealPath,
    },
    /// The permission bits of an existing directory changed: set back.
    Chmod(RealPath, u16),
}

/// The changes one page made in the Real so far, oldest first.
#[derive(Debug, Default, Clone)]
pub(super) struct Journal(Vec<Step>);

impl Journal {
    /// Notes `step`, done.
    pub(super) fn push(&mut self, step: Step) {
        self.0.push(step);
    }

    /// Forgets the steps: the page committed.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Undoes every step, newest first. A step that cannot be undone
    /// (the Real changed under realize meanwhile) is logged and the rest
    /// still go: the next mount's reconciliation brings the namespace in
    /// line with whatever is left.
    pub(super) fn undo(&mut self, real: &Real) {
        for step in self.0.drain(..).rev() {
            let done = match &step {
                Step::Made(path) => real.remove_dir(path),
                Step::Linked(path) => real.remove_file(path),
                Step::Claimed { stash, real: path } => real.rename_out(path, stash),
                Step::Stashed { real: path, stash } => real.rename_in(stash, path),
                Step::RemovedDir(path, perm) => real.mkdir(path, *perm),
                Step::RemovedLink(path, target) => real.symlink(target, path),
                Step::Renamed { from, to } => real.rename(to, from, true),
                Step::Chmod(path, perm) => real.chmod(path, *perm),
            };
            if let Err(e) = done {
                tracing::warn!("undoing {step:?} of a failed page: {e}");
            }
        }
    }
}
