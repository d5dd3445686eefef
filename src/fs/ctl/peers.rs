//! `/.ctl/peers`: `PEERID NAME ADDR STATE LAST_SEEN` per known peer (read);
//! `add PEERID [ADDR] [NAME]`, `remove PEERID`, `connect PEERID`,
//! `disconnect PEERID` (write). Only keys listed here complete a TLS
//! handshake. ADDR is `host:port` or `-` (a deaf peer, which dials us).

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use super::super::{Error, Fs, Result};
use super::cmdtab::{self, Cmd};
use crate::format::format_time;
use crate::ids::PeerId;
use crate::net::{Command, ConnectError};
use crate::store::Ino;
use crate::store::peers::Peer;

/// One line per known peer.
pub(super) fn read(fs: &Fs, _owner: Ino) -> Result<String> {
    let txn = fs.store().read()?;
    let mut out = String::new();
    for (id, peer) in fs.store().peers.all(&txn)? {
        out.push_str(&format!(
            "{id} {} {} {} {}\n",
            peer.name,
            peer.addr.as_deref().unwrap_or("-"),
            fs.household().state(&id).as_str(),
            peer.last_seen
                .map_or("-".to_string(), |t| format_time(t.into())),
        ));
    }
    Ok(out)
}

/// Parses a peer id field (EINVAL when malformed).
pub(super) fn peer_field(field: &str) -> Result<PeerId> {
    field
        .parse()
        .map_err(|e: crate::ids::BadPeerId| Error::Invalid(e.to_string()))
}

/// A known peer's id (ENOENT when it is not known).
pub(super) fn known_peer(fs: &Fs, field: &str) -> Result<PeerId> {
    let peer = peer_field(field)?;
    let txn = fs.store().read()?;
    match fs.store().peers.get(&txn, &peer)? {
        Some(_) => Ok(peer),
        None => Err(Error::NotFound(format!("unknown peer {peer}"))),
    }
}

/// Checks `host:port`: a host without spaces and a port number.
fn check_addr(addr: &str) -> Result<()> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    ok.then_some(())
        .ok_or_else(|| Error::Invalid(format!("bad address {addr:?}: expected HOST:PORT or -")))
}

fn add(fs: &Fs, id: &str, addr: Option<&str>, name: Option<&str>) -> Result<()> {
    let peer = peer_field(id)?;
    if peer == fs.peer_id() {
        return Err(Error::Invalid("that is this peer's own id".into()));
    }
    let addr = addr.filter(|a| *a != "-");
    if let Some(addr) = addr {
        check_addr(addr)?;
    }
    let name = name.unwrap_or("-");
    let valid = name.len() <= 64 && name.chars().all(|c| c.is_ascii_graphic());
    if !valid {
        return Err(Error::Invalid(
            "a name is 1 to 64 printable ASCII characters".into(),
        ));
    }
    let store = fs.store();
    let mut wtxn = store.write()?;
    if store.peers.get(&wtxn, &peer)?.is_some() {
        return Err(Error::Exists(format!("peer {peer} is already known")));
    }
    let record = Peer {
        name: name.to_string(),
        addr: addr.map(str::to_string),
        last_seen: None,
    };
    store.peers.put(&mut wtxn, &peer, &record)?;
    wtxn.commit()?;
    fs.household().trust.allow(peer);
    fs.household().send(Command::PeersChanged);
    Ok(())
}

fn remove(fs: &Fs, id: &str) -> Result<()> {
    let peer = known_peer(fs, id)?;
    let store = fs.store();
    let mut wtxn = store.write()?;
    store.peers.remove(&mut wtxn, &peer)?;
    let mut areas = Vec::new();
    store
        .namespace
        .children(&wtxn, crate::store::ROOT, 0, |_, e| {
            areas.push(e.ino);
            Ok(true)
        })?;
    for area in areas {
        if let Some(mut record) = store.areas.get(&wtxn, area)?
            && record.shares.contains(&peer)
        {
            record.shares.retain(|k| *k != peer);
            store.areas.put(&mut wtxn, area, &record)?;
        }
    }
    wtxn.commit()?;
    fs.household().trust.forbid(peer);
    fs.household().send(Command::Disconnect { peer });
    fs.household().send(Command::PeersChanged);
    Ok(())
}

fn connect(fs: &Fs, id: &str) -> Result<()> {
    let peer = known_peer(fs, id)?;
    let timeout = {
        let txn = fs.store().read()?;
        fs.store()
            .config
            .duration(&txn, crate::store::config::Key::NetTimeout)?
    };
    // Capacity 1: the manager's send never blocks the runtime.
    let (done, outcome) = std::sync::mpsc::sync_channel(1);
    if !fs.household().send(Command::Connect { peer, done }) {
        return Err(Error::Unreachable("the network is not running".into()));
    }
    // A FUSE thread, not a runtime thread: waiting here is allowed. The
    // manager gives up after net.timeout; wait a little longer for its word.
    match outcome.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ConnectError::Unreachable(why))) => Err(Error::Unreachable(why)),
        Ok(Err(ConnectError::TimedOut)) | Err(RecvTimeoutError::Timeout) => Err(Error::TimedOut(
            format!("{peer} did not answer within net.timeout"),
        )),
        Err(RecvTimeoutError::Disconnected) => {
            Err(Error::Unreachable("the network stopped".into()))
        }
    }
}

/// The commands of `/.ctl/peers`.
const COMMANDS: &[Cmd] = &[
    Cmd {
        name: "add",
        args: "PEERID [ADDR] [NAME]",
        run: |fs, _, args| add(fs, args[0], args.get(1).copied(), args.get(2).copied()),
    },
    Cmd {
        name: "remove",
        args: "PEERID",
        run: |fs, _, args| remove(fs, args[0]),
    },
    Cmd {
        name: "connect",
        args: "PEERID",
        run: |fs, _, args| connect(fs, args[0]),
    },
    Cmd {
        name: "disconnect",
        args: "PEERID",
        run: |fs, _, args| {
            let peer = known_peer(fs, args[0])?;
            fs.household().send(Command::Disconnect { peer });
            Ok(())
        },
    },
];

/// Runs one command of [`COMMANDS`].
pub(super) fn write(fs: &Fs, owner: Ino, fields: &[&str]) -> Result<()> {
    cmdtab::run(COMMANDS, fs, owner, fields)
}
