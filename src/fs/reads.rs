//! Reads of unreal files, event-driven: a FUSE read of bytes the cache
//! lacks subscribes to the fetches of its chunks ([`crate::cache::chunks`])
//! and returns the worker; it is answered by the thread that stores its
//! last chunk, from the Real when the file became real meanwhile, or at
//! its deadline (`net.timeout`) with EHOSTUNREACH (EIO when the last
//! failure was bytes that did not verify). Fetching, verifying and storing
//! chunks is [`super::unreal`]'s.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::waits::{ReadDone, with_read_buffer};
use super::{Error, Fs, Result, lock};
use crate::cache::chunks::{Chunks, Failure};
use crate::cache::fetch::{READAHEAD, RETRY, error};
use crate::store::cache::CHUNK;
use crate::sync::unreal::UnrealFile;

/// A FUSE read of an unreal file that waits for chunks: answered by the
/// thread that stores its last chunk, or at its deadline.
struct PendingRead {
    /// `fuse.waiting` of `/.ctl/stats`, counting this read while it waits.
    waiting: Arc<AtomicU64>,
    uf: Arc<UnrealFile>,
    offset: u64,
    len: usize,
    deadline: Instant,
    state: Mutex<PendingState>,
}

struct PendingState {
    /// Taken by whoever answers first.
    done: Option<ReadDone>,
    /// The deadline's timer, once the read had to wait.
    timer: Option<tokio::task::AbortHandle>,
    /// The chunk it waits for now.
    chunk: u64,
    /// The last failure of a chunk it waited for.
    failure: Option<Failure>,
    /// A piece read back from the cache did not match once already.
    damaged: bool,
}

impl PendingRead {
    fn answered(&self) -> bool {
        lock(&self.state).done.is_none()
    }

    /// Answers the read, unless it was answered already.
    fn finish(&self, result: Result<&[u8]>) {
        let (done, timer) = {
            let mut state = lock(&self.state);
            (state.done.take(), state.timer.take())
        };
        if let Some(timer) = timer {
            // It waited: no longer.
            timer.abort();
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(done) = done {
            done(result);
        }
    }

    /// The deadline passed: EHOSTUNREACH (EIO when the last failure was
    /// bytes that did not verify); reads of the chunk it waited for fail
    /// at once for [`crate::cache::chunks::GAVE_UP`].
    fn expire(&self, chunks: &Chunks) {
        let (chunk, failure) = {
            let state = lock(&self.state);
            let failure = state.failure.clone().unwrap_or_else(|| {
                Failure::unreachable("no holder sent the bytes within net.timeout")
            });
            (state.chunk, failure)
        };
        chunks.give_up((self.uf.blob.hash, chunk), failure.clone());
        self.finish(Err(error(&failure).into()));
    }
}

impl Fs {
    /// Reads up to `len` bytes at `offset` of an unreal file and gives
    /// them to `done`: at once when the cache has them, otherwise once the
    /// chunks it lacks are fetched, or with EHOSTUNREACH when they are not
    /// in by `net.timeout`. The calling thread never waits on the network.
    pub(super) fn read_unreal(&self, uf: Arc<UnrealFile>, offset: u64, len: usize, done: ReadDone) {
        let blob = &uf.blob;
        let end = (offset + len as u64).min(blob.size);
        if offset >= end {
            return done(Ok(&[]));
        }
        let last = (end - 1) / CHUNK;
        let sequential = uf.next.swap(end, Ordering::Relaxed) == offset;
        let count = blob.size.div_ceil(CHUNK);
        if sequential {
            for c in last + 1..(last + 1 + READAHEAD).min(count) {
                if let Err(e) = self.cache.start_chunk(blob, c) {
                    return done(Err(e.into()));
                }
            }
        }
        let pending = Arc::new(PendingRead {
            waiting: Arc::clone(&self.stats.fuse_waiting),
            uf: Arc::clone(&uf),
            offset,
            len: (end - offset) as usize,
            deadline: Instant::now() + self.cache.net_timeout(),
            state: Mutex::new(PendingState {
                done: Some(done),
                timer: None,
                chunk: 0,
                failure: None,
                damaged: false,
            }),
        });
        self.advance(&pending);
    }

    /// Moves a pending read on: subscribes to the first chunk it still
    /// lacks, or reads and answers once it lacks none.
    fn advance(&self, p: &Arc<PendingRead>) {
        if p.answered() {
            return;
        }
        let blob = &p.uf.blob;
        let end = p.offset + p.len as u64;
        for c in p.offset / CHUNK..=(end - 1) / CHUNK {
            let waiter = match self.cache.start_chunk(blob, c) {
                Ok(None) => continue,
                Ok(Some(waiter)) => waiter,
                Err(e) => return p.finish(Err(e.into())),
            };
            if self.read_realized(p) {
                return;
            }
            if let Some(failure) = self.cache.chunks.gave_up(&(blob.hash, c)) {
                return p.finish(Err(error(&failure).into()));
            }
            lock(&p.state).chunk = c;
            self.arm_deadline(p);
            let (me, p) = (self.me.clone(), Arc::clone(p));
            waiter.subscribe(Box::new(move |outcome| {
                let Some(fs) = me.upgrade() else { return };
                match outcome {
                    Ok(()) => fs.advance(&p),
                    Err(failure) if failure.no_space => {
                        p.finish(Err(error(failure).into()));
                    }
                    Err(failure) => {
                        lock(&p.state).failure = Some(failure.clone());
                        // Asked again a little later: a holder may come
                        // back, or another may be connected by then.
                        fs.timers.after(RETRY, move || {
                            if let Some(fs) = me.upgrade() {
                                fs.advance(&p);
                            }
                        });
                    }
                }
            }));
            return;
        }
        let damaged = with_read_buffer(p.len, |buf| {
            match self
                .cache
                .read_verified(&p.uf.file, blob.hash, blob.size, p.offset, buf)
            {
                Ok(Ok(())) => p.finish(Ok(buf)),
                Ok(Err(piece)) => return Some(piece),
                Err(e) => p.finish(Err(e.into())),
            }
            None
        });
        // Damaged on disk: its chunk is marked absent and fetched again,
        // once (outside the buffer, which the next read may take).
        if let Some(piece) = damaged {
            let again = !std::mem::replace(&mut lock(&p.state).damaged, true);
            match self.cache.cache_damaged(blob.hash, piece) {
                Err(e) => p.finish(Err(e.into())),
                Ok(()) if again => self.advance(p),
                Ok(()) => p.finish(Err(Error::Corrupt(
                    "the cache keeps failing verification".into(),
                ))),
            }
        }
    }

    /// Answers `p` from the Real when its file was made real since it was
    /// opened (realized by its mode, copied up by a writer, or claimed by
    /// a pull from the stash) with the same content: its cache file may be
    /// gone, and this peer may be its only holder. False when it is not.
    fn read_realized(&self, p: &PendingRead) -> bool {
        let path = {
            let Ok(txn) = self.store.read() else {
                return false;
            };
            match self.tree.inode(&txn, p.uf.ino) {
                Ok(inode) if !inode.unreal && inode.hash == Some(p.uf.blob.hash) => {
                    match self.tree.real_path(&txn, p.uf.ino) {
                        Ok(path) => path,
                        Err(_) => return false,
                    }
                }
                _ => return false,
            }
        };
        let Ok(file) = self.real.open_file(&path, crate::real::Open::read()) else {
            return false;
        };
        let mut buf = vec![0; p.len];
        match file.read_exact_at(&mut buf, p.offset) {
            Ok(()) => p.finish(Ok(&buf)),
            Err(e) => p.finish(Err(e.into())),
        }
        true
    }

    /// Starts the deadline of a read that has to wait, once.
    fn arm_deadline(&self, p: &Arc<PendingRead>) {
        let mut state = lock(&p.state);
        if state.timer.is_none() && state.done.is_some() {
            p.waiting.fetch_add(1, Ordering::Relaxed);
            let (me, p2) = (self.me.clone(), Arc::clone(p));
            state.timer = Some(self.timers.at(p.deadline, move || {
                if let Some(fs) = me.upgrade() {
                    p2.expire(&fs.cache.chunks);
                }
            }));
        }
    }
}
