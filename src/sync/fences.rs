//! Fences between the opens of real files and the moves that take a real
//! file from its place: a pull that replaces or removes it (it goes to
//! the stash, or aside as a conflict copy) and an unrealize (it goes to
//! the cache).
//!
//! An open reads the file's place in the Real from LMDB, then opens it
//! there; a move that ran in between would leave the open on whatever file
//! took the place (a peer's file the pull put there), its handle and its
//! recorder entry the old inode's: the user's bytes would land in another
//! file, and that file's bytes would no longer match its recorded hash.
//! So a move holds its file ([`Fences::hold`]) until its transaction ends,
//! after the opens under way finished; an open waits for the holds of its
//! file, then marks itself under way ([`Fences::open`]) until its handle is
//! counted. Either the mover sees the open's handle or writer (and the file
//! stays, or goes aside as changed), or the open reads the place after the
//! move.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{lock, wait};
use crate::store::Ino;

/// The holds and the opens under way, per inode.
#[derive(Default)]
pub(crate) struct Fences {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Moves under way: how many hold each inode.
    held: HashMap<Ino, u32>,
    /// Opens under way: how many between reading the place and counting
    /// the handle.
    opening: HashMap<Ino, u32>,
}

/// An open under way of one inode ([`Fences::open`]); ends when dropped.
pub(crate) struct Opening<'a> {
    fences: &'a Fences,
    ino: Ino,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.fences.state);
        decrement(&mut state.opening, self.ino);
        drop(state);
        self.fences.changed.notify_all();
    }
}

fn decrement(counts: &mut HashMap<Ino, u32>, ino: Ino) {
    if let Some(count) = counts.get_mut(&ino) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&ino);
        }
    }
}

/// How long one wait lasts before the condition is looked at again.
const TICK: Duration = Duration::from_millis(100);

impl Fences {
    /// Holds `ino` for a move, once the opens under way ended, when
    /// `may_move` (asked under the lock, after those opens counted their
    /// handles and writers) says so; `false` when it did not. Ended by
    /// [`Fences::release`].
    pub(crate) fn hold(&self, ino: Ino, may_move: impl FnOnce() -> bool) -> bool {
        let mut state = lock(&self.state);
        while state.opening.contains_key(&ino) {
            state = wait(&self.changed, state, TICK);
        }
        if !may_move() {
            return false;
        }
        *state.held.entry(ino).or_default() += 1;
        true
    }

    /// Ends one hold of each of `inos`.
    pub(crate) fn release(&self, inos: impl IntoIterator<Item = Ino>) {
        let mut state = lock(&self.state);
        for ino in inos {
            decrement(&mut state.held, ino);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Starts an open of `ino` once no move holds it: `arrive` runs under
    /// the lock (to count a writer, or to find the file gone from the
    /// Real: `None`, nothing started). The open is under way until the
    /// [`Opening`] is dropped, after its handle is counted.
    pub(crate) fn open<T, E>(
        &self,
        ino: Ino,
        arrive: impl FnOnce() -> Result<Option<T>, E>,
    ) -> Result<Option<(T, Opening<'_>)>, E> {
        let mut state = lock(&self.state);
        while state.held.contains_key(&ino) {
            state = wait(&self.changed, state, TICK);
        }
        let Some(arrived) = arrive()? else {
            return Ok(None);
        };
        *state.opening.entry(ino).or_default() += 1;
        Ok(Some((arrived, Opening { fences: self, ino })))
    }

    /// Waits until no move holds `ino`.
    pub(crate) fn wait_moves(&self, ino: Ino) {
        let mut state = lock(&self.state);
        while state.held.contains_key(&ino) {
            state = wait(&self.changed, state, TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Fences;
    use crate::store::Ino;

    /// Logs the end of the main thread's fence, after the other thread
    /// had the time to run ahead were it not held.
    fn end_first(log: &Mutex<Vec<&'static str>>) {
        std::thread::sleep(Duration::from_millis(200));
        log.lock().unwrap().push("first ends");
    }

    #[test]
    fn a_move_waits_for_an_open_under_way() {
        let fences = Arc::new(Fences::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let ino = Ino(7);
        let opening = fences
            .open(ino, || Ok::<_, ()>(Some(())))
            .unwrap()
            .unwrap()
            .1;
        let mover = {
            let (fences, log) = (Arc::clone(&fences), Arc::clone(&log));
            std::thread::spawn(move || {
                assert!(fences.hold(ino, || true));
                log.lock().unwrap().push("held");
                fences.release([ino]);
            })
        };
        end_first(&log);
        drop(opening);
        mover.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["first ends", "held"]);
    }

    #[test]
    fn an_open_waits_for_a_move_and_another_file_does_not() {
        let fences = Arc::new(Fences::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let ino = Ino(7);
        assert!(fences.hold(ino, || true));
        // Another inode opens at once.
        assert!(
            fences
                .open(Ino(8), || Ok::<_, ()>(Some(())))
                .unwrap()
                .is_some()
        );
        let opener = {
            let (fences, log) = (Arc::clone(&fences), Arc::clone(&log));
            std::thread::spawn(move || {
                let opened = fences.open(ino, || Ok::<_, ()>(Some(()))).unwrap();
                log.lock().unwrap().push("opened");
                assert!(opened.is_some());
            })
        };
        end_first(&log);
        fences.release([ino]);
        opener.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["first ends", "opened"]);
        // A move that may not: nothing held.
        assert!(!fences.hold(ino, || false));
        assert!(
            fences
                .open(ino, || Ok::<_, ()>(Some(())))
                .unwrap()
                .is_some()
        );
    }
}
