//! Rounds of consensus (DESIGN.md "Sync") over the requests of
//! [`super::requests`].
//!
//! A round with a peer, for one area both share with each other, is two
//! pulls: this peer asks for the peer's changes since the last it applied
//! ([`Message::Changes`], page by page, then once more so the peer learns
//! everything was applied), then asks the peer to pull in turn
//! ([`Message::Pull`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::endpoint::Manager;
use super::protocol::Message;
use super::requests::{RequestError, blocking, local};
use crate::ids::{PeerId, Seq};

/// The outcome of a round with one peer for one area.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// When it ended.
    pub time: std::time::SystemTime,
    /// `ok`, or why it failed.
    pub outcome: Result<(), RequestError>,
    /// Records the peer applied from this side.
    pub sent: u64,
    /// Records applied here from the peer.
    pub received: u64,
    /// Records left in conflict on either side.
    pub conflicts: u64,
}

impl RoundResult {
    /// A round that ended now with `outcome`, having moved nothing.
    pub fn now(outcome: Result<(), RequestError>) -> RoundResult {
        RoundResult {
            time: std::time::SystemTime::now(),
            outcome,
            sent: 0,
            received: 0,
            conflicts: 0,
        }
    }
}

impl Manager {
    /// Applies `peer`'s changes of `area` here, when this peer shares the
    /// area with it; returns (records applied, conflicts).
    pub(super) async fn pull(
        self: &Arc<Self>,
        peer: PeerId,
        area: Vec<u8>,
    ) -> Result<(u64, u64), RequestError> {
        let core = Arc::clone(&self.core);
        let name = area.clone();
        let mut pull = blocking(move || core.begin_pull(peer, &name)).await?;
        let since = pull.since();
        // The next page is asked for while this one is applied (the peer
        // then takes it as applied a little early, which only trims its
        // history sooner: what a peer sends comes from its feed).
        let mut next = tokio::spawn(Arc::clone(self).page(peer, area.clone(), since));
        let mut asked = since;
        let outcome = loop {
            let (records, last) = match next.await.map_err(local).and_then(|r| r) {
                Ok(page) => page,
                Err(e) => break Err(e),
            };
            if records.is_empty() {
                break Ok(());
            }
            // Each page must end past the last: a peer that sends the
            // same page again (a bug, or on purpose) ends the pull.
            if last <= asked {
                break Err(RequestError::Refused(format!(
                    "{peer} sent a page of {} records ending at {} after {}: no progress",
                    records.len(),
                    last.0,
                    asked.0
                )));
            }
            asked = last;
            next = tokio::spawn(Arc::clone(self).page(peer, area.clone(), last));
            let applied = blocking(move || {
                let result = pull.apply(last, records);
                Ok((pull, result))
            })
            .await;
            match applied {
                Ok((p, result)) => {
                    pull = p;
                    if let Err(e) = result {
                        break Err(e);
                    }
                }
                // The pull went with the task: nothing was stashed by it.
                Err(e) => return Err(e),
            }
        };
        // Also after a failure: what was stashed must find its place.
        let counts = blocking(move || pull.finish()).await?;
        outcome.map(|()| counts)
    }

    /// Asks `peer` for the records of `area` after `since`: (records,
    /// sequence number of the last).
    async fn page(
        self: Arc<Self>,
        peer: PeerId,
        area: Vec<u8>,
        since: Seq,
    ) -> Result<(Vec<(Vec<u8>, crate::store::versions::PathRecord)>, Seq), RequestError> {
        match self.ask(peer, &Message::Changes { area, since }).await?.0 {
            Message::Page { records, last, .. } => Ok((records, last)),
            other => Err(RequestError::Refused(format!("{other:?} for changes"))),
        }
    }

    /// A round with `peer` for `area`: pull, then have the peer pull.
    pub(super) async fn round(self: &Arc<Self>, peer: PeerId, area: Vec<u8>) -> RoundResult {
        let mut result = RoundResult::now(Ok(()));
        let outcome = async {
            let (received, conflicts) = self.pull(peer, area.clone()).await?;
            result.received = received;
            result.conflicts = conflicts;
            match self
                .ask(peer, &Message::Pull { area: area.clone() })
                .await?
                .0
            {
                Message::Pulled { applied, conflicts } => {
                    result.sent = applied;
                    result.conflicts = result.conflicts.max(conflicts);
                    Ok(())
                }
                other => Err(RequestError::Refused(format!("{other:?} for pull"))),
            }
        }
        .await;
        result.time = std::time::SystemTime::now();
        result.outcome = outcome;
        self.core.round_ended(result.conflicts);
        self.household().note_round(peer, area, result.clone());
        result
    }

    /// Runs rounds with every peer (or `only` peer) for every area (or
    /// `only_area`) shared with it, dialling peers that are not connected;
    /// returns one result per (peer, area).
    pub(super) async fn consensus(
        self: &Arc<Self>,
        only: Option<PeerId>,
        only_area: Option<Vec<u8>>,
    ) -> Vec<(PeerId, Vec<u8>, RoundResult)> {
        let core = Arc::clone(&self.core);
        let targets = blocking(move || core.shared_areas())
            .await
            .unwrap_or_default();
        let mut by_peer: HashMap<PeerId, Vec<Vec<u8>>> = HashMap::new();
        for (peer, area) in targets {
            if only.is_none_or(|p| p == peer) && only_area.as_ref().is_none_or(|a| *a == area) {
                by_peer.entry(peer).or_default().push(area);
            }
        }
        let mut tasks = Vec::new();
        for (peer, areas) in by_peer {
            let me = Arc::clone(self);
            tasks.push(tokio::spawn(async move {
                if me.link_handle(peer).is_none() {
                    let addr = me.dialable().await.into_iter().find(|(id, _)| *id == peer);
                    let dialled = match addr {
                        Some((_, addr)) => {
                            me.dial(peer, addr, true).await.map_err(|e| e.to_string())
                        }
                        None => Err(format!("{peer} is not connected and has no address")),
                    };
                    if let Err(e) = dialled {
                        let failed = RoundResult::now(Err(RequestError::Unreachable(e)));
                        let mut out = Vec::new();
                        for area in areas {
                            me.household()
                                .note_round(peer, area.clone(), failed.clone());
                            out.push((peer, area, failed.clone()));
                        }
                        return out;
                    }
                }
                let mut out = Vec::new();
                for area in areas {
                    let result = me.round(peer, area.clone()).await;
                    out.push((peer, area, result));
                }
                out
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            if let Ok(out) = task.await {
                results.extend(out);
            }
        }
        results
    }
}
