//! Durability (issue "Hostile peers and hard faults", point 4; realize.7
//! "Durability"): what a peer is sent is on disk first, so that no number
//! a peer holds is reused after a power loss; and a crash in the middle of
//! an unrealize never leaves a real file that is also the cache's file of
//! its blob.

mod common;
mod cores;
mod lossy;

use std::os::unix::fs::MetadataExt;

use common::files::{pattern, state, status_hash, write_file};
use common::{Peer, consensus, household, wait_until};

#[test]
fn what_a_peer_is_sent_is_flushed_before_it_leaves() {
    let (peers, _net) = cores::join(2);
    let (a, b) = (&peers[0], &peers[1]);
    a.write("f", b"one", false);
    let before = a.fs.store().syncs();
    // b pulls from a: a answers with a page of its feed.
    b.ctl("consensus", "now").unwrap();
    assert!(a.fs.store().syncs() > before, "a page left before a flush");
    assert_eq!(b.read(b.ino("f").unwrap()), b"one");
}

/// A power loss, simulated: `kill -9`, then `DATA/db` keeps a random part
/// of what LMDB wrote since it last flushed (tests/lossy). Whatever it
/// keeps, the database opens, and what the peer changes after the restart
/// reaches the peer that pulled before the loss: no sequence number or
/// version counter that peer holds is given again (it would skip the
/// changes that got them).
#[test]
fn after_a_power_loss_no_number_a_peer_holds_is_given_again() {
    // Declared before the peer, so dropped after it: unmounted once the
    // daemon that uses it is gone.
    let mut mounted = None;
    let mut a = Peer::start_prepared(|data| {
        let db = data.join("db");
        std::fs::create_dir_all(&db).unwrap();
        mounted = Some(lossy::Lossy::mount(&db));
    });
    let lossy = mounted.as_mut().expect("mounted");
    let b = Peer::start();
    household(&[&a, &b], "s");
    write_file(&a, "s/edited", b"first");
    let mut dropped = 0;
    for round in 0..4u8 {
        // Three sequence numbers and version counters, pulled by b.
        for edit in 0..3 {
            write_file(
                &a,
                &format!("s/f{round}"),
                &pattern(1000, 10 * round + edit),
            );
        }
        consensus(&a);
        let pulled = pattern(1000, 10 * round + 2);
        wait_until("b to pull f", || {
            std::fs::read(b.path(&format!("s/f{round}"))).ok() == Some(pulled.clone())
        });
        // Changes b has not seen, which the loss may take.
        write_file(&a, &format!("s/unsent{round}"), b"unsent");
        write_file(&a, "s/edited", &pattern(1000, 100 + round));
        a.kill9();
        dropped += lossy.power_loss(u64::from(round));
        a.mount();
        // One change after the restart: b must see it.
        let after = pattern(2000, 200 + round);
        write_file(&a, &format!("s/after{round}"), &after);
        consensus(&a);
        wait_until("b to pull what a changed after the loss", || {
            std::fs::read(b.path(&format!("s/after{round}"))).ok() == Some(after.clone())
        });
        assert_eq!(
            std::fs::read(a.path(&format!("s/f{round}"))).unwrap(),
            pulled
        );
    }
    // Else the losses took nothing, and this tested nothing.
    assert!(dropped > 0, "no write was lost");
    a.stop();
}

/// After a crash, what the Real lost (a power loss drops what the disk had
/// not written back, as a file and a directory a pull made) is kept as
/// recorded: the file shows unreal and is fetched again, the directory is
/// made again, and no peer is told to delete them. After a clean
/// unmount, what left the Real meanwhile is deleted, as before.
#[test]
fn what_the_real_lost_in_a_crash_is_fetched_again_not_deleted() {
    let (mut a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "s");
    a.write_ctl("s/.ctl/mode", "real").unwrap();
    std::fs::create_dir(b.path("s/d")).unwrap();
    let bytes = pattern(100_000, 7);
    write_file(&b, "s/d/f", &bytes);
    consensus(&b);
    wait_until("a to realize d/f", || a.real("s/d/f").is_file());
    a.kill9();
    // What a power loss may leave of the Real: not what the pull made.
    std::fs::remove_dir_all(a.real("s/d")).unwrap();
    a.mount();
    assert_eq!(std::fs::read(a.path("s/d/f")).unwrap(), bytes);
    wait_until("a to realize d/f again", || a.real("s/d/f").is_file());
    consensus(&a);
    consensus(&b);
    assert_eq!(std::fs::read(b.path("s/d/f")).unwrap(), bytes);
    let history = a.read(".ctl/history");
    assert!(
        !history
            .lines()
            .any(|l| l.contains(" delete ") || l.contains(" rmdir ")),
        "{history}"
    );
    // A clean unmount: a file removed from the Real meanwhile is deleted.
    a.stop();
    std::fs::remove_file(a.real("s/d/f")).unwrap();
    a.mount();
    consensus(&a);
    wait_until("b to delete d/f", || !b.path("s/d/f").exists());
}

/// Whether `path`'s file is one of the files of `cache` (the same inode).
fn in_cache(cache: &std::path::Path, path: &std::path::Path) -> bool {
    let meta = std::fs::metadata(path).unwrap();
    std::fs::read_dir(cache).unwrap().any(|e| {
        let c = std::fs::metadata(e.unwrap().path()).unwrap();
        (c.dev(), c.ino()) == (meta.dev(), meta.ino())
    })
}

#[test]
fn an_unrealize_killed_after_its_commit_leaves_no_real_file_shared_with_the_cache() {
    let (mut a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "s");
    b.write_ctl("s/.ctl/mode", "real").unwrap();
    let bytes = pattern(100_000, 3);
    write_file(&a, "s/f", &bytes);
    consensus(&a);
    wait_until("b to realize f", || b.real("s/f").is_file());
    a.write_ctl("s/.ctl/mode", "unreal").unwrap();
    common::wait_until_within(
        "a to unrealize f",
        std::time::Duration::from_secs(60),
        || state(&a, "s", "f") == "cached",
    );
    let hash = status_hash(&a, "s", "f");
    let cached = a.data.join("cache").join(&hash);
    a.stop();
    // What a kill between the commit and the unlink leaves: the real file
    // is the cache's file under a second name.
    std::fs::hard_link(&cached, a.real("s/f")).unwrap();
    a.mount();
    assert!(!a.real("s/f").exists(), "the unrealize was not finished");
    assert_eq!(state(&a, "s", "f"), "cached");
    std::fs::write(a.path("s/f"), b"edited").unwrap();
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        bytes,
        "the cached blob changed"
    );
}

#[test]
fn an_unrealize_killed_before_its_commit_leaves_no_link_to_become_a_cache_file() {
    let mut a = Peer::start();
    std::fs::create_dir(a.path("k")).unwrap();
    write_file(&a, "k/f", &pattern(100_000, 4));
    let hash = status_hash(&a, "k", "f");
    a.stop();
    // What a kill between the link into the stash and the commit leaves.
    let link = a.data.join("stash").join(format!("{hash}-unrealize-9"));
    std::fs::hard_link(a.real("k/f"), &link).unwrap();
    a.mount();
    assert!(!link.exists());
    assert_eq!(state(&a, "k", "f"), "real");
    assert!(!in_cache(&a.data.join("cache"), &a.real("k/f")));
    // An edit in place changes the real file only.
    std::fs::write(a.path("k/f"), b"edited").unwrap();
    a.wait_recorded("k");
    for entry in std::fs::read_dir(a.data.join("cache")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), name);
    }
}

/// b's copy of a's file, read once (so in b's cache, verified), and its
/// hash; b stopped.
fn cached_on_b(bytes: &[u8]) -> (Peer, Peer, String) {
    let (a, mut b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "s");
    write_file(&a, "s/f", bytes);
    consensus(&a);
    assert_eq!(std::fs::read(b.path("s/f")).unwrap(), bytes);
    assert_eq!(state(&b, "s", "f"), "cached");
    let hash = status_hash(&b, "s", "f");
    b.stop();
    (a, b, hash)
}

/// What a realize killed after it moved the cache file into the stash and
/// before its commit left (it committed second then): a verified record
/// whose file waits in the stash. The mount puts the file back in the
/// cache (it deleted it, taking the record's word), and the realize takes
/// it from there, fetching nothing.
#[test]
fn a_cache_file_a_killed_realize_left_in_the_stash_is_realized_whole() {
    let bytes = pattern(100_000, 5);
    let (_a, mut b, hash) = cached_on_b(&bytes);
    std::fs::rename(
        b.data.join("cache").join(&hash),
        b.data.join("stash").join(format!("{hash}-realize-9")),
    )
    .unwrap();
    b.mount();
    b.write_ctl("s/.ctl/mode", "real").unwrap();
    wait_until("b to realize f", || state(&b, "s", "f") == "real");
    assert_eq!(std::fs::read(b.real("s/f")).unwrap(), bytes);
    assert_eq!(b.stat("fetch.bytes"), 0, "fetched again");
}

/// b's copy of a's file as a power loss may leave it: its cache file
/// gone (`cut` false) or cut to 1000 bytes, its record saying it is
/// whole; b mounted again.
fn lost_from_b_cache(bytes: &[u8], cut: bool) -> (Peer, Peer) {
    let (a, mut b, hash) = cached_on_b(bytes);
    let cached = b.data.join("cache").join(&hash);
    match cut {
        true => std::fs::File::options()
            .write(true)
            .open(&cached)
            .unwrap()
            .set_len(1000)
            .unwrap(),
        false => std::fs::remove_file(&cached).unwrap(),
    }
    b.mount();
    (a, b)
}

/// A power loss that dropped a cache file its record names (or cut it
/// short): nothing verifies the bytes on their way into the Real, so the
/// realize must not move what the path holds; the blob is fetched again.
#[test]
fn a_cache_record_without_its_file_is_fetched_again_not_realized_empty() {
    let bytes = pattern(100_000, 6);
    for cut in [false, true] {
        let (_a, b) = lost_from_b_cache(&bytes, cut);
        b.write_ctl("s/.ctl/mode", "real").unwrap();
        wait_until("b to realize f", || state(&b, "s", "f") == "real");
        let real = std::fs::read(b.real("s/f")).unwrap();
        assert!(
            real == bytes,
            "cut: {cut}: {} bytes, not the blob's",
            real.len()
        );
        assert!(b.stat("fetch.bytes") >= bytes.len() as u64 - 1000);
    }
}

/// The same, read through the mount while unreal: a missing or cut cache
/// file is fetched again, never read short (a read past its end failed
/// with EIO).
#[test]
fn a_cache_record_without_its_file_is_fetched_again_not_read_short() {
    let bytes = pattern(100_000, 7);
    for cut in [false, true] {
        let (_a, b) = lost_from_b_cache(&bytes, cut);
        let read = std::fs::read(b.path("s/f")).unwrap();
        assert!(
            read == bytes,
            "cut: {cut}: {} bytes, not the blob's",
            read.len()
        );
    }
}
