//! Networking: identity ([`identity`]), TLS with raw public keys ([`tls`]),
//! what it needs of the file-system core, its only way in ([`core::Core`]),
//! the wire format ([`protocol`]), the QUIC endpoint with its connection
//! manager ([`endpoint`]), requests between peers ([`requests`]), rounds
//! of consensus ([`rounds`]) and when they run (`schedule`). [`Household`]
//! is the state they share with the control tree.

mod blobs;
pub mod core;
pub mod endpoint;
pub mod identity;
pub mod memory;
pub mod protocol;
pub mod requests;
pub mod rounds;
mod schedule;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use crate::ids::PeerId;
pub use requests::RequestError;
pub use rounds::RoundResult;
use tls::Trust;

/// A peer's connection state as `/.ctl/peers` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// A connection is up.
    Connected,
    /// A dial is in progress.
    Connecting,
    /// Neither.
    Offline,
}

impl PeerState {
    /// The word of `/.ctl/peers`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Connecting => "connecting",
            PeerState::Offline => "offline",
        }
    }
}

/// Why `connect` failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// No address, the address does not answer, or the handshake failed.
    #[error("{0}")]
    Unreachable(String),
    /// No answer within `net.timeout`.
    #[error("no answer within net.timeout")]
    TimedOut,
}

/// Orders for the connection manager.
#[derive(Debug)]
pub enum Command {
    /// Dial `peer` now (clearing a `disconnect`) and report the outcome.
    Connect {
        /// The peer.
        peer: PeerId,
        /// Where the outcome goes (a bounded std channel: the manager's
        /// send never blocks, the FUSE thread waits with a deadline).
        done: std::sync::mpsc::SyncSender<Result<(), ConnectError>>,
    },
    /// Close the connection with `peer` and stop dialling it.
    Disconnect {
        /// The peer.
        peer: PeerId,
    },
    /// The list of peers changed: re-read it.
    PeersChanged,
    /// Run rounds of consensus and report their results.
    Consensus {
        /// Only with this peer.
        peer: Option<PeerId>,
        /// Only for this area.
        area: Option<Vec<u8>>,
        /// Where the results go, one per (peer, area).
        done: std::sync::mpsc::SyncSender<Vec<(PeerId, Vec<u8>, RoundResult)>>,
    },
    /// Read a byte range of a blob from the first holder that answers.
    Fetch(Fetch),
    /// Send `request` to `peer` and hand back its answer.
    Ask {
        /// Who to ask.
        peer: PeerId,
        /// The request.
        request: protocol::Message,
        /// Where the answer goes.
        done: std::sync::mpsc::SyncSender<Result<protocol::Message, RequestError>>,
    },
    /// A local op of `kind` changed `area`: schedule automatic rounds.
    Changed {
        /// The area's name.
        area: Vec<u8>,
        /// What changed it.
        kind: crate::store::history::OpKind,
    },
}

/// What a fetch calls when it ends.
pub type FetchDone = Box<dyn FnOnce(FetchOutcome) + Send>;

/// How a fetch ended.
pub struct FetchOutcome {
    /// The bytes and who sent them, or why no holder did.
    pub result: Result<(PeerId, Vec<u8>), RequestError>,
    /// Holders asked that failed or were slower than the one that
    /// answered ([`blobs::HEDGE`]).
    pub passed_over: Vec<PeerId>,
}

/// A byte range of a blob (or of its outboard) to fetch.
pub struct Fetch {
    /// Peers that hold it, in the order to try.
    pub holders: Vec<PeerId>,
    /// What to read.
    pub range: protocol::BlobRange,
    /// Read the range of the blob's outboard instead of the blob.
    pub outboard: bool,
    /// Called with the bytes and who sent them, on a runtime thread: it
    /// must not block.
    pub done: FetchDone,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fetch({} bytes at {})",
            self.range.len, self.range.offset
        )
    }
}

/// What the control tree and the network share.
#[derive(Default)]
pub struct Household {
    /// Keys that may complete a handshake.
    pub trust: Arc<Trust>,
    states: Mutex<HashMap<PeerId, PeerState>>,
    commands: OnceLock<mpsc::UnboundedSender<Command>>,
    /// QUIC payload bytes received.
    pub rx_bytes: AtomicU64,
    /// QUIC payload bytes sent.
    pub tx_bytes: AtomicU64,
    rounds: Mutex<BTreeMap<(PeerId, Vec<u8>), RoundResult>>,
    offers: Mutex<HashMap<PeerId, Offers>>,
}

/// Areas a peer shares with this peer: (name, its latest sequence number).
pub type Offers = Vec<(Vec<u8>, crate::ids::Seq)>;

impl Household {
    /// The state of `peer`.
    pub fn state(&self, peer: &PeerId) -> PeerState {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.get(peer).copied().unwrap_or(PeerState::Offline)
    }

    /// Sets the state of `peer`.
    pub fn set_state(&self, peer: PeerId, state: PeerState) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.insert(peer, state);
    }

    /// Connects the manager's command channel (once the network runs).
    pub fn attach(&self, commands: mpsc::UnboundedSender<Command>) {
        let _ = self.commands.set(commands);
    }

    /// Keeps what `peer` said in its hello: the areas it shares with this
    /// peer and its latest sequence number in each.
    pub fn set_offers(&self, peer: PeerId, areas: Offers) {
        let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        offers.insert(peer, areas);
    }

    /// The areas `peer` shares with this peer, with its latest sequence
    /// number in each, as its last hello said.
    pub fn offers(&self, peer: &PeerId) -> Offers {
        let offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        offers.get(peer).cloned().unwrap_or_default()
    }

    /// Keeps the result of the last round with `peer` for `area`.
    pub fn note_round(&self, peer: PeerId, area: Vec<u8>, result: RoundResult) {
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds.insert((peer, area), result);
    }

    /// The last round with each peer for each area.
    pub fn rounds(&self) -> Vec<(PeerId, Vec<u8>, RoundResult)> {
        let rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds
            .iter()
            .map(|((p, a), r)| (*p, a.clone(), r.clone()))
            .collect()
    }

    /// Sends a command to the manager; false when no network runs.
    pub fn send(&self, command: Command) -> bool {
        self.commands.get().is_some_and(|c| c.send(command).is_ok())
    }
}
