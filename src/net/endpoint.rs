//! The QUIC endpoint (s2n-quic with rustls) and the connection manager.
//!
//! It runs on its own tokio runtime, beside the FUSE threads. A server
//! listens on `--listen` (none for a deaf peer); a client dials every known
//! peer that has an address, keeping one connection per peer and dialling
//! again with a capped backoff. Both sides of a connection say hello, then
//! serve requests on whichever side dialled, so a deaf peer is reachable
//! over the connection it opened. When both peers dial each other at once,
//! both keep the connection dialled by the smaller peer id; a connection
//! from a restarted peer (a new incarnation in its hello) replaces the
//! old one at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s2n_quic::connection::Handle;
use s2n_quic::provider::event::{ConnectionInfo, ConnectionMeta, Subscriber, events};
use s2n_quic::{Client, Connection, Server, client::Connect};
use tokio::sync::mpsc;

use super::core::Core;
use super::identity::Identity;
use super::protocol::{self, Message};
use super::{Command, ConnectError, Household, PeerState, tls};
use crate::ids::PeerId;

/// First wait before dialling a peer again; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between dials.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a failed `connect` waits for the other side's connection.
const GRACE: Duration = Duration::from_secs(1);
/// A connection silent this long is dead (keep-alive pings keep a live
/// one talking), so a peer that vanished is noticed within this time.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// The runtime or a socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// s2n-quic refused to start (address in use, …).
    #[error("QUIC: {0}")]
    Quic(String),
    /// The database.
    #[error("database: {0}")]
    Store(#[from] crate::store::Error),
}

fn quic<E: std::fmt::Display>(e: E) -> Error {
    Error::Quic(e.to_string())
}

/// Request streams a peer may have open to this one at once (each is one
/// request and its answer); QUIC makes it wait for more.
const MAX_STREAMS: u64 = 32;

fn limits() -> Result<s2n_quic::provider::limits::Limits, Error> {
    s2n_quic::provider::limits::Limits::new()
        .with_max_idle_timeout(IDLE_TIMEOUT)
        .map_err(quic)?
        .with_max_open_remote_bidirectional_streams(MAX_STREAMS)
        .map_err(quic)
}

/// Largest UDP payload tried by path MTU discovery: 9000 (jumbo frames,
/// and loopback) more than doubles a stream's throughput over the default
/// 1500; larger values collapsed it in tests (CRATES.md).
const MAX_MTU: u16 = 9000;

/// The UDP socket of an endpoint bound to `addr`.
fn io(addr: SocketAddr) -> Result<s2n_quic::provider::io::tokio::Provider, Error> {
    Ok(s2n_quic::provider::io::tokio::Builder::default()
        .with_receive_address(addr)?
        .with_max_mtu(MAX_MTU)?
        .build()?)
}

/// Records which key the other side presented, per connection.
struct PeerKey;

impl Subscriber for PeerKey {
    type ConnectionContext = Option<PeerId>;

    fn create_connection_context(
        &mut self,
        _: &ConnectionMeta,
        _: &ConnectionInfo,
    ) -> Option<PeerId> {
        None
    }

    fn on_tls_exporter_ready(
        &mut self,
        context: &mut Option<PeerId>,
        _: &ConnectionMeta,
        event: &events::TlsExporterReady,
    ) {
        if let Ok(chain) = event.session.peer_cert_chain_der() {
            *context = chain.first().and_then(|key| tls::peer_of_spki(key));
        }
    }
}

/// A connection in use, and who dialled it.
struct Link {
    handle: Handle,
    dialed_by: PeerId,
    /// The peer's incarnation, from its hello.
    incarnation: u64,
    /// Unique in this process (s2n-quic numbers connections per endpoint,
    /// and the server and the client each start at 0).
    token: u64,
}

/// Source of [`Link::token`].
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The running network; [`Network::shutdown`] stops it.
pub struct Network {
    runtime: tokio::runtime::Runtime,
    local_addr: Option<SocketAddr>,
    manager: Arc<Manager>,
}

impl Network {
    /// Starts the endpoint for `core`'s household: listens on `listen`
    /// (`None`: a deaf peer) and dials the known peers.
    pub fn start(
        core: Arc<dyn Core>,
        identity: &Identity,
        listen: Option<SocketAddr>,
    ) -> Result<Network, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("net")
            .enable_all()
            .build()?;
        let household = core.household();
        let peers = core
            .peers()
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        for peer in peers {
            household.trust.allow(peer.id);
        }
        let server_tls: s2n_quic::provider::tls::rustls::Server =
            tls::server_config(identity, household.trust.clone())?.into();
        let client_tls: s2n_quic::provider::tls::rustls::Client =
            tls::client_config(identity, household.trust.clone())?.into();
        let _guard = runtime.enter();
        let server = match listen {
            Some(addr) => Some(
                Server::builder()
                    .with_tls(server_tls)
                    .map_err(quic)?
                    .with_limits(limits()?)
                    .map_err(quic)?
                    .with_io(io(addr)?)
                    .map_err(quic)?
                    .with_event(PeerKey)
                    .map_err(quic)?
                    .start()
                    .map_err(quic)?,
            ),
            None => None,
        };
        let local_addr = server
            .as_ref()
            .map(|s| s.local_addr())
            .transpose()
            .map_err(quic)?;
        let client = Client::builder()
            .with_tls(client_tls)
            .map_err(quic)?
            .with_limits(limits()?)
            .map_err(quic)?
            .with_io(io(SocketAddr::from(([0, 0, 0, 0], 0)))?)
            .map_err(quic)?
            .with_event(PeerKey)
            .map_err(quic)?
            .start()
            .map_err(quic)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        household.attach(commands);
        let manager = Arc::new(Manager {
            me: identity.peer_id(),
            core,
            client,
            links: Mutex::new(HashMap::new()),
            held_off: Mutex::new(HashSet::new()),
            incarnation: {
                let mut bytes = [0; 8];
                getrandom::fill(&mut bytes)
                    .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
                u64::from_le_bytes(bytes)
            },
            backoff: Mutex::new(HashMap::new()),
            dialling: Mutex::new(HashSet::new()),
            schedule: Default::default(),
        });
        runtime.spawn(Arc::clone(&manager).run(receiver));
        if let Some(server) = server {
            runtime.spawn(Arc::clone(&manager).accept_loop(server));
        }
        Ok(Network {
            runtime,
            local_addr,
            manager,
        })
    }

    /// The address the server listens on, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Closes every connection, so peers notice at once, and stops the
    /// runtime.
    pub fn shutdown(self) {
        let manager = Arc::clone(&self.manager);
        self.runtime.block_on(async move {
            for (_, link) in locked(&manager.links).drain() {
                link.handle.close(0u32.into());
            }
            // Let the endpoints send the CONNECTION_CLOSE frames.
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// When a peer may be dialled again.
struct Backoff {
    next: Instant,
    wait: Duration,
}

/// The connection manager: links to peers, dialling, and the requests
/// and rounds of [`super::requests`].
pub(super) struct Manager {
    me: PeerId,
    pub(super) core: Arc<dyn Core>,
    client: Client,
    links: Mutex<HashMap<PeerId, Link>>,
    /// Peers the user disconnected: not dialled until `connect`.
    held_off: Mutex<HashSet<PeerId>>,
    /// This process's incarnation, sent in every hello.
    incarnation: u64,
    backoff: Mutex<HashMap<PeerId, Backoff>>,
    /// Peers being dialled now.
    dialling: Mutex<HashSet<PeerId>>,
    pub(super) schedule: super::schedule::Schedule,
}

/// Locks a mutex, recovering the data of a poisoned one.
pub(super) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Manager {
    pub(super) fn household(&self) -> &Household {
        self.core.household()
    }

    /// Sets `peer`'s state from its link: connected when one is up,
    /// `otherwise` when not (a failed dial must not hide a live link).
    fn settle(&self, peer: PeerId, otherwise: PeerState) {
        let up = locked(&self.links).contains_key(&peer);
        let state = if up { PeerState::Connected } else { otherwise };
        self.household().set_state(peer, state);
    }

    /// The link to `peer`, if one is up.
    pub(super) fn link_handle(&self, peer: PeerId) -> Option<Handle> {
        self.link(peer).map(|(handle, _)| handle)
    }

    /// The link to `peer` and its token (a new link, kept when both sides
    /// dialled at once or the peer restarted, has a new one).
    pub(super) fn link(&self, peer: PeerId) -> Option<(Handle, u64)> {
        locked(&self.links)
            .get(&peer)
            .map(|l| (l.handle.clone(), l.token))
    }

    pub(super) fn net_timeout(&self) -> Duration {
        self.core.net_timeout()
    }

    /// Known peers with an address: (id, address text).
    pub(super) async fn dialable(self: &Arc<Self>) -> Vec<(PeerId, String)> {
        let core = Arc::clone(&self.core);
        match super::requests::blocking(move || core.peers()).await {
            Ok(peers) => peers
                .into_iter()
                .filter_map(|p| p.addr.map(|a| (p.id, a)))
                .collect(),
            Err(e) => {
                tracing::error!("reading peers: {e}");
                Vec::new()
            }
        }
    }

    async fn run(self: Arc<Self>, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(MIN_BACKOFF);
        let mut rounds = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                _ = tick.tick() => self.dial_missing().await,
                _ = rounds.tick() => self.run_due().await,
            }
        }
    }

    async fn handle(self: &Arc<Self>, command: Command) {
        match command {
            Command::Connect { peer, done } => {
                locked(&self.held_off).remove(&peer);
                locked(&self.backoff).remove(&peer);
                let outcome = if locked(&self.links).contains_key(&peer) {
                    Ok(())
                } else {
                    match self
                        .dialable()
                        .await
                        .into_iter()
                        .find(|(id, _)| *id == peer)
                    {
                        Some((_, addr)) => self.dial(peer, addr, true).await,
                        None => Err(ConnectError::Unreachable(format!(
                            "{peer} has no address: it must dial this peer"
                        ))),
                    }
                };
                // When both sides dial at once, the other may close ours
                // in favour of its own connection, which then registers
                // here a moment later: what matters is being connected.
                let outcome = match outcome {
                    Err(e) => self.linked_soon(peer).await.then_some(()).ok_or(e),
                    ok => ok,
                };
                let _ = done.try_send(outcome);
            }
            Command::Disconnect { peer } => {
                locked(&self.held_off).insert(peer);
                if let Some(link) = locked(&self.links).remove(&peer) {
                    link.handle.close(0u32.into());
                }
                self.household().set_state(peer, PeerState::Offline);
            }
            Command::Consensus { peer, area, done } => {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = done.try_send(me.consensus(peer, area).await);
                });
            }
            Command::Fetch(fetch) => {
                tokio::spawn(Arc::clone(self).fetch_from_holders(fetch));
            }
            Command::Ask {
                peer,
                request,
                done,
            } => {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    let answer = me.ask(peer, &request).await.map(|(answer, _)| answer);
                    let _ = done.try_send(answer);
                });
            }
            Command::Changed { area, kind } => self.changed(area, kind),
            Command::PeersChanged => {
                let gone: Vec<PeerId> = locked(&self.links)
                    .keys()
                    .filter(|p| !self.household().trust.allows(p))
                    .copied()
                    .collect();
                for peer in gone {
                    if let Some(link) = locked(&self.links).remove(&peer) {
                        link.handle.close(0u32.into());
                    }
                    self.household().set_state(peer, PeerState::Offline);
                }
                self.dial_missing().await;
            }
        }
    }

    /// Whether a link to `peer` is up, or comes up within [`GRACE`].
    async fn linked_soon(&self, peer: PeerId) -> bool {
        let deadline = Instant::now() + GRACE;
        loop {
            if locked(&self.links).contains_key(&peer) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Dials every peer with an address that is not connected, not held
    /// off and whose backoff has passed.
    async fn dial_missing(self: &Arc<Self>) {
        for (peer, addr) in self.dialable().await {
            let due = {
                let links = locked(&self.links);
                let held = locked(&self.held_off);
                let backoff = locked(&self.backoff);
                !links.contains_key(&peer)
                    && !held.contains(&peer)
                    && !locked(&self.dialling).contains(&peer)
                    && backoff.get(&peer).is_none_or(|b| b.next <= Instant::now())
            };
            if due {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = me.dial(peer, addr, false).await;
                });
            }
        }
    }

    /// Dials `peer` at `addr` and runs the connection in the background.
    /// With `shown`, the peer is `connecting` meanwhile (a `connect` or a
    /// round the user asked for); the dials made in the background to a
    /// peer that went away leave it `offline` until one succeeds, so a
    /// peer that stopped answering is shown offline once its connection
    /// timed out, not `connecting` for as long as it is away.
    pub(super) async fn dial(
        self: &Arc<Self>,
        peer: PeerId,
        addr: String,
        shown: bool,
    ) -> Result<(), ConnectError> {
        locked(&self.dialling).insert(peer);
        if shown {
            self.settle(peer, PeerState::Connecting);
        }
        let timeout = self.net_timeout();
        let attempt = async {
            let socket = tokio::net::lookup_host(addr.as_str())
                .await
                .map_err(|e| ConnectError::Unreachable(format!("{addr}: {e}")))?
                .next()
                .ok_or_else(|| ConnectError::Unreachable(format!("{addr}: no address")))?;
            let connect = Connect::new(socket).with_server_name(peer.to_string().as_str());
            let connection = self
                .client
                .connect(connect)
                .await
                .map_err(|e| ConnectError::Unreachable(format!("{addr}: {e}")))?;
            self.hello(connection, peer, true).await
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::TimedOut),
        };
        locked(&self.dialling).remove(&peer);
        match &result {
            Ok(_) => {
                locked(&self.backoff).remove(&peer);
            }
            Err(e) => {
                tracing::info!("dialling {peer}: {e}");
                self.settle(peer, PeerState::Offline);
                let mut backoff = locked(&self.backoff);
                let b = backoff.entry(peer).or_insert(Backoff {
                    next: Instant::now(),
                    wait: MIN_BACKOFF,
                });
                b.next = Instant::now() + b.wait;
                b.wait = (b.wait * 2).min(MAX_BACKOFF);
            }
        }
        // Registered before answering, so a `connect` that succeeded
        // finds the peer connected.
        result.map(|(connection, incarnation)| {
            if let Some(token) = self.register(&connection, peer, self.me, incarnation) {
                tokio::spawn(Arc::clone(self).serve(connection, peer, token));
            }
        })
    }

    async fn accept_loop(self: Arc<Self>, mut server: Server) {
        while let Some(connection) = server.accept().await {
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let peer = connection
                    .query_event_context(|key: &Option<PeerId>| *key)
                    .ok()
                    .flatten();
                let Some(peer) = peer else {
                    tracing::warn!("a connection without a known key");
                    return;
                };
                let timeout = me.net_timeout();
                match tokio::time::timeout(timeout, me.hello(connection, peer, false)).await {
                    Ok(Ok((connection, incarnation))) => {
                        if let Some(token) = me.register(&connection, peer, peer, incarnation) {
                            me.serve(connection, peer, token).await;
                        }
                    }
                    Ok(Err(e)) => tracing::info!("hello from {peer}: {e}"),
                    Err(_) => tracing::info!("hello from {peer}: timed out"),
                }
            });
        }
    }

    /// Exchanges hellos on the first stream: the dialler speaks first.
    async fn hello(
        &self,
        mut connection: Connection,
        peer: PeerId,
        dialed: bool,
    ) -> Result<(Connection, u64), ConnectError> {
        let core = Arc::clone(&self.core);
        let (name, areas) =
            super::requests::blocking(move || Ok((core.name()?, core.offers(peer)?)))
                .await
                .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let ours = Message::Hello {
            version: protocol::VERSION,
            name,
            areas,
            incarnation: self.incarnation,
        };
        let fail = |e: &dyn std::fmt::Display| {
            ConnectError::Unreachable(format!("hello with {peer}: {e}"))
        };
        let mut stream = if dialed {
            connection
                .open_bidirectional_stream()
                .await
                .map_err(|e| fail(&e))?
        } else {
            connection
                .accept_bidirectional_stream()
                .await
                .map_err(|e| fail(&e))?
                .ok_or_else(|| fail(&"closed"))?
        };
        let household = self.household();
        if dialed {
            let n = protocol::send(&mut stream, &ours)
                .await
                .map_err(|e| fail(&e))?;
            household.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        let (theirs, n) = protocol::recv(&mut stream).await.map_err(|e| fail(&e))?;
        household.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if !dialed {
            let n = protocol::send(&mut stream, &ours)
                .await
                .map_err(|e| fail(&e))?;
            household.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        let Message::Hello {
            name,
            areas,
            incarnation,
            ..
        } = theirs
        else {
            return Err(fail(&"the first message is not a hello"));
        };
        household.set_offers(peer, areas);
        self.seen(peer, Some(name)).await;
        let _ = connection.keep_alive(true);
        Ok((connection, incarnation))
    }

    /// Notes in the store that `peer` was seen now (and its name, when it
    /// had none).
    async fn seen(&self, peer: PeerId, name: Option<String>) {
        let core = Arc::clone(&self.core);
        if let Err(e) = super::requests::blocking(move || core.seen(peer, name)).await {
            tracing::error!("noting that {peer} was seen: {e}");
        }
    }

    /// Keeps `connection` as the link to `peer` unless a link dialled by a
    /// smaller id exists (or the user disconnected it), and marks the peer
    /// connected; returns the link's token, or `None` when it was closed.
    fn register(
        self: &Arc<Self>,
        connection: &Connection,
        peer: PeerId,
        dialed_by: PeerId,
        incarnation: u64,
    ) -> Option<u64> {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        {
            let mut links = locked(&self.links);
            let keep_new = match links.get(&peer) {
                Some(old) => old.incarnation != incarnation || dialed_by < old.dialed_by,
                None => true,
            };
            if !keep_new || locked(&self.held_off).contains(&peer) {
                connection.close(0u32.into());
                return None;
            }
            let link = Link {
                handle: connection.handle(),
                dialed_by,
                incarnation,
                token,
            };
            if let Some(old) = links.insert(peer, link) {
                old.handle.close(0u32.into());
            }
        }
        self.household().set_state(peer, PeerState::Connected);
        tracing::info!("connected to {peer}");
        let me = Arc::clone(self);
        tokio::spawn(async move { me.connected(peer).await });
        Some(token)
    }

    /// Serves the streams of the link `token` to `peer` until it closes.
    async fn serve(self: Arc<Self>, mut connection: Connection, peer: PeerId, token: u64) {
        let budget = super::requests::answer_budget();
        while let Ok(Some(stream)) = connection.accept_bidirectional_stream().await {
            tokio::spawn(Arc::clone(&self).answer(peer, stream, Arc::clone(&budget)));
        }
        let mine = {
            let mut links = locked(&self.links);
            let mine = links.get(&peer).is_some_and(|l| l.token == token);
            if mine {
                links.remove(&peer);
            }
            mine
        };
        if mine {
            self.settle(peer, PeerState::Offline);
            self.seen(peer, None).await;
            tracing::info!("disconnected from {peer}");
        }
    }
}
