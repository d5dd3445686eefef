//! Requests that wait on peers, without a FUSE worker waiting with them
//! (DESIGN.md "Waiting on peers").
//!
//! A request whose answer may need the network (a read of missing bytes,
//! a copy-up open or truncate, a control command such as `now`, `connect`
//! or `fetch NAME`) takes a [`Done`] (or a [`ReadDone`]) instead of
//! returning its answer. The FUSE worker that called it returns at once;
//! the answer is given later by whichever thread finishes the work:
//! - reads of unreal files are event-driven: they subscribe to the chunk
//!   fetches they need and are answered by the thread that stores the last
//!   one, or by a [`Timers`] deadline (`net.timeout`) with EHOSTUNREACH;
//! - the longer composite commands run on a thread of their own
//!   ([`super::Fs::later`]), where waiting is allowed.
//!
//! Answers known at once are given on the calling thread, before the call
//! returns.

use std::time::{Duration, Instant};

use super::Result;

/// Where the answer to a request goes: called exactly once, on the
/// calling thread when the answer is known at once, later on another
/// thread when it waits on peers.
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// Where the bytes of a read go: called exactly once with the bytes read
/// (fewer than asked only at the end of the file) or the error.
pub type ReadDone = Box<dyn for<'a> FnOnce(Result<&'a [u8]>) + Send>;

thread_local! {
    /// Each thread's buffer for reads, reused across requests (a fresh one
    /// per request costs an mmap and page faults).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's read buffer, at least `len` bytes long and
/// cut to `len`.
pub(super) fn with_read_buffer<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        f(&mut buf[..len])
    })
}

/// Deadlines and delayed retries of waiting requests: a small tokio
/// runtime on a thread of its own. Callbacks run on its blocking pool, so
/// a slow one (reading the cache, answering the kernel) delays no timer.
pub struct Timers {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Timers {
    /// Starts the timer thread (`timers`).
    pub fn start() -> std::io::Result<Timers> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .thread_name("waits")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("timers".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
                runtime.shutdown_background();
            })?;
        Ok(Timers {
            handle,
            stop: Some(stop),
        })
    }

    /// Runs `f` at `when` (at once when it is past); the returned handle
    /// cancels it when `f` has not started yet.
    pub fn at(&self, when: Instant, f: impl FnOnce() + Send + 'static) -> tokio::task::AbortHandle {
        self.handle
            .spawn(async move {
                tokio::time::sleep_until(when.into()).await;
                let _ = tokio::task::spawn_blocking(f).await;
            })
            .abort_handle()
    }

    /// Runs `f` after `delay`.
    pub fn after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        self.at(Instant::now() + delay, f);
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Calls `start` with a [`Done`] and waits for its answer: for callers
/// that may wait (tests, the life thread), never a FUSE worker. An answer
/// dropped without being given is EIO.
pub fn wait_for<T: Send + 'static>(start: impl FnOnce(Done<T>)) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(Box::new(move |result| {
        let _ = tx.send(result);
    }));
    rx.recv().unwrap_or_else(|_| {
        Err(super::Error::Io(std::io::Error::from_raw_os_error(
            libc::EIO,
        )))
    })
}

/// Like [`wait_for`], for a read: the bytes it gave.
pub fn wait_for_read(start: impl FnOnce(ReadDone)) -> Result<Vec<u8>> {
    wait_for(|done: Done<Vec<u8>>| start(Box::new(move |bytes| done(bytes.map(<[u8]>::to_vec)))))
}
