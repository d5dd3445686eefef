//! Peers over QUIC on 127.0.0.1: who may connect, who dials, and the
//! `/.ctl/peers` commands with their errors.

mod common;

use common::{Peer, introduce, wait_until};

#[test]
fn two_peers_that_know_each_other_connect() {
    let (a, b) = (Peer::start(), Peer::start());
    introduce(&a, &b);
    let (ida, idb) = (a.id(), b.id());
    wait_until("a to see b connected", || {
        a.state_of(&idb).as_deref() == Some("connected")
    });
    wait_until("b to see a connected", || {
        b.state_of(&ida).as_deref() == Some("connected")
    });
    // While both dials settle on one connection the state may flicker:
    // wait for the whole line.
    let expected = format!("{idb} b {} connected ", b.listen);
    wait_until("a's line for b", || {
        a.read(".ctl/peers").starts_with(&expected)
    });
    let line = a.read(".ctl/peers");
    assert!(line.trim_end().ends_with('Z'), "LAST_SEEN {line}");
    assert!(a.stat("net.rx_bytes") > 0 && a.stat("net.tx_bytes") > 0);
    // `connect` to a connected peer succeeds at once.
    a.write_ctl(".ctl/peers", &format!("connect {idb}"))
        .unwrap();
}

#[test]
fn an_unknown_key_is_refused_and_counted() {
    let (a, b) = (Peer::start(), Peer::start());
    // a knows b, b does not know a.
    a.write_ctl(".ctl/config", "net.timeout 3s").unwrap();
    a.write_ctl(".ctl/peers", &format!("add {} {}", b.id(), b.listen))
        .unwrap();
    let errno = a.ctl_errno(".ctl/peers", &format!("connect {}", b.id()));
    assert!(
        errno == libc::EHOSTUNREACH || errno == libc::ETIMEDOUT,
        "errno {errno}"
    );
    wait_until("b to count the refusal", || {
        b.stat("handshake.refused") >= 1
    });
    assert_ne!(a.state_of(&b.id()).as_deref(), Some("connected"));
    assert!(b.read(".ctl/peers").is_empty());
    assert!(
        b.log_text().contains("handshake refused"),
        "{}",
        b.log_text()
    );
    assert!(
        a.read(".ctl/errors")
            .contains(&format!("/.ctl/peers connect {}", b.id()))
    );
}

#[test]
fn a_deaf_peer_connects_through_a_listening_one() {
    let (listening, deaf) = (Peer::start(), Peer::start_deaf());
    introduce(&listening, &deaf);
    let (idl, idd) = (listening.id(), deaf.id());
    wait_until("the deaf peer to connect", || {
        deaf.state_of(&idl).as_deref() == Some("connected")
    });
    wait_until("the listening peer to see it", || {
        listening.state_of(&idd).as_deref() == Some("connected")
    });
    assert!(
        listening
            .read(".ctl/peers")
            .contains(&format!("{idd} a - connected"))
            || listening.read(".ctl/peers").contains(" - connected")
    );
    // The listening peer cannot dial a deaf one, but it is connected anyway.
    listening
        .write_ctl(".ctl/peers", &format!("connect {idd}"))
        .unwrap();
}

#[test]
fn disconnect_holds_a_peer_off_until_connect() {
    let (a, b) = (Peer::start(), Peer::start());
    introduce(&a, &b);
    let idb = b.id();
    wait_until("connected", || {
        a.state_of(&idb).as_deref() == Some("connected")
    });
    a.write_ctl(".ctl/peers", &format!("disconnect {idb}"))
        .unwrap();
    wait_until("offline", || a.state_of(&idb).as_deref() == Some("offline"));
    a.write_ctl(".ctl/peers", &format!("connect {idb}"))
        .unwrap();
    assert_eq!(a.state_of(&idb).as_deref(), Some("connected"));
}

#[test]
fn peers_commands_and_their_errors() {
    let a = Peer::start();
    let stranger = Peer::start_deaf().id();
    let own = a.id();
    assert_eq!(a.ctl_errno(".ctl/peers", "add not-a-peer"), libc::EINVAL);
    assert_eq!(
        a.ctl_errno(".ctl/peers", &format!("add {own}")),
        libc::EINVAL
    );
    assert_eq!(
        a.ctl_errno(".ctl/peers", &format!("add {stranger} nowhere")),
        libc::EINVAL
    );
    assert_eq!(
        a.ctl_errno(".ctl/peers", &format!("add {stranger} host:0")),
        libc::EINVAL
    );
    a.write_ctl(".ctl/peers", &format!("add {stranger} - far"))
        .unwrap();
    assert_eq!(
        a.ctl_errno(".ctl/peers", &format!("add {stranger}")),
        libc::EEXIST
    );
    assert_eq!(
        a.read(".ctl/peers"),
        format!("{stranger} far - offline -\n")
    );
    // A deaf peer has no address to dial.
    assert_eq!(
        a.ctl_errno(".ctl/peers", &format!("connect {stranger}")),
        libc::EHOSTUNREACH
    );
    let unknown = "a".repeat(52); // a well-formed id nobody has
    for cmd in ["remove", "connect", "disconnect"] {
        assert_eq!(
            a.ctl_errno(".ctl/peers", &format!("{cmd} {unknown}")),
            libc::ENOENT,
            "{cmd}"
        );
    }
    assert_eq!(a.ctl_errno(".ctl/peers", "add"), libc::EINVAL);
    assert_eq!(a.ctl_errno(".ctl/peers", "greet x"), libc::EINVAL);
    // Shares need a known peer; a removed peer loses its shares.
    std::fs::create_dir(a.path("photos")).unwrap();
    assert_eq!(
        a.ctl_errno(".ctl/areas", &format!("share photos {unknown}")),
        libc::ENOENT
    );
    assert_eq!(
        a.ctl_errno(".ctl/areas", &format!("unshare photos {stranger}")),
        libc::ENOENT
    );
    a.write_ctl(".ctl/areas", &format!("share photos {stranger}"))
        .unwrap();
    assert_eq!(
        a.ctl_errno(".ctl/areas", &format!("share photos {stranger}")),
        libc::EEXIST
    );
    assert_eq!(
        a.read(".ctl/areas"),
        format!("photos real 0 0 {stranger}\n")
    );
    a.write_ctl(".ctl/peers", &format!("remove {stranger}"))
        .unwrap();
    assert_eq!(a.read(".ctl/areas"), "photos real 0 0 -\n");
    assert!(a.read(".ctl/peers").is_empty());
    assert_eq!(a.read(".ctl/errors").lines().count(), 14);
}

#[test]
fn a_restarted_peer_is_dialled_again() {
    let (a, mut b) = (Peer::start(), Peer::start());
    introduce(&a, &b);
    let idb = b.id();
    wait_until("connected", || {
        a.state_of(&idb).as_deref() == Some("connected")
    });
    // A clean stop closes the connection: a notices at once.
    assert!(b.stop().success());
    wait_until("a to notice", || {
        a.state_of(&idb).as_deref() != Some("connected")
    });
    b.mount();
    // a redials on its own (b also dials a: whichever comes first).
    wait_until("a to redial b", || {
        a.state_of(&idb).as_deref() == Some("connected")
    });
}

#[test]
fn three_peers_form_one_household() {
    let peers = [Peer::start(), Peer::start(), Peer::start_deaf()];
    for i in 0..3 {
        for j in i + 1..3 {
            introduce(&peers[i], &peers[j]);
        }
    }
    let ids: Vec<String> = peers.iter().map(Peer::id).collect();
    for (i, p) in peers.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                wait_until("every pair connected", || {
                    p.state_of(id).as_deref() == Some("connected")
                });
            }
        }
    }
}
