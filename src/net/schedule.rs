//! Automatic rounds of consensus (DESIGN.md "Sync"): when a peer
//! connects; after a local change, at once for the ops named in
//! `consensus.immediate` and for writes (recorded only once they rested
//! `consensus.rest`), after `consensus.rest` of quiet for the others; and
//! every `consensus.interval` when it is not 0. A round already running
//! for a peer and area runs once more when it ends instead of twice at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::endpoint::{Manager, locked};
use super::requests::blocking;

use crate::ids::{PeerId, Seq};
use crate::store::history::OpKind;

/// Wait before an "at once" round, so that changes made together (and the
/// transaction that recorded them) go in one round.
const SOON: Duration = Duration::from_millis(50);

/// Rounds waiting to run and running.
#[derive(Default)]
pub(super) struct Schedule {
    /// Area → when its rounds are due.
    due: Mutex<HashMap<Vec<u8>, Instant>>,
    running: Mutex<HashSet<(PeerId, Vec<u8>)>>,
    again: Mutex<HashSet<(PeerId, Vec<u8>)>>,
    last_interval: Mutex<Option<Instant>>,
}

impl Manager {
    /// A local op of `kind` changed `area`: schedules its rounds.
    pub(super) fn changed(&self, area: Vec<u8>, kind: OpKind) {
        let policy = self.core.policy();
        let (immediate, rest) = (policy.immediate, policy.rest);
        let at_once = matches!(kind, OpKind::Create | OpKind::Edit | OpKind::Overwrite)
            || immediate.split(',').any(|k| k == kind.as_str());
        let delay = if at_once { SOON } else { rest };
        let due = Instant::now() + delay;
        let mut all = locked(&self.schedule.due);
        let slot = all.entry(area).or_insert(due);
        *slot = (*slot).min(due);
    }

    /// Runs the rounds that are due: scheduled areas, and every pair when
    /// `consensus.interval` has passed. Called by the manager's tick.
    pub(super) async fn run_due(self: &Arc<Self>) {
        let now = Instant::now();
        let areas: Vec<Vec<u8>> = {
            let mut due = locked(&self.schedule.due);
            let ready: Vec<Vec<u8>> = due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(a, _)| a.clone())
                .collect();
            for a in &ready {
                due.remove(a);
            }
            ready
        };
        let interval = self.core.policy().interval;
        let every = !interval.is_zero() && {
            let mut last = locked(&self.schedule.last_interval);
            let passed = last.is_none_or(|l| now.duration_since(l) >= interval);
            if passed {
                *last = Some(now);
            }
            passed
        };
        if areas.is_empty() && !every {
            return;
        }
        let core = Arc::clone(&self.core);
        let pairs = blocking(move || core.shared_areas())
            .await
            .unwrap_or_default();
        for (peer, area) in pairs {
            if (every || areas.contains(&area)) && self.link_handle(peer).is_some() {
                self.auto_round(peer, area);
            }
        }
    }

    /// Schedules rounds with `peer`, just connected, for the areas shared
    /// with it where either side has something the other lacks (as the
    /// peer's hello tells); logs the areas it offers that are not shared
    /// here.
    pub(super) async fn connected(self: &Arc<Self>, peer: PeerId) {
        let core = Arc::clone(&self.core);
        let offers = self.household().offers(&peer);
        let due = blocking(move || {
            let mut due = Vec::new();
            for (p, area) in core.shared_areas()? {
                if p != peer {
                    continue;
                }
                let theirs = offers.iter().find(|(a, _)| *a == area).map(|(_, s)| *s);
                // Not offered: the peer does not share it (yet); the round
                // says so in /.ctl/consensus.
                if core.round_needed(peer, &area, theirs.unwrap_or(Seq(u64::MAX)))? {
                    due.push(area);
                }
            }
            for (area, _) in &offers {
                if !core.has_area(area)? {
                    tracing::info!(
                        "{peer} shares area {} with this peer: `share {} {peer}` in /.ctl/areas accepts it",
                        crate::format::escape(area),
                        crate::format::escape(area)
                    );
                }
            }
            Ok(due)
        })
        .await
        .unwrap_or_default();
        for area in due {
            self.auto_round(peer, area);
        }
    }

    /// Starts a round with `peer` for `area` in the background, or marks
    /// the running one to go again.
    fn auto_round(self: &Arc<Self>, peer: PeerId, area: Vec<u8>) {
        let key = (peer, area);
        {
            let mut running = locked(&self.schedule.running);
            if !running.insert(key.clone()) {
                locked(&self.schedule.again).insert(key);
                return;
            }
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let result = me.round(key.0, key.1.clone()).await;
                if let Err(e) = &result.outcome {
                    tracing::info!("automatic round with {}: {e}", key.0);
                }
                // Under the lock that auto_round takes first, so that a
                // request made meanwhile is never lost.
                let mut running = locked(&me.schedule.running);
                if !locked(&me.schedule.again).remove(&key) {
                    running.remove(&key);
                    break;
                }
            }
        });
    }
}
