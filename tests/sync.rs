//! Consensus between peers on real mounts: files written on one peer are
//! listed on the others, unreal, and read over QUIC.

mod common;

use common::{Peer, consensus, household};

#[test]
fn a_file_written_on_one_peer_is_listed_and_read_on_another() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "docs");
    std::fs::create_dir(a.path("docs/notes")).unwrap();
    let text = b"hello from a\n".repeat(1000);
    std::fs::write(a.path("docs/notes/hello.txt"), &text).unwrap();
    a.wait_recorded("docs/notes");
    consensus(&a);
    let on_b = b.path("docs/notes/hello.txt");
    let meta = std::fs::metadata(&on_b).unwrap();
    assert_eq!(meta.len(), text.len() as u64);
    let status = b.read("docs/notes/.ctl/status");
    assert!(status.contains("hello.txt file unreal"), "{status}");
    assert!(!b.real("docs/notes/hello.txt").exists());
    assert_eq!(std::fs::read(&on_b).unwrap(), text);
    assert_eq!(b.stat("fetch.blobs"), 1);
    assert!(b.stat("fetch.bytes") >= text.len() as u64);
}
