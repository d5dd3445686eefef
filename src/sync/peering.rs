//! The core as the network sees it: [`crate::net::core::Core`] over the
//! tree. Every answer for a peer first checks that the area is
//! shared with it; what it serves is read and checked here (see
//! [`Tree::read_held`]), what it applies is merged here (see
//! [`Tree::apply_remote`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Tree;
use super::remote::Pull;
use crate::ids::{BlobHash, PeerId, Seq};
use crate::net::core::{AreaPull, Core, KnownPeer, Page, Policy};
use crate::net::protocol::{BlobRange, MAX_MESSAGE, MAX_RECORDS};
use crate::net::{Household, Offers, RequestError};
use crate::store::Ino;
use crate::store::config::Key;
use crate::store::namespace::Timestamp;
use crate::store::versions::PathRecord;

fn local<E: std::fmt::Display>(e: E) -> RequestError {
    RequestError::Local(e.to_string())
}

impl Tree {
    /// The area `name` when it is shared with `peer`; refused otherwise,
    /// so that nothing of an area leaves for a peer it is not shared with.
    fn area_shared_with(&self, peer: PeerId, name: &[u8]) -> Result<Ino, RequestError> {
        let not_shared = || RequestError::Refused("area not shared".into());
        let ino = self
            .area_named(name, false)
            .map_err(local)?
            .ok_or_else(not_shared)?;
        let txn = self.store.read().map_err(local)?;
        match self.store.areas.get(&txn, ino).map_err(local)? {
            Some(area) if area.shares.contains(&peer) => Ok(ino),
            _ => Err(not_shared()),
        }
    }

    /// Notes that `peer` applied `area`'s feed up to `since` (all of it,
    /// when `caught_up`) and trims the history every sharing peer applied.
    fn acknowledge(
        &self,
        peer: PeerId,
        area: Ino,
        since: Seq,
        caught_up: bool,
    ) -> super::Result<()> {
        let mut wtxn = self.store.write()?;
        if let Some(mut record) = self.store.areas.get(&wtxn, area)? {
            // Caught up with the whole feed: every op so far is applied
            // there (ops are numbered after the versions they made).
            let ack = if caught_up { record.last_seq } else { since };
            if record.acked.get(&peer) == Some(&ack) {
                // Nothing new: no commit (and no flush for the next page).
                return Ok(());
            }
            record.acked.insert(peer, ack);
            let horizon = record
                .shares
                .iter()
                .map(|p| record.acked.get(p).copied().unwrap_or(Seq::ZERO))
                .min()
                .unwrap_or(Seq::ZERO);
            self.store.history.trim(&mut wtxn, area, horizon)?;
            self.store.areas.put(&mut wtxn, area, &record)?;
        }
        wtxn.commit()?;
        Ok(())
    }
}

/// How long a pull waits for another pull of its area to end.
const PULL_WAIT: Duration = Duration::from_secs(60);

/// A pull of one area from one peer (see [`AreaPull`]); the only one of
/// its area while it lives ([`Tree::pulling`]).
struct PullOf {
    fs: Arc<Tree>,
    area: Ino,
    peer: PeerId,
    since: Seq,
    pull: Pull,
}

impl Tree {
    /// Waits until no pull applies to `area`, then marks it pulled;
    /// [`PullOf`]'s drop unmarks it. Fails after [`PULL_WAIT`].
    fn claim_area(&self, area: Ino) -> Result<(), RequestError> {
        let deadline = std::time::Instant::now() + PULL_WAIT;
        let mut pulling = crate::sync::lock(&self.pulling);
        while pulling.contains(&area) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(RequestError::Local(
                    "another pull of the area did not end".into(),
                ));
            }
            pulling = self
                .pull_ended
                .wait_timeout(pulling, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        pulling.insert(area);
        Ok(())
    }
}

impl Drop for PullOf {
    fn drop(&mut self) {
        crate::sync::lock(&self.fs.pulling).remove(&self.area);
        self.fs.pull_ended.notify_all();
    }
}

impl AreaPull for PullOf {
    fn since(&self) -> Seq {
        self.since
    }

    fn apply(
        &mut self,
        last: Seq,
        records: Vec<(Vec<u8>, PathRecord)>,
    ) -> Result<(), RequestError> {
        self.fs
            .apply_remote(self.area, self.peer, last, records, &mut self.pull)
            .map_err(local)
    }

    fn finish(mut self: Box<Self>) -> Result<(u64, u64), RequestError> {
        let counts = (self.pull.applied, self.pull.conflicts);
        let pull = std::mem::take(&mut self.pull);
        self.fs.finish_pull(pull).map_err(local)?;
        Ok(counts)
    }
}

impl Core for Tree {
    fn household(&self) -> &Household {
        &self.household
    }

    fn net_timeout(&self) -> Duration {
        self.cache.net_timeout()
    }

    fn policy(&self) -> Policy {
        let defaults = Policy {
            immediate: String::new(),
            rest: Duration::from_secs(10),
            interval: Duration::ZERO,
        };
        let read = || -> super::Result<Policy> {
            let txn = self.store.read()?;
            let config = &self.store.config;
            Ok(Policy {
                immediate: config.get(&txn, Key::ConsensusImmediate)?,
                rest: config.duration(&txn, Key::ConsensusRest)?,
                interval: config.duration(&txn, Key::ConsensusInterval)?,
            })
        };
        read().unwrap_or(defaults)
    }

    fn name(&self) -> Result<String, RequestError> {
        let txn = self.store.read().map_err(local)?;
        self.store.config.get(&txn, Key::Name).map_err(local)
    }

    fn peers(&self) -> Result<Vec<KnownPeer>, RequestError> {
        let txn = self.store.read().map_err(local)?;
        let peers = self.store.peers.all(&txn).map_err(local)?;
        Ok(peers
            .into_iter()
            .map(|(id, record)| KnownPeer {
                id,
                addr: record.addr,
            })
            .collect())
    }

    fn seen(&self, peer: PeerId, name: Option<String>) -> Result<(), RequestError> {
        let mut wtxn = self.store.write().map_err(local)?;
        if let Some(mut record) = self.store.peers.get(&wtxn, &peer).map_err(local)? {
            record.last_seen = Some(Timestamp::now());
            if let Some(name) = name.filter(|_| record.name == "-") {
                record.name = name;
            }
            self.store
                .peers
                .put(&mut wtxn, &peer, &record)
                .map_err(local)?;
            wtxn.commit().map_err(local)?;
        }
        Ok(())
    }

    fn offers(&self, peer: PeerId) -> Result<Offers, RequestError> {
        // Sequence numbers a peer learns are on disk first (see changes).
        self.store.sync_committed().map_err(local)?;
        Tree::offers(self, peer).map_err(local)
    }

    fn shared_areas(&self) -> Result<Vec<(PeerId, Vec<u8>)>, RequestError> {
        Tree::shared_areas(self).map_err(local)
    }

    fn has_area(&self, area: &[u8]) -> Result<bool, RequestError> {
        Ok(self.area_named(area, false).map_err(local)?.is_some())
    }

    fn round_needed(&self, peer: PeerId, area: &[u8], theirs: Seq) -> Result<bool, RequestError> {
        Tree::round_needed(self, peer, area, theirs).map_err(local)
    }

    fn changes(&self, peer: PeerId, area: &[u8], since: Seq) -> Result<Page, RequestError> {
        let ino = self.area_shared_with(peer, area)?;
        // LMDB runs without a sync per commit: what a page carries (feed
        // numbers, version counters) is flushed before it leaves, so that
        // after a power loss this peer never numbers a new change with a
        // number a peer already holds (realize.7 "Durability").
        self.store.sync_committed().map_err(local)?;
        let found = {
            let txn = self.store.read().map_err(local)?;
            self.store
                .versions
                .changed_since(&txn, ino, since, MAX_RECORDS)
                .map_err(local)?
        };
        self.acknowledge(peer, ino, since, found.is_empty())
            .map_err(local)?;
        // Cut to fit a frame.
        let mut page = Page {
            records: Vec::with_capacity(found.len()),
            last: since,
            more: found.len() == MAX_RECORDS,
        };
        let mut size = 0;
        for (seq, path, record) in found {
            if !crate::net::protocol::valid_path(&path) {
                // A peer would refuse the whole page: this path stays here.
                tracing::warn!(
                    "not sending {} bytes of path in {}: over the protocol's bound",
                    path.len(),
                    String::from_utf8_lossy(area)
                );
                page.last = seq;
                continue;
            }
            size += postcard::to_stdvec(&record).map_err(local)?.len() + path.len() + 8;
            if size > MAX_MESSAGE / 2 && !page.records.is_empty() {
                page.more = true;
                break;
            }
            page.records.push((path, record));
            page.last = seq;
        }
        Ok(page)
    }

    fn begin_pull(&self, peer: PeerId, area: &[u8]) -> Result<Box<dyn AreaPull>, RequestError> {
        let ino = self.area_shared_with(peer, area)?;
        let fs = self
            .me
            .upgrade()
            .ok_or_else(|| RequestError::Local("the mount is ending".into()))?;
        self.claim_area(ino)?;
        // From here its drop ends the claim.
        let mut pull = PullOf {
            fs,
            area: ino,
            peer,
            since: Seq::ZERO,
            pull: Pull::default(),
        };
        // Read once the area is this pull's: one that just ended moved it.
        let txn = self.store.read().map_err(local)?;
        pull.since = self
            .store
            .areas
            .get(&txn, ino)
            .map_err(local)?
            .and_then(|r| r.received.get(&peer).copied())
            .unwrap_or(Seq::ZERO);
        Ok(Box::new(pull))
    }

    fn read_blob(
        &self,
        peer: PeerId,
        range: &BlobRange,
        outboard: bool,
    ) -> Result<Vec<u8>, RequestError> {
        let ino = self.area_shared_with(peer, &range.area)?;
        let not_held = || RequestError::Refused("blob not held here".into());
        if outboard {
            return self
                .outboard_held(ino, &range.path, range.hash, range.offset, range.len)
                .map_err(local)?
                .ok_or_else(not_held);
        }
        self.read_held(ino, &range.path, range.hash, range.offset, range.len)
            .map_err(local)?
            .ok_or_else(not_held)
    }

    fn holds(
        &self,
        peer: PeerId,
        area: &[u8],
        path: &[u8],
        hash: BlobHash,
    ) -> Result<bool, RequestError> {
        let ino = self.area_shared_with(peer, area)?;
        let keeps = self.keeps(ino, path, hash).map_err(local)?;
        if keeps {
            // The peer may drop its copy on this answer: the holding that
            // made it is on disk first.
            self.store.sync_committed().map_err(local)?;
        }
        Ok(keeps)
    }

    fn round_ended(&self, conflicts: u64) {
        self.stats.consensus_rounds.fetch_add(1, Ordering::Relaxed);
        self.stats.conflicts.fetch_add(conflicts, Ordering::Relaxed);
    }
}
