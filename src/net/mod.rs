//! Networking: identity ([`identity`]), TLS with raw public keys ([`tls`]),
//! the wire format ([`protocol`]) and the QUIC endpoint with its connection
//! manager ([`endpoint`]). [`Household`] is the state they share with the
//! control tree.

pub mod endpoint;
pub mod identity;
pub mod protocol;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use identity::PeerId;
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
}

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

    /// Sends a command to the manager; false when no network runs.
    pub fn send(&self, command: Command) -> bool {
        self.commands.get().is_some_and(|c| c.send(command).is_ok())
    }
}
