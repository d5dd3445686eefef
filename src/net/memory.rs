//! An in-memory household: cores of one process joined without QUIC, for
//! tests of the core without FUSE or sockets (mountpoint-s3's reftests do
//! the same for its file-system core).
//!
//! [`MemoryNet::join`] attaches a core's command channel, as
//! [`super::endpoint::Network::start`] does; its commands are answered by
//! calling the other cores through [`Core`], the same trait the QUIC
//! network serves them with. A round is the same two pulls as in
//! [`super::rounds`]; fetches ask the holders in order. Links can be cut
//! ([`MemoryNet::cut`]) to play a peer that went away. Of the automatic
//! rounds, those of `consensus.immediate` (a rename, a delete) run at once,
//! as the QUIC network's schedule runs them; the others wait for a round
//! the test asks for.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use super::core::Core;
use super::protocol::Message;
use super::rounds::RoundResult;
use super::{Command, ConnectError, Fetch, FetchOutcome, PeerState, RequestError};
use crate::ids::PeerId;

/// Cores joined in one process.
pub struct MemoryNet {
    runtime: tokio::runtime::Runtime,
    cores: Mutex<HashMap<PeerId, Weak<dyn Core>>>,
    /// Links cut by [`MemoryNet::cut`], as (smaller id, larger id).
    cut: Mutex<HashSet<(PeerId, PeerId)>>,
}

fn pair(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a < b { (a, b) } else { (b, a) }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryNet {
    /// An empty household with its own runtime (two worker threads).
    pub fn new() -> std::io::Result<Arc<MemoryNet>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("memory-net")
            .build()?;
        Ok(Arc::new(MemoryNet {
            runtime,
            cores: Mutex::new(HashMap::new()),
            cut: Mutex::new(HashSet::new()),
        }))
    }

    /// Joins `core`, known to the others as `id`: its commands are served
    /// from now on, and every joined peer it trusts is shown connected.
    pub fn join(self: &Arc<Self>, id: PeerId, core: Arc<dyn Core>) {
        let (commands, mut receiver) = mpsc::unbounded_channel();
        core.household().attach(commands);
        locked(&self.cores).insert(id, Arc::downgrade(&core));
        // Weak: the household must not outlive its last user through its
        // own task (dropping its runtime from a task of that runtime
        // panics).
        let me = Arc::downgrade(self);
        self.runtime.spawn(async move {
            while let Some(command) = receiver.recv().await {
                let Some(me) = me.upgrade() else { break };
                // On the blocking pool: cores block on LMDB and disks.
                tokio::task::spawn_blocking(move || me.serve(id, command));
            }
        });
        self.refresh();
    }

    /// Cuts (`true`) or mends the link between `a` and `b`.
    pub fn cut(&self, a: PeerId, b: PeerId, cut: bool) {
        match cut {
            true => locked(&self.cut).insert(pair(a, b)),
            false => locked(&self.cut).remove(&pair(a, b)),
        };
        self.refresh();
    }

    /// Shows each core's peers connected or offline as the links are.
    fn refresh(&self) {
        let cores: Vec<(PeerId, Arc<dyn Core>)> = locked(&self.cores)
            .iter()
            .filter_map(|(id, c)| c.upgrade().map(|c| (*id, c)))
            .collect();
        for (id, core) in &cores {
            for (other, _) in &cores {
                if other != id {
                    let state = match self.linked(*id, *other) {
                        true => PeerState::Connected,
                        false => PeerState::Offline,
                    };
                    core.household().set_state(*other, state);
                }
            }
        }
    }

    /// The core `to`, when `from` can reach it.
    fn reach(&self, from: PeerId, to: PeerId) -> Result<Arc<dyn Core>, RequestError> {
        let core = locked(&self.cores).get(&to).and_then(Weak::upgrade);
        match core {
            Some(core) if self.linked(from, to) => Ok(core),
            _ => Err(RequestError::Unreachable(format!("{to} is not connected"))),
        }
    }

    fn linked(&self, a: PeerId, b: PeerId) -> bool {
        let known = locked(&self.cores).contains_key(&b);
        known && !locked(&self.cut).contains(&pair(a, b))
    }

    /// Answers one command of core `id`.
    fn serve(&self, id: PeerId, command: Command) {
        tracing::debug!("{id}: {command:?}");
        let Some(core) = locked(&self.cores).get(&id).and_then(Weak::upgrade) else {
            return;
        };
        match command {
            Command::Connect { peer, done } => {
                let outcome = self
                    .reach(id, peer)
                    .map(|_| ())
                    .map_err(|e| ConnectError::Unreachable(e.to_string()));
                let _ = done.try_send(outcome);
            }
            Command::Disconnect { .. } | Command::PeersChanged => {}
            Command::Changed { area, kind } => {
                let immediate = core.policy().immediate;
                if immediate.split(',').any(|k| k == kind.as_str()) {
                    self.rounds(id, &core, None, Some(area));
                }
            }
            Command::Consensus { peer, area, done } => {
                let _ = done.try_send(self.rounds(id, &core, peer, area));
            }
            Command::Fetch(fetch) => self.fetch(id, fetch),
            Command::Ask {
                peer,
                request,
                done,
            } => {
                let answer = match request {
                    Message::Holds { area, path, hash } => self
                        .reach(id, peer)
                        .and_then(|other| other.holds(id, &area, &path, hash))
                        .map(|held| Message::Held { held }),
                    other => Err(RequestError::Refused(format!(
                        "{other:?} is not asked through Ask"
                    ))),
                };
                let _ = done.try_send(answer);
            }
        }
    }

    /// Rounds of `me` with every peer (or `only`) for every area it shares
    /// with it (or `only_area`).
    fn rounds(
        &self,
        me: PeerId,
        core: &Arc<dyn Core>,
        only: Option<PeerId>,
        only_area: Option<Vec<u8>>,
    ) -> Vec<(PeerId, Vec<u8>, RoundResult)> {
        let mut results = Vec::new();
        for (p, a) in core.shared_areas().unwrap_or_default() {
            if only.is_none_or(|o| o == p) && only_area.as_ref().is_none_or(|x| *x == a) {
                let result = self.round(me, core, p, &a);
                core.household().note_round(p, a.clone(), result.clone());
                results.push((p, a, result));
            }
        }
        results
    }

    /// A round of `me` (core `core`) with `peer` for `area`: `me` pulls,
    /// then `peer` pulls.
    fn round(&self, me: PeerId, core: &Arc<dyn Core>, peer: PeerId, area: &[u8]) -> RoundResult {
        let mut result = RoundResult::now(Ok(()));
        result.outcome = self.reach(me, peer).and_then(|other| {
            let (received, c1) = pull(core, me, &other, peer, area)?;
            let (sent, c2) = pull(&other, peer, core, me, area)?;
            (result.received, result.sent, result.conflicts) = (received, sent, c1.max(c2));
            Ok(())
        });
        result.time = std::time::SystemTime::now();
        core.round_ended(result.conflicts);
        result
    }

    /// Asks the holders of `fetch` in order; the first answer wins.
    fn fetch(&self, me: PeerId, fetch: Fetch) {
        let mut passed_over = Vec::new();
        let mut last = RequestError::Unreachable("no holder is connected".into());
        for holder in fetch.holders {
            let answer = self
                .reach(me, holder)
                .and_then(|other| other.read_blob(me, &fetch.range, fetch.outboard));
            tracing::debug!(
                "{me} fetches {} bytes at {} from {holder}: {:?}",
                fetch.range.len,
                fetch.range.offset,
                answer.as_ref().map(Vec::len)
            );
            match answer {
                Ok(bytes) => {
                    return (fetch.done)(FetchOutcome {
                        result: Ok((holder, bytes)),
                        passed_over,
                    });
                }
                Err(e) => {
                    if !matches!(e, RequestError::Unreachable(_)) {
                        passed_over.push(holder);
                    }
                    last = e;
                }
            }
        }
        (fetch.done)(FetchOutcome {
            result: Err(last),
            passed_over,
        })
    }
}

/// `to` (known as `to_id`) pulls `area` from `from` (known as `from_id`),
/// page by page, then asks once more so that `from` learns all was
/// applied: (records applied, conflicts).
fn pull(
    to: &Arc<dyn Core>,
    to_id: PeerId,
    from: &Arc<dyn Core>,
    from_id: PeerId,
    area: &[u8],
) -> Result<(u64, u64), RequestError> {
    let mut pull = to.begin_pull(from_id, area)?;
    let mut since = pull.since();
    let outcome = loop {
        match from.changes(to_id, area, since) {
            Ok(page) if page.records.is_empty() => break Ok(()),
            Ok(page) => {
                since = page.last;
                if let Err(e) = pull.apply(page.last, page.records) {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let counts = pull.finish()?;
    outcome.map(|()| counts)
}
