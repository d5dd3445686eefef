//! Modes at work (DESIGN.md "Modes and the life of a file"): a background
//! thread realizes the unreal files under a `real` mode and unrealizes
//! the real files under an `unreal` one.
//!
//! Realizing fetches the blob whole into the cache (verified, from its
//! base when it is an edit) and moves it into the Real through the stash,
//! so the Real never holds half a file: a crash leaves the file unreal,
//! or real and whole (reconciliation takes it at the next mount).
//! Unrealizing needs `copies` other holders, each asked first whether it
//! still holds the blob and keeps it ([`Tree::keeps`]); a peer dropping the
//! blob itself says no, so two peers never drop their last two copies at
//! once. The file is hard-linked into the cache, made unreal in LMDB,
//! then unlinked from the Real: a crash between leaves it real. Files that
//! lack holders wait for the next pull.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, Weak};
use std::time::Duration;

use super::{Error, Result, Tree, lock, wait};
use crate::cache::BlobRef;
use crate::ids::BlobHash;
use crate::net::Command;
use crate::net::protocol::Message;
use crate::store::Ino;
use crate::store::namespace::{Kind, Mode};

/// How often jobs that found no peer are tried again without a pull.
const RETRY: Duration = Duration::from_secs(30);

/// Work for the life thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Job {
    /// Look at every file under an entry whose mode changed.
    Scan(Ino),
    /// Realize an unreal file if its mode is real.
    Realize(Ino),
    /// Unrealize a real file if its mode is unreal and it has holders.
    Unrealize(Ino),
}

/// Jobs in order, each once.
#[derive(Default)]
struct Queue {
    order: VecDeque<Job>,
    queued: HashSet<Job>,
}

/// The life thread's queue.
#[derive(Default)]
pub(crate) struct Life {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Real files under an unreal mode that wait for `copies` holders.
    waiting: Mutex<BTreeSet<Ino>>,
    /// Jobs that found no peer: tried again after a pull, or after
    /// [`RETRY`].
    unreachable: Mutex<BTreeSet<Job>>,
    stop: AtomicBool,
}

impl Life {
    /// Stops the thread after its current job.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }
}

impl Tree {
    /// Queues `job` for the life thread.
    pub(crate) fn life_job(&self, job: Job) {
        let mut queue = lock(&self.life.queue);
        if queue.queued.insert(job) {
            queue.order.push_back(job);
        }
        self.life.wake.notify_one();
    }

    /// After a pull: realize the files it brought under a real mode, and
    /// try again the files that waited for holders or a peer.
    pub(crate) fn life_after_pull(&self, real: Vec<Ino>) {
        for ino in real {
            self.life_job(Job::Realize(ino));
        }
        self.life_retry();
    }

    /// Queues again the files waiting for holders or for a peer.
    fn life_retry(&self) {
        let waiting = std::mem::take(&mut *lock(&self.life.waiting));
        for ino in waiting {
            self.life_job(Job::Unrealize(ino));
        }
        let unreachable = std::mem::take(&mut *lock(&self.life.unreachable));
        for job in unreachable {
            self.life_job(job);
        }
    }

    /// The life thread: runs jobs until the mount ends. Errors are logged
    /// and put in `/.ctl/errors`; the file stays as it was.
    pub(crate) fn run_life(fs: Weak<Tree>) {
        // Background work: yield the CPU to requests and rounds.
        // SAFETY: setpriority on this thread's own id has no memory effects.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
        let mut retried = std::time::Instant::now();
        loop {
            let Some(me) = fs.upgrade() else { return };
            if me.life.stop.load(Ordering::Relaxed) {
                return;
            }
            if retried.elapsed() >= RETRY {
                retried = std::time::Instant::now();
                me.life_retry();
                // Kept versions past versions.keep (or over versions.max
                // after the setting changed) go.
                if let Err(e) = me.expire_kept() {
                    tracing::warn!("expiring kept versions: {e}");
                }
            }
            let job = {
                let mut queue = lock(&me.life.queue);
                if queue.order.is_empty() {
                    queue = wait(&me.life.wake, queue, Duration::from_millis(500));
                }
                let job = queue.order.pop_front();
                if let Some(job) = &job {
                    queue.queued.remove(job);
                }
                job
            };
            let Some(job) = job else { continue };
            let outcome = match job {
                Job::Scan(ino) => me.scan(ino),
                Job::Realize(ino) => me.realize_file(ino),
                Job::Unrealize(ino) => me.unrealize_file(ino),
            };
            match outcome {
                Ok(()) => {}
                Err(Error::NotFound(_)) => {} // gone meanwhile
                Err(e) => {
                    // Tried again after the next pull, or within RETRY.
                    if e.unreachable() || e.no_space() {
                        lock(&me.life.unreachable).insert(job);
                    }
                    let label = me.job_label(job);
                    tracing::info!("mode {label}: {e}");
                    me.errors.push("mode", &label, &e);
                }
            }
        }
    }

    /// `realize AREA/PATH` (or `unrealize`, `scan`), for `/.ctl/errors`.
    fn job_label(&self, job: Job) -> String {
        let (verb, ino) = match job {
            Job::Scan(ino) => ("scan", ino),
            Job::Realize(ino) => ("realize", ino),
            Job::Unrealize(ino) => ("unrealize", ino),
        };
        let path = self.store.read().ok().and_then(|txn| {
            let inode = self.inode(&txn, ino).ok()?;
            let area = self.inode(&txn, inode.area).ok()?.name;
            let path = self.area_path(&txn, ino).ok()?;
            Some(format!(
                "{}/{}",
                String::from_utf8_lossy(&area),
                String::from_utf8_lossy(&path)
            ))
        });
        format!("{verb} {}", path.unwrap_or_else(|| format!("inode {ino}")))
    }

    /// Queues every file under `ino` whose state differs from its mode.
    fn scan(&self, ino: Ino) -> Result<()> {
        let txn = self.store.read()?;
        let mode = self.effective_mode(&txn, ino)?.0;
        let mut stack = vec![(ino, self.inode(&txn, ino)?, mode)];
        let mut jobs = Vec::new();
        while let Some((at, inode, mode)) = stack.pop() {
            match (inode.kind, mode, inode.unreal) {
                (Kind::Dir, ..) => {
                    self.store.namespace.children(&txn, at, 0, |_, entry| {
                        if let Some(child) = self.store.namespace.get(&txn, entry.ino)? {
                            let mode = child.mode.unwrap_or(mode);
                            stack.push((entry.ino, child, mode));
                        }
                        Ok(true)
                    })?;
                }
                (Kind::File, Mode::Real, true) => jobs.push(Job::Realize(at)),
                (Kind::File, Mode::Unreal, false) => jobs.push(Job::Unrealize(at)),
                _ => {}
            }
        }
        drop(txn);
        for job in jobs {
            self.life_job(job);
        }
        Ok(())
    }

    /// Realizes unreal file `ino` when its mode is real.
    fn realize_file(&self, ino: Ino) -> Result<()> {
        let txn = self.store.read()?;
        let inode = self.inode(&txn, ino)?;
        if inode.kind != Kind::File || !inode.unreal || inode.parent == Ino::NONE {
            return Ok(());
        }
        if self.effective_mode(&txn, ino)?.0 != Mode::Real {
            return Ok(());
        }
        drop(txn);
        let started = std::time::Instant::now();
        self.copy_up(ino)?;
        self.stats.realized.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "realized inode {ino} ({} bytes) in {:?}",
            inode.size,
            started.elapsed()
        );
        Ok(())
    }

    /// Moves the verified cached `blob` of unreal file `ino` into the Real
    /// (renamed when no other handle reads it, copied otherwise), through
    /// the stash, and notes that this peer holds it. Nothing happens when
    /// the file was changed meanwhile.
    ///
    /// `false` when the verified blob left the cache before it could be
    /// taken (another file of the same blob was realized with it): the
    /// caller fetches it again.
    pub(crate) fn realize_cached(&self, ino: Ino, blob: &BlobRef) -> Result<bool> {
        let hex = crate::format::format_hash(Some(&blob.hash));
        let tmp = self.stash_dir().join(format!("{hex}-realize-{ino}"));
        let cached = self.cache.path(&blob.hash);
        let _ = std::fs::remove_file(&tmp); // left by a crash
        // Checked and taken under the open counts, so the file cannot
        // leave meanwhile: moved when only our handle has it open (no
        // handle opens it meanwhile, see Cache::with_open), hard-linked
        // to be copied otherwise (the copy then runs without the lock).
        let taken = match blob.size {
            0 => {
                crate::private::options()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?;
                Some(true)
            }
            _ => self.cache.with_open(|open| -> Result<Option<bool>> {
                let mut wtxn = self.store.write()?;
                let verified = self.store.cache.verified(&wtxn, &blob.hash)?;
                if !verified {
                    return Ok(None);
                }
                // Nothing verifies the bytes on their way to the Real: a
                // record that speaks of a file its path does not hold
                // (gone, or cut short by a power loss) is forgotten, and
                // the blob fetched again.
                if !self.cache.file_is_whole(&blob.hash, blob.size) {
                    tracing::warn!("cache file of {hex} missing or cut short: fetched again");
                    self.store.cache.remove(&mut wtxn, &blob.hash)?;
                    wtxn.commit()?;
                    return Ok(None);
                }
                if crate::cache::count(open, &blob.hash) > 1 {
                    std::fs::hard_link(&cached, &tmp)?;
                    return Ok(Some(false));
                }
                // The record goes first, as in an eviction: a crash between
                // leaves a file without a record (the stash file goes back
                // to the cache at the next mount), never a record without
                // its file.
                self.store.cache.remove(&mut wtxn, &blob.hash)?;
                wtxn.commit()?;
                self.cache.shrank(blob.size);
                std::fs::rename(&cached, &tmp)?;
                Ok(Some(true))
            })?,
        };
        match taken {
            None => return Ok(false),
            Some(true) => {}
            Some(false) => {
                // A private copy: the link shares the cache file's bytes.
                let copy = self.stash_dir().join(format!("{hex}-realize-{ino}-copy"));
                std::fs::copy(&tmp, &copy)?;
                std::fs::rename(&copy, &tmp)?;
            }
        }
        let mut wtxn = self.store.write()?;
        let mut inode = self.inode(&wtxn, ino)?;
        if !inode.unreal || inode.hash != Some(blob.hash) || inode.parent == Ino::NONE {
            drop(wtxn);
            // Changed meanwhile: the bytes go back to the cache.
            self.stash_to_cache(&tmp, blob.hash)?;
            return Ok(true);
        }
        let file = std::fs::File::options().write(true).open(&tmp)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            inode.perm.into(),
        ))?;
        file.set_modified(inode.mtime.into())?;
        // On disk before the commit that makes the file real: else a power
        // loss could leave it empty, which the next mount would take for
        // an edit and send to every peer.
        file.sync_data()?;
        drop(file);
        let path = self.real_path(&wtxn, ino)?;
        self.real.rename_in(&tmp, &path)?;
        self.own_real(&path, &inode)?;
        inode.unreal = false;
        self.store.namespace.put(&mut wtxn, ino, &inode)?;
        self.hold(&mut wtxn, blob.area, &blob.path, Some(blob.hash))?;
        wtxn.commit()?;
        Ok(true)
    }

    /// Unrealizes real file `ino` when its mode is unreal and `copies`
    /// other holders confirm they keep its blob; otherwise it waits for
    /// the next pull.
    fn unrealize_file(&self, ino: Ino) -> Result<()> {
        let txn = self.store.read()?;
        let inode = self.inode(&txn, ino)?;
        let Some(hash) = inode.hash else {
            return Ok(()); // not recorded yet: the recorder queues it
        };
        if inode.kind != Kind::File || inode.unreal || inode.parent == Ino::NONE {
            return Ok(());
        }
        if self.effective_mode(&txn, ino)?.0 != Mode::Unreal || self.recorder.is_pending(ino) {
            return Ok(());
        }
        let copies: usize = self
            .store
            .config
            .get(&txn, crate::store::config::Key::Copies)?
            .parse()
            .unwrap_or(1);
        let path = self.area_path(&txn, ino)?;
        let area_name = self.inode(&txn, inode.area)?.name;
        let others: Vec<_> = match self.store.versions.get(&txn, inode.area, &path)? {
            Some(record) => record
                .holders_of(hash)
                .filter(|p| *p != self.peer_id)
                .collect(),
            None => Vec::new(),
        };
        drop(txn);
        lock(&self.unreal.dropping).insert(hash);
        let confirmed = others.len() >= copies && {
            let mut yes = 0;
            for peer in others {
                if yes >= copies {
                    break;
                }
                yes += usize::from(self.peer_keeps(peer, &area_name, &path, hash));
            }
            yes >= copies
        };
        let outcome = if confirmed {
            self.drop_real(ino, inode.area, &path, hash)
        } else {
            lock(&self.life.waiting).insert(ino);
            Ok(())
        };
        lock(&self.unreal.dropping).remove(&hash);
        outcome
    }

    /// Starts an open of real file `ino` ([`Fences::open`]): once no
    /// move holds it, counts a writer with the recorder when `writable`,
    /// and tells whether the file was waiting to be recorded then (see
    /// [`Tree::save_before_write`]). `None` when the file was unrealized
    /// meanwhile (the open starts again, unreal).
    ///
    /// [`Fences::open`]: super::fences::Fences::open
    pub(crate) fn arrive(
        &self,
        ino: Ino,
        writable: bool,
    ) -> Result<Option<(super::fences::Opening<'_>, bool)>> {
        let opened = self.fences.open(ino, || -> Result<Option<bool>> {
            let txn = self.store.read()?;
            if self.inode(&txn, ino)?.unreal {
                return Ok(None);
            }
            Ok(Some(writable && self.recorder.opened_for_write(ino)))
        })?;
        Ok(opened.map(|(unrecorded, opening)| (opening, unrecorded)))
    }

    /// Whether real file `ino`, just opened for reading (its handle
    /// counted), is still real once any unrealize of it has finished:
    /// `false` when it was unrealized meanwhile, and the handle holds a
    /// file that is the cache's now (the open starts again).
    pub(crate) fn reader_stays(&self, ino: Ino) -> Result<bool> {
        self.fences.wait_moves(ino);
        let txn = self.store.read()?;
        Ok(!self.inode(&txn, ino)?.unreal)
    }

    /// Asks `peer` whether it holds `hash` at `path` and keeps it.
    fn peer_keeps(
        &self,
        peer: crate::ids::PeerId,
        area: &[u8],
        path: &[u8],
        hash: BlobHash,
    ) -> bool {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let request = Message::Holds {
            area: area.to_vec(),
            path: path.to_vec(),
            hash,
        };
        if !self.household.send(Command::Ask {
            peer,
            request,
            done: tx,
        }) {
            return false;
        }
        matches!(
            rx.recv_timeout(self.cache.net_timeout() + Duration::from_secs(1)),
            Ok(Ok(Message::Held { held: true }))
        )
    }

    /// Moves real file `ino` (blob `hash`) into the cache: hard link, LMDB,
    /// unlink.
    fn drop_real(&self, ino: Ino, area: Ino, path: &[u8], hash: BlobHash) -> Result<()> {
        // An open handle keeps its file real: a handle left on the old
        // file would be shared (passthrough) by the file's next opens,
        // after a write made it real again.
        let held = self.fences.hold(ino, || {
            !self.cache.chunks.fetching(&hash)
                && !self.recorder.is_pending(ino)
                && self.open_file(ino).is_none()
        });
        if !held {
            lock(&self.life.waiting).insert(ino);
            return Ok(());
        }
        let outcome = self.move_to_cache(ino, area, path, hash);
        self.fences.release([ino]);
        outcome
    }

    /// The moves of [`Tree::drop_real`], writers held off. The real file is
    /// hard-linked into the stash first, out of any reader's sight; the
    /// link takes the blob's cache path only inside [`Cache::with_open`],
    /// when no handle has the blob open and no fetch fills it (a reader of
    /// a partly fetched copy keeps its file; the unrealize waits), in the
    /// transaction that makes the file unreal. So a cache file that a
    /// handle reads is never replaced, and a real file is never shared
    /// with a cache path that fetches write into.
    ///
    /// [`Cache::with_open`]: crate::cache::Cache::with_open
    fn move_to_cache(&self, ino: Ino, area: Ino, path: &[u8], hash: BlobHash) -> Result<()> {
        let txn = self.store.read()?;
        let real = self.real_path(&txn, ino)?;
        let had = self.store.cache.get(&txn, &hash)?.filter(|c| c.verified);
        drop(txn);
        let link = match had {
            Some(_) => None,
            None => {
                let link = self.stash_dir().join(format!("{hash}-unrealize-{ino}"));
                let _ = std::fs::remove_file(&link); // left by a crash
                self.real.link_out(&real, &link)?;
                Some(link)
            }
        };
        // Lock order: the open counts, the chunk waiters, then LMDB.
        let done = self.cache.with_open(|open| -> Result<Option<u64>> {
            let busy = crate::cache::count(open, &hash) > 0 || self.cache.chunks.fetching(&hash);
            let mut wtxn = self.store.write()?;
            let mut inode = self.inode(&wtxn, ino)?;
            // Renamed or removed since it was linked: the link may not be
            // the file that path shows now; the next scan tries again.
            let moved = inode.parent == Ino::NONE || self.real_path(&wtxn, ino)? != real;
            if moved || inode.unreal || inode.hash != Some(hash) || self.recorder.is_pending(ino) {
                return Ok(None);
            }
            if link.is_some() && busy {
                lock(&self.life.waiting).insert(ino);
                return Ok(None);
            }
            if let Some(link) = &link {
                std::fs::rename(link, self.cache.path(&hash))?;
                let record = crate::store::cache::Cached::whole(inode.size);
                self.store.cache.put(&mut wtxn, &hash, &record)?;
            }
            inode.unreal = true;
            self.store.namespace.put(&mut wtxn, ino, &inode)?;
            self.hold(&mut wtxn, area, path, None)?;
            wtxn.commit()?;
            Ok(Some(inode.size))
        });
        let size = match done {
            Ok(Some(size)) => size,
            other => {
                if let Some(link) = &link {
                    std::fs::remove_file(link).or_else(super::remote::missing_ok)?;
                }
                return other.map(|_| ());
            }
        };
        self.real.remove_file(&real)?;
        tracing::debug!("unrealized inode {ino} at {real}");
        self.stats.unrealized.fetch_add(1, Ordering::Relaxed);
        if link.is_some()
            && let Err(e) = self.cache.cache_grew(size)
        {
            tracing::warn!("keeping the cache within its bound: {e}");
        }
        Ok(())
    }

    /// Makes sure `bytes` more fit on the disk of DATA above
    /// `cache.min_free`, evicting cached blobs first: ENOSPC when even an
    /// empty cache would not do.
    pub(crate) fn make_room(&self, bytes: u64) -> Result<()> {
        let (_, min_free, free) = self.cache.cache_limits()?;
        let need = bytes.saturating_add(min_free);
        if free >= need {
            return Ok(());
        }
        // A size no eviction can make room for (a peer may claim any)
        // fails before anything is evicted.
        if free.saturating_add(self.cache.counted_bytes()?) < need {
            return Err(Error::NoSpace(format!(
                "{bytes} bytes do not fit even with the cache emptied: {free} free on the disk of DATA, cache.min_free {min_free}"
            )));
        }
        self.cache.evict_bytes(need - free)?;
        let (_, _, free) = self.cache.cache_limits()?;
        if free >= need {
            return Ok(());
        }
        Err(Error::NoSpace(format!(
            "{bytes} bytes do not fit: {free} free on the disk of DATA, cache.min_free {min_free}"
        )))
    }
}
