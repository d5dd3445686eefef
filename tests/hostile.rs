//! A hostile peer (issue "Hostile peers and hard faults", point 6): the
//! project's own QUIC network and protocol code, with a key the honest
//! peers list in `/.ctl/peers`, over a core that answers like an honest
//! one except where an attack lies. Each attack is refused and logged
//! with the hostile peer's id, the honest mount serves throughout, and
//! honest peers still sync the area afterwards.

mod common;
mod cores;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Peer, consensus, free_port, household, wait_until};
use realize::blob::hash_bytes;
use realize::ids::{BlobHash, PeerId, Seq};
use realize::net::core::{AreaPull, Core, KnownPeer, Page, Policy};
use realize::net::endpoint::Network;
use realize::net::protocol::BlobRange;
use realize::net::{Household, Offers, RequestError};
use realize::store::ROOT;
use realize::store::versions::{Content, Holding, PathRecord, Version};
use realize::sync::merge::VersionVector;

/// What the hostile peer lies about.
#[derive(Clone, Copy)]
enum Attack {
    /// The same page of changes again and again, never advancing.
    SamePage,
    /// Pages of one path whose records each bring 64 new holders.
    HolderFlood,
    /// A file whose bytes, when read, are not the ones its hash names.
    WrongBytes,
    /// A file of 4 TiB, more than the disk holds.
    HugeSize,
    /// A name of 300 bytes (NAME_MAX is 255).
    LongName,
}

/// The honest bytes of the file the attacks name, and their lie.
const GOOD: &[u8] = b"the bytes its hash names";
const EVIL: &[u8] = b"bytes of another content!";

/// A core that answers as `inner` does but for `attack`.
struct Hostile {
    inner: Arc<dyn Core>,
    me: PeerId,
    attack: Attack,
}

impl Hostile {
    /// A record of a file at `path` of `size` bytes, blob `hash`, by the
    /// hostile peer.
    fn file(&self, path: &str, hash: BlobHash, size: u64) -> (Vec<u8>, PathRecord) {
        let version = Version {
            vv: VersionVector::default().with(self.me, 1),
            content: Content::File(hash),
            mtime: 1_790_000_000,
            size,
            perm: 0o644,
            author: self.me,
        };
        let holders = [(
            self.me,
            Holding {
                clock: 1,
                hash: Some(hash),
            },
        )]
        .into();
        let record = PathRecord {
            siblings: vec![version],
            holders,
            ..Default::default()
        };
        (path.as_bytes().to_vec(), record)
    }
}

/// A made-up peer id, `n` in its first bytes.
fn fake_peer(n: u64) -> PeerId {
    let mut id = [0xabu8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    PeerId(id)
}

impl Core for Hostile {
    fn household(&self) -> &Household {
        self.inner.household()
    }
    fn net_timeout(&self) -> Duration {
        self.inner.net_timeout()
    }
    fn policy(&self) -> Policy {
        self.inner.policy()
    }
    fn name(&self) -> Result<String, RequestError> {
        self.inner.name()
    }
    fn peers(&self) -> Result<Vec<KnownPeer>, RequestError> {
        self.inner.peers()
    }
    fn seen(&self, peer: PeerId, name: Option<String>) -> Result<(), RequestError> {
        self.inner.seen(peer, name)
    }
    fn offers(&self, peer: PeerId) -> Result<Offers, RequestError> {
        self.inner.offers(peer)
    }
    fn shared_areas(&self) -> Result<Vec<(PeerId, Vec<u8>)>, RequestError> {
        self.inner.shared_areas()
    }
    fn has_area(&self, area: &[u8]) -> Result<bool, RequestError> {
        self.inner.has_area(area)
    }
    fn round_needed(&self, peer: PeerId, area: &[u8], theirs: Seq) -> Result<bool, RequestError> {
        self.inner.round_needed(peer, area, theirs)
    }
    fn changes(&self, _peer: PeerId, _area: &[u8], since: Seq) -> Result<Page, RequestError> {
        let good = hash_bytes(GOOD);
        let size = GOOD.len() as u64;
        Ok(match self.attack {
            Attack::SamePage => Page {
                records: vec![self.file("again", good, size)],
                last: since,
                more: true,
            },
            Attack::HolderFlood if since.0 < 20 => {
                let (path, mut record) = self.file("flood", good, size);
                for i in 0..64 {
                    let holding = Holding {
                        clock: 10 + since.0,
                        hash: Some(good),
                    };
                    record.holders.insert(fake_peer(since.0 * 64 + i), holding);
                }
                record.holders.remove(&self.me);
                Page {
                    records: vec![(path, record)],
                    last: Seq(since.0 + 1),
                    more: true,
                }
            }
            Attack::HolderFlood => Page::default(),
            Attack::WrongBytes if since.0 == 0 => Page {
                records: vec![self.file("bad", good, size)],
                last: Seq(1),
                more: false,
            },
            Attack::WrongBytes => Page::default(),
            Attack::HugeSize if since.0 == 0 => Page {
                records: vec![self.file("huge", BlobHash([0x66; 32]), 4 << 40)],
                last: Seq(1),
                more: false,
            },
            Attack::HugeSize => Page::default(),
            Attack::LongName => Page {
                records: vec![self.file(&"n".repeat(300), good, size)],
                last: Seq(since.0 + 1),
                more: false,
            },
        })
    }
    fn begin_pull(&self, peer: PeerId, area: &[u8]) -> Result<Box<dyn AreaPull>, RequestError> {
        self.inner.begin_pull(peer, area)
    }
    fn read_blob(
        &self,
        peer: PeerId,
        range: &BlobRange,
        outboard: bool,
    ) -> Result<Vec<u8>, RequestError> {
        if range.hash == hash_bytes(GOOD) && !outboard {
            let start = (range.offset as usize).min(EVIL.len());
            let end = (start + range.len as usize).min(GOOD.len());
            return Ok(EVIL[start..end.max(start)].to_vec());
        }
        self.inner.read_blob(peer, range, outboard)
    }
    fn holds(
        &self,
        peer: PeerId,
        area: &[u8],
        path: &[u8],
        hash: BlobHash,
    ) -> Result<bool, RequestError> {
        self.inner.holds(peer, area, path, hash)
    }
    fn round_ended(&self, conflicts: u64) {
        self.inner.round_ended(conflicts)
    }
}

/// The hostile peer: its core (kept alive), network and id.
struct Mallory {
    _core: cores::Peer,
    network: Option<Network>,
    id: PeerId,
}

impl Drop for Mallory {
    fn drop(&mut self) {
        if let Some(network) = self.network.take() {
            network.shutdown();
        }
    }
}

/// Starts a hostile peer that shares area `s` with `honest` (which lists
/// and shares with it in turn).
fn mallory(attack: Attack, honest: &[&Peer]) -> Mallory {
    let (core, identity) = cores::Peer::open("mallory");
    let fs = &core.fs;
    fs.mkdir(ROOT, OsStr::new("s"), 0o755, 0, cores::ME)
        .unwrap();
    let port = free_port();
    for p in honest {
        core.ctl("peers", &format!("add {} {} honest", p.id(), p.listen))
            .unwrap();
        core.ctl("areas", &format!("share s {}", p.id())).unwrap();
    }
    let hostile = Hostile {
        inner: fs.tree().clone() as Arc<dyn Core>,
        me: core.id,
        attack,
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let network = Network::start(Arc::new(hostile), &identity, Some(addr)).unwrap();
    for p in honest {
        p.write_ctl(
            ".ctl/peers",
            &format!("add {} 127.0.0.1:{port} mallory", core.id),
        )
        .unwrap();
        let _ = std::fs::create_dir(p.path("s"));
        p.write_ctl(".ctl/areas", &format!("share s {}", core.id))
            .unwrap();
    }
    let id = core.id;
    Mallory {
        _core: core,
        network: Some(network),
        id,
    }
}

#[test]
fn a_peer_that_sends_the_same_page_forever_ends_its_pull_and_the_mount_serves_on() {
    let a = Peer::start();
    std::fs::create_dir(a.path("s")).unwrap();
    std::fs::write(a.path("s/mine"), b"local").unwrap();
    let m = mallory(Attack::SamePage, &[&a]);
    wait_until("a to connect to mallory", || {
        a.state_of(&m.id.to_string()).as_deref() == Some("connected")
    });
    let errno = a.ctl_errno(".ctl/consensus", &format!("now {}", m.id));
    assert_eq!(errno, libc::EHOSTUNREACH, "the round must fail");
    let rounds = a.read(".ctl/consensus");
    assert!(
        rounds
            .lines()
            .any(|l| l.starts_with(&m.id.to_string()) && l.contains(" refused ")),
        "{rounds}"
    );
    let log = a.log_text();
    assert!(
        log.contains(&format!("{} sent a page", m.id)) && log.contains("no progress"),
        "{log}"
    );
    assert_eq!(std::fs::read(a.path("s/mine")).unwrap(), b"local");
}

#[test]
fn a_flood_of_holders_is_bounded_and_honest_peers_still_sync_the_area() {
    let (a, c) = (Peer::start(), Peer::start());
    household(&[&a, &c], "s");
    let m = mallory(Attack::HolderFlood, &[&a]);
    wait_until("a to connect to mallory", || {
        a.state_of(&m.id.to_string()).as_deref() == Some("connected")
    });
    a.write_ctl(".ctl/consensus", &format!("now {}", m.id))
        .unwrap();
    assert!(a.path("s/flood").exists());
    // What a serves back stays within what c accepts: c's rounds with a
    // go on, and bring the file.
    std::fs::write(a.path("s/after"), b"honest change").unwrap();
    a.wait_recorded("s");
    c.write_ctl(".ctl/consensus", &format!("now {}", a.id()))
        .unwrap();
    assert!(c.path("s/flood").exists());
    assert_eq!(std::fs::read(c.path("s/after")).unwrap(), b"honest change");
    consensus(&a);
}

#[test]
fn bytes_that_do_not_match_their_hash_are_refused_and_logged_with_the_peer() {
    let a = Peer::start();
    // The read waits for another holder until then: there is none.
    a.write_ctl(".ctl/config", "net.timeout 2s").unwrap();
    let m = mallory(Attack::WrongBytes, &[&a]);
    wait_until("a to connect to mallory", || {
        a.state_of(&m.id.to_string()).as_deref() == Some("connected")
    });
    a.write_ctl(".ctl/consensus", &format!("now {}", m.id))
        .unwrap();
    assert!(a.path("s/bad").exists());
    let read = std::fs::read(a.path("s/bad"));
    assert!(read.is_err(), "read {:?}", read.map(String::from_utf8));
    let log = a.log_text();
    assert!(
        log.contains(&format!("bytes from {} do not match its hash", m.id)),
        "{log}"
    );
    // The mount serves on.
    std::fs::write(a.path("s/other"), b"fine").unwrap();
    assert_eq!(std::fs::read(a.path("s/other")).unwrap(), b"fine");
}

#[test]
fn a_file_claimed_larger_than_the_disk_fails_without_emptying_the_cache() {
    let (a, c) = (Peer::start(), Peer::start());
    household(&[&a, &c], "s");
    a.write_ctl("s/.ctl/mode", "unreal").unwrap();
    std::fs::write(c.path("s/kept"), b"cached on a").unwrap();
    c.wait_recorded("s");
    consensus(&c);
    assert_eq!(std::fs::read(a.path("s/kept")).unwrap(), b"cached on a");
    assert_eq!(common::files::state(&a, "s", "kept"), "cached");
    a.write_ctl(".ctl/config", "net.timeout 2s").unwrap();
    let m = mallory(Attack::HugeSize, &[&a]);
    wait_until("a to connect to mallory", || {
        a.state_of(&m.id.to_string()).as_deref() == Some("connected")
    });
    a.write_ctl(".ctl/consensus", &format!("now {}", m.id))
        .unwrap();
    assert_eq!(std::fs::metadata(a.path("s/huge")).unwrap().len(), 4 << 40);
    assert!(std::fs::read(a.path("s/huge")).is_err());
    // Asked to keep it real: no room, and nothing evicted for it.
    a.write_ctl("s/.ctl/ctl", "real huge").unwrap();
    wait_until("a to give up realizing huge", || {
        a.log_text()
            .contains("do not fit even with the cache emptied")
    });
    assert_eq!(common::files::state(&a, "s", "kept"), "cached");
    assert_eq!(std::fs::read(a.path("s/kept")).unwrap(), b"cached on a");
}

#[test]
fn requests_for_an_area_not_shared_with_the_peer_are_refused_and_logged() {
    let a = Peer::start();
    std::fs::create_dir(a.path("private")).unwrap();
    std::fs::write(a.path("private/secret"), b"not for mallory").unwrap();
    a.wait_recorded("private");
    let m = mallory(Attack::HolderFlood, &[&a]);
    // Mallory has an area of the same name and says it shares it with a;
    // a shares only `s` with mallory.
    let fs = &m._core.fs;
    fs.mkdir(ROOT, OsStr::new("private"), 0o755, 0, cores::ME)
        .unwrap();
    m._core
        .ctl("areas", &format!("share private {}", a.id()))
        .unwrap();
    wait_until("a to connect to mallory", || {
        a.state_of(&m.id.to_string()).as_deref() == Some("connected")
    });
    let asked = m._core.ctl("consensus", &format!("now {}", a.id()));
    assert!(asked.is_err(), "mallory's round of private must fail");
    let log = a.log_text();
    assert!(
        log.contains(&format!("refused a request from {}: area not shared", m.id)),
        "{log}"
    );
    let private = m._core.fs.lookup(ROOT, OsStr::new("private")).unwrap().ino;
    assert!(
        m._core.fs.lookup(private, OsStr::new("secret")).is_err(),
        "a's private file reached mallory"
    );
}

#[test]
fn a_page_with_a_name_too_long_is_refused_with_the_peer_named() {
    let a = Peer::start();
    let m = mallory(Attack::LongName, &[&a]);
    wait_until("a to connect to mallory", || {
        a.state_of(&m.id.to_string()).as_deref() == Some("connected")
    });
    let errno = a.ctl_errno(".ctl/consensus", &format!("now {}", m.id));
    assert_eq!(errno, libc::EHOSTUNREACH);
    let log = a.log_text();
    assert!(
        log.contains(&format!(
            "answer from {}: invalid message: bad page of records",
            m.id
        )),
        "{log}"
    );
    assert_eq!(std::fs::read_dir(a.path("s")).unwrap().count(), 0);
}

/// A peer that opens more streams than it may and never reads an answer
/// (on some it never even sends its request), over raw QUIC with a key a
/// lists: each stream is closed at `net.timeout`, so the streams past the
/// limit of 32 open in their turn; both kinds are logged with the peer's
/// id, and an honest peer syncs the area with a meanwhile.
#[test]
fn streams_never_read_are_closed_at_net_timeout_and_honest_peers_sync_on() {
    use realize::net::protocol::{self, Message};
    use s2n_quic::client::Connect;

    let (a, c) = (Peer::start(), Peer::start());
    household(&[&a, &c], "s");
    a.write_ctl(".ctl/config", "net.timeout 2s").unwrap();
    std::fs::write(a.path("s/big"), vec![7u8; 32 << 20]).unwrap();
    a.wait_recorded("s");
    let hash = realize::format::parse_hash(&common::files::status_hash(&a, "s", "big")).unwrap();
    let identity = realize::net::identity::Identity::generate().unwrap();
    let mallory = identity.peer_id();
    a.write_ctl(".ctl/peers", &format!("add {mallory} - mallory"))
        .unwrap();
    a.write_ctl(".ctl/areas", &format!("share s {mallory}"))
        .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let a_id: PeerId = a.id().parse().unwrap();
    let addr: SocketAddr = a.listen.parse().unwrap();
    let attack = runtime.spawn(async move {
        let trust = Arc::new(realize::net::tls::Trust::default());
        trust.allow(a_id);
        let tls: s2n_quic::provider::tls::rustls::Client =
            realize::net::tls::client_config(&identity, trust)
                .unwrap()
                .into();
        let client = s2n_quic::Client::builder()
            .with_tls(tls)
            .unwrap()
            .with_io("0.0.0.0:0")
            .unwrap()
            .start()
            .unwrap();
        let connect = Connect::new(addr).with_server_name(a_id.to_string().as_str());
        let mut connection = client.connect(connect).await.unwrap();
        let mut hello = connection.open_bidirectional_stream().await.unwrap();
        let ours = Message::Hello {
            version: protocol::VERSION,
            name: "mallory".into(),
            areas: vec![(b"s".to_vec(), Seq(0))],
            incarnation: 1,
        };
        protocol::send(&mut hello, &ours).await.unwrap();
        protocol::recv(&mut hello).await.unwrap();
        // 8 reads of 16 MiB never read, then 40 streams with no request:
        // 48 in all, past the limit of 32 open at once.
        let mut held = Vec::new();
        for i in 0..48u64 {
            let mut stream = connection.open_bidirectional_stream().await.unwrap();
            if i < 8 {
                let range = BlobRange {
                    area: b"s".to_vec(),
                    path: b"big".to_vec(),
                    hash,
                    offset: (i % 2) * (16 << 20),
                    len: 16 << 20,
                };
                protocol::send(&mut stream, &Message::ReadBlob(range))
                    .await
                    .unwrap();
            }
            held.push(stream);
        }
        (client, connection, held)
    });
    // Meanwhile an honest peer's change reaches a.
    std::fs::write(c.path("s/honest"), b"still syncing").unwrap();
    c.wait_recorded("s");
    consensus(&c);
    assert_eq!(std::fs::read(a.path("s/honest")).unwrap(), b"still syncing");
    // Every stream opened: the ones before were closed by a.
    let opened =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), attack).await });
    let (_client, _connection, held) = opened.expect("streams past 32 never opened").unwrap();
    assert_eq!(held.len(), 48);
    // The answers never read end at their own deadline, after the
    // streams that carried no request.
    for needle in [
        format!("request from {mallory}: none within net.timeout; stream closed"),
        format!("answer to {mallory}: not taken within net.timeout; stream closed"),
    ] {
        wait_until(&needle, || a.log_text().contains(&needle));
    }
    assert_eq!(std::fs::read(a.path("s/big")).unwrap().len(), 32 << 20);
}
