//! [`Core`]: what the network asks of the file-system core, and the only
//! way it reaches it. The network defines it; the core
//! ([`crate::fs::Fs`]) implements it; tests can put anything behind it.
//!
//! Every method may block on LMDB or the disk: the network calls them on
//! tokio's blocking pool ([`super::requests::blocking`]), never on a
//! runtime thread. Every method that acts for a peer takes the peer's id
//! and checks itself that the area is shared with it ("area not shared").

use std::time::Duration;

use super::protocol::BlobRange;
use super::{Household, Offers, RequestError};
use crate::ids::{BlobHash, PeerId, Seq};
use crate::store::versions::PathRecord;

/// A peer of the household as the core knows it.
#[derive(Clone, Debug)]
pub struct KnownPeer {
    /// Its id.
    pub id: PeerId,
    /// Where to dial it (`host:port`), when known.
    pub addr: Option<String>,
}

/// When automatic rounds run (`consensus.*` settings).
#[derive(Clone, Debug)]
pub struct Policy {
    /// Ops that start a round at once, comma-separated (`-`: none).
    pub immediate: String,
    /// Quiet time after other ops.
    pub rest: Duration,
    /// Period of rounds with every peer (zero: never).
    pub interval: Duration,
}

/// A page of the feed of an area, as [`super::protocol::Message::Page`]
/// carries it.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// (path, record), in feed order.
    pub records: Vec<(Vec<u8>, PathRecord)>,
    /// Sequence number of the last record (the `since` of the next page).
    pub last: Seq,
    /// Whether more follow.
    pub more: bool,
}

/// One pull of an area from a peer, page by page: made by
/// [`Core::begin_pull`], ended by [`AreaPull::finish`] (also after a
/// failure: what the pull set aside must find its place).
pub trait AreaPull: Send {
    /// The sequence number of the peer's feed this side applied last.
    fn since(&self) -> Seq;
    /// Applies one page of the peer's records, the last numbered `last`.
    fn apply(&mut self, last: Seq, records: Vec<(Vec<u8>, PathRecord)>)
    -> Result<(), RequestError>;
    /// Ends the pull: (records applied, conflicts left).
    fn finish(self: Box<Self>) -> Result<(u64, u64), RequestError>;
}

/// What the network needs of the core.
pub trait Core: Send + Sync + 'static {
    /// The state shared with the control tree (peer states, counters,
    /// the command channel).
    fn household(&self) -> &Household;
    /// `net.timeout`: how long a request waits for an answer.
    fn net_timeout(&self) -> Duration;
    /// When automatic rounds run.
    fn policy(&self) -> Policy;
    /// This peer's name, for hellos.
    fn name(&self) -> Result<String, RequestError>;
    /// Every known peer.
    fn peers(&self) -> Result<Vec<KnownPeer>, RequestError>;
    /// Notes that `peer` was seen now (and its `name`, when it had none).
    fn seen(&self, peer: PeerId, name: Option<String>) -> Result<(), RequestError>;
    /// The areas shared with `peer`, each with this side's latest sequence
    /// number (a hello's offer).
    fn offers(&self, peer: PeerId) -> Result<Offers, RequestError>;
    /// Every (peer, area) pair this side shares.
    fn shared_areas(&self) -> Result<Vec<(PeerId, Vec<u8>)>, RequestError>;
    /// Whether an area of this name exists here.
    fn has_area(&self, area: &[u8]) -> Result<bool, RequestError>;
    /// Whether a round with `peer` for `area` has something to do, its
    /// latest sequence number there being `theirs`.
    fn round_needed(&self, peer: PeerId, area: &[u8], theirs: Seq) -> Result<bool, RequestError>;
    /// A page of `area`'s feed after `since` for `peer`, which has applied
    /// everything up to `since` (history it no longer needs is trimmed).
    fn changes(&self, peer: PeerId, area: &[u8], since: Seq) -> Result<Page, RequestError>;
    /// Starts pulling `area` from `peer`.
    fn begin_pull(&self, peer: PeerId, area: &[u8]) -> Result<Box<dyn AreaPull>, RequestError>;
    /// Bytes of a blob (or of its outboard) that `peer` may read.
    fn read_blob(
        &self,
        peer: PeerId,
        range: &BlobRange,
        outboard: bool,
    ) -> Result<Vec<u8>, RequestError>;
    /// Whether this side holds `hash` real at `path` of `area` and will
    /// keep it (asked before `peer` drops its own copy).
    fn holds(
        &self,
        peer: PeerId,
        area: &[u8],
        path: &[u8],
        hash: BlobHash,
    ) -> Result<bool, RequestError>;
    /// A round ended with `conflicts` paths left in conflict (counters).
    fn round_ended(&self, conflicts: u64);
}
