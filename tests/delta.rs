//! Delta edits on real mounts: a peer that has the blob a file was edited
//! from (real, or cached whole or in part) takes the pieces the two share
//! from it and fetches only the others, whether it realizes the edit,
//! fetches it whole or reads it through an unreal file.

mod common;

use std::os::unix::fs::FileExt;

use common::files::{pattern, state, status_hash, write_file};
use common::{Peer, consensus, household, wait_until};

/// Rewrites `len` bytes at `at` of `rel` on `p` (in place, through the
/// mount) with a pattern of `seed`, and the same in `bytes`.
fn edit(p: &Peer, rel: &str, bytes: &mut [u8], at: usize, len: usize, seed: u8) {
    let edit = pattern(len, seed);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(p.path(rel))
        .unwrap();
    file.write_all_at(&edit, at as u64).unwrap();
    drop(file);
    bytes[at..at + len].copy_from_slice(&edit);
}

/// Bytes of the pieces (64 KiB) that `len` bytes at `at` touch.
fn aligned(at: usize, len: usize) -> usize {
    let piece = 64 << 10;
    ((at + len).div_ceil(piece) - at / piece) * piece
}

#[test]
fn an_edit_moves_only_the_pieces_it_changed() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "e");
    b.write_ctl("e/.ctl/mode", "real").unwrap();
    let mut bytes = pattern(64 << 20, 5);
    write_file(&a, "e/disk.img", &bytes);
    consensus(&a);
    wait_until("b to realize disk.img", || b.real("e/disk.img").is_file());
    let (fetched, reused) = (b.stat("fetch.bytes"), b.stat("fetch.reused"));
    // 1 MiB rewritten in place, not aligned to pieces.
    let (at, len) = ((20 << 20) + 1000, 1 << 20);
    edit(&a, "e/disk.img", &mut bytes, at, len, 99);
    a.wait_recorded("e");
    consensus(&a);
    wait_until("b to realize the edit", || {
        status_hash(&b, "e", "disk.img") == status_hash(&a, "e", "disk.img")
            && state(&b, "e", "disk.img") == "real"
    });
    assert_eq!(std::fs::read(b.path("e/disk.img")).unwrap(), bytes);
    let moved = b.stat("fetch.bytes") - fetched;
    let aligned = aligned(at, len);
    assert!(
        moved as usize <= 2 * aligned,
        "{moved} bytes fetched for a {aligned}-byte piece-aligned change"
    );
    assert!(moved > 0);
    assert!(
        b.stat("fetch.reused") - reused >= 60 << 20,
        "the rest was reused"
    );
}

#[test]
fn an_edit_of_a_cached_file_fetches_only_its_changed_pieces() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "c");
    let mut bytes = pattern(16 << 20, 10);
    write_file(&a, "c/notes.db", &bytes);
    consensus(&a);
    assert_eq!(std::fs::read(b.path("c/notes.db")).unwrap(), bytes);
    assert_eq!(state(&b, "c", "notes.db"), "cached");
    let fetched = b.stat("fetch.bytes");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(a.path("c/notes.db"))
        .unwrap();
    file.write_all_at(b"changed", 5 << 20).unwrap();
    drop(file);
    bytes[5 << 20..(5 << 20) + 7].copy_from_slice(b"changed");
    a.wait_recorded("c");
    consensus(&a);
    assert_eq!(state(&b, "c", "notes.db"), "unreal");
    b.write_ctl("c/.ctl/ctl", "fetch notes.db").unwrap();
    assert_eq!(std::fs::read(b.path("c/notes.db")).unwrap(), bytes);
    assert_eq!(b.stat("fetch.bytes") - fetched, 64 << 10, "one piece");
}

#[test]
fn reading_an_edited_cached_file_fetches_only_its_changed_pieces_after_a_restart() {
    let (a, mut b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "d");
    let mut bytes = pattern(64 << 20, 3);
    write_file(&a, "d/big.img", &bytes);
    consensus(&a);
    assert_eq!(std::fs::read(b.path("d/big.img")).unwrap(), bytes);
    assert_eq!(state(&b, "d", "big.img"), "cached");
    // 1 MiB rewritten in the middle, not aligned to pieces.
    let (at, len) = ((32 << 20) + 1000, 1 << 20);
    edit(&a, "d/big.img", &mut bytes, at, len, 77);
    a.wait_recorded("d");
    consensus(&a);
    wait_until("b to list the edit", || {
        status_hash(&b, "d", "big.img") == status_hash(&a, "d", "big.img")
    });
    assert_eq!(state(&b, "d", "big.img"), "unreal");
    // The link from the edit to its base outlives a restart.
    b.stop();
    b.mount();
    let ida = a.id();
    wait_until("b to reconnect", || {
        b.state_of(&ida).as_deref() == Some("connected")
    });
    let (fetched, reused, rx) = (
        b.stat("fetch.bytes"),
        b.stat("fetch.reused"),
        b.stat("net.rx_bytes"),
    );
    // A ranged read inside the edit, then the whole file as cmp reads it.
    let file = std::fs::File::open(b.path("d/big.img")).unwrap();
    let mut some = vec![0; 4096];
    file.read_exact_at(&mut some, (at + 10) as u64).unwrap();
    assert_eq!(some, bytes[at + 10..at + 10 + 4096]);
    drop(file);
    assert_eq!(std::fs::read(b.path("d/big.img")).unwrap(), bytes);
    let moved = b.stat("fetch.bytes") - fetched;
    assert!(moved > 0, "the changed pieces were fetched");
    assert!(
        moved as usize <= aligned(at, len) + (64 << 10),
        "{moved} bytes fetched for a {}-byte piece-aligned change",
        aligned(at, len)
    );
    assert!(
        b.stat("fetch.reused") - reused >= 62 << 20,
        "the rest came from the base"
    );
    let received = b.stat("net.rx_bytes") - rx;
    assert!(received <= 2 << 20, "{received} bytes received");
}

#[test]
fn an_edit_built_from_a_cached_blob_leaves_it_to_the_other_files_that_show_it() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "e");
    b.write_ctl("e/.ctl/mode", "unreal").unwrap();
    let mut bytes = pattern(4 << 20, 6);
    write_file(&a, "e/one", &bytes);
    write_file(&a, "e/two", &bytes);
    consensus(&a);
    wait_until("b to list both", || b.path("e/two").exists());
    assert_eq!(std::fs::read(b.path("e/one")).unwrap(), bytes);
    assert_eq!(state(&b, "e", "two"), "cached");
    // one is edited: b builds the edit from the blob it has cached, which
    // two still shows.
    edit(&a, "e/one", &mut bytes, 1 << 20, 1000, 42);
    a.wait_recorded("e");
    consensus(&a);
    wait_until("b to list the edit", || {
        status_hash(&b, "e", "one") == status_hash(&a, "e", "one")
    });
    // Realized: the whole edit is built from the base at once.
    b.write_ctl("e/.ctl/ctl", "real one").unwrap();
    wait_until("b to realize one", || state(&b, "e", "one") == "real");
    assert_eq!(std::fs::read(b.path("e/one")).unwrap(), bytes);
    assert!(
        b.stat("fetch.reused") > 0,
        "the edit was not built from the base"
    );
    assert_eq!(state(&b, "e", "two"), "cached", "two's blob left the cache");
}
