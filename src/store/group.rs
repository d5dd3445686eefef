//! Group commit: small write transactions from many threads run in one
//! LMDB transaction and share its commit, so its flush to disk
//! (`NO_META_SYNC`: one `fdatasync` per commit) is paid once for all of
//! them. For records that come in bursts from several threads, as the
//! cache's record of each chunk fetched.
//!
//! The first caller that finds no commit under way leads: it takes every
//! transaction queued, runs them in order in one write transaction,
//! commits, and hands each caller its result. The others wait for theirs.
//! When one of them fails, the transaction is dropped and every one of
//! the group fails with it (nothing of it was written).

use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{Error, Result, RwTxn, Store};

/// The transactions waiting for the next commit, and whether a caller is
/// leading one.
#[derive(Default)]
pub(super) struct Group {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    queue: Vec<Box<dyn Grouped>>,
    leading: bool,
}

/// One queued transaction, its result kept until the commit.
trait Grouped: Send {
    /// Runs the transaction's work; false when it failed.
    fn run(&mut self, store: &Store, wtxn: &mut RwTxn) -> bool;
    /// Hands the caller its result, or `failed` when the group did not
    /// commit.
    fn finish(self: Box<Self>, failed: Option<&str>);
}

struct Job<T, F> {
    work: Option<F>,
    out: Option<Result<T>>,
    reply: SyncSender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Store, &mut RwTxn) -> Result<T> + Send> Grouped for Job<T, F> {
    fn run(&mut self, store: &Store, wtxn: &mut RwTxn) -> bool {
        let Some(work) = self.work.take() else {
            return true;
        };
        let out = work(store, wtxn);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, failed: Option<&str>) {
        let result = match (failed, self.out) {
            (None, Some(out)) => out,
            (_, Some(Err(e))) => Err(e),
            (failed, _) => Err(Error::Io(std::io::Error::other(format!(
                "a transaction of the same commit failed: {}",
                failed.unwrap_or("not run")
            )))),
        };
        // The caller waits on its receiver until it has this.
        let _ = self.reply.send(result);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Runs `work` in a write transaction shared with the other callers
    /// of this function at the moment, committed once (see the module
    /// doc). Its errors, and those of the commit, are returned; so is an
    /// error when another transaction of the group failed.
    pub fn write_grouped<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store, &mut RwTxn) -> Result<T> + Send + 'static,
    {
        let (reply, result) = sync_channel(1);
        let mut state = lock(&self.group.state);
        state.queue.push(Box::new(Job {
            work: Some(work),
            out: None,
            reply,
        }));
        loop {
            if let Ok(out) = result.try_recv() {
                return out;
            }
            if state.leading {
                state = self
                    .group
                    .done
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            state.leading = true;
            let jobs = std::mem::take(&mut state.queue);
            drop(state);
            self.commit_group(jobs);
            state = lock(&self.group.state);
            state.leading = false;
            self.group.done.notify_all();
        }
    }

    /// Runs `jobs` in one transaction, commits, and hands out the results.
    fn commit_group(&self, mut jobs: Vec<Box<dyn Grouped>>) {
        let committed = self.write().and_then(|mut wtxn| {
            if jobs.iter_mut().all(|job| job.run(self, &mut wtxn)) {
                Ok(wtxn.commit()?)
            } else {
                Err(Error::Io(std::io::Error::other("one of them failed")))
            }
        });
        let failed = committed.err().map(|e| e.to_string());
        for job in jobs {
            job.finish(failed.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::store::{Error, Ino, Store};

    #[test]
    fn grouped_transactions_from_many_threads_all_commit_and_one_failure_fails_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let n = t * 1000 + i;
                        let got = store
                            .write_grouped(move |store, wtxn| {
                                store.xattrs.put(wtxn, Ino(n), b"n", &n.to_be_bytes())?;
                                Ok(n)
                            })
                            .unwrap();
                        assert_eq!(got, n);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let txn = store.read().unwrap();
        for t in 0..8u64 {
            for i in 0..50u64 {
                let n = t * 1000 + i;
                let value = store.xattrs.get(&txn, Ino(n), b"n").unwrap();
                assert_eq!(value, Some(n.to_be_bytes().to_vec()));
            }
        }
        drop(txn);
        // Alone in its group, a failing transaction writes nothing.
        let failed = store.write_grouped(|store, wtxn| -> crate::store::Result<()> {
            store.xattrs.put(wtxn, Ino(1), b"lost", b"1")?;
            Err(Error::Corrupt("on purpose"))
        });
        assert!(matches!(failed, Err(Error::Corrupt("on purpose"))));
        let txn = store.read().unwrap();
        assert_eq!(store.xattrs.get(&txn, Ino(1), b"lost").unwrap(), None);
    }
}
