//! Kept versions on real mounts: every version a local write, a
//! truncation, a rename over it, a delete or a peer's record replaced
//! stays listed in `DIR/.ctl/versions` and comes back with
//! `restore NAME HASH`, its bytes from this peer's cache or from any peer
//! that still has them; `versions.max` bounds them.

mod common;

use std::os::unix::fs::FileExt;

use common::files::{pattern, state, status_hash, write_file};
use common::{Peer, consensus, household, wait_until};

/// `DIR/.ctl/versions` lines of `name`, split: [NAME, TIME, PEER, HASH,
/// SIZE, WHERE].
fn versions(p: &Peer, dir: &str, name: &str) -> Vec<Vec<String>> {
    p.read(&format!("{dir}/.ctl/versions"))
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f[0] == name)
        .collect()
}

/// The hash of the kept version of `name` whose size is `size`.
fn kept_hash(p: &Peer, dir: &str, name: &str, size: usize) -> String {
    versions(p, dir, name)
        .into_iter()
        .find(|f| f[4] == size.to_string())
        .unwrap_or_else(|| panic!("no kept version of {name} of {size} bytes"))[3]
        .clone()
}

#[test]
fn local_edits_truncations_renames_and_deletes_are_kept_and_restored() {
    let a = Peer::start();
    std::fs::create_dir(a.path("k")).unwrap();
    let one = pattern(100_000, 1);
    write_file(&a, "k/f", &one);
    let h1 = status_hash(&a, "k", "f");
    // An edit in place.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(a.path("k/f"))
        .unwrap();
    file.write_all_at(b"edited", 500).unwrap();
    drop(file);
    a.wait_recorded("k");
    let listed = versions(&a, "k", "f");
    assert_eq!(listed.len(), 1, "{listed:?} {}", a.log_text());
    assert_eq!(
        (listed[0][3].as_str(), listed[0][5].as_str()),
        (h1.as_str(), "cached")
    );
    // A truncation, then a rename over it, then a delete.
    std::fs::write(a.path("k/f"), b"short").unwrap();
    a.wait_recorded("k");
    std::fs::write(a.path("k/g"), b"other file").unwrap();
    a.wait_recorded("k");
    std::fs::rename(a.path("k/g"), a.path("k/f")).unwrap();
    a.wait_recorded("k");
    std::fs::remove_file(a.path("k/f")).unwrap();
    let sizes: Vec<String> = versions(&a, "k", "f")
        .iter()
        .map(|f| f[4].clone())
        .collect();
    assert_eq!(sizes, ["10", "5", "100000", "100000"], "newest first");
    assert!(versions(&a, "k", "f").iter().all(|f| f[5] == "cached"));
    // Each comes back byte for byte, as a write that is recorded.
    a.write_ctl("k/.ctl/ctl", &format!("restore f {h1}"))
        .unwrap();
    assert_eq!(std::fs::read(a.path("k/f")).unwrap(), one);
    a.wait_recorded("k");
    assert_eq!(status_hash(&a, "k", "f"), h1);
    assert!(
        a.history()
            .iter()
            .any(|op| op.get(3).map(String::as_str) == Some("create")
                && op.get(4).map(String::as_str) == Some("f"))
    );
    let short = kept_hash(&a, "k", "f", 5);
    a.write_ctl("k/.ctl/ctl", &format!("restore f {short}"))
        .unwrap();
    assert_eq!(std::fs::read(a.path("k/f")).unwrap(), b"short");
    // The version the restore replaced is kept in turn.
    a.wait_recorded("k");
    assert!(
        versions(&a, "k", "f").iter().filter(|f| f[3] == h1).count() >= 2,
        "{:?} {}",
        versions(&a, "k", "f"),
        a.log_text()
    );
}

#[test]
fn restore_refuses_what_it_cannot_do_with_the_design_errnos() {
    let a = Peer::start();
    std::fs::create_dir(a.path("k")).unwrap();
    write_file(&a, "k/f", b"one");
    let h1 = status_hash(&a, "k", "f");
    std::fs::write(a.path("k/f"), b"two").unwrap();
    a.wait_recorded("k");
    let none = "0".repeat(64);
    assert_eq!(
        a.ctl_errno("k/.ctl/ctl", &format!("restore nosuch {h1}")),
        libc::ENOENT
    );
    assert_eq!(
        a.ctl_errno("k/.ctl/ctl", &format!("restore f {none}")),
        libc::ENOENT
    );
    assert_eq!(a.ctl_errno("k/.ctl/ctl", "restore f nothex"), libc::EINVAL);
    assert_eq!(a.ctl_errno("k/.ctl/ctl", "restore f"), libc::EINVAL);
    assert_eq!(
        a.ctl_errno(".ctl/config", "versions.keep forever"),
        libc::EINVAL
    );
    assert_eq!(a.ctl_errno(".ctl/config", "versions.max 0%"), libc::EINVAL);
    let errors = a.read(".ctl/errors");
    for needle in [
        "restore nosuch",
        "restore f nothex",
        "versions.keep forever",
        "versions.max 0%",
    ] {
        assert!(errors.contains(needle), "{needle} not in {errors}");
    }
    assert_eq!(
        std::fs::read(a.path("k/f")).unwrap(),
        b"two",
        "nothing changed"
    );
    // versions.keep 0: nothing more is kept, and what was kept expires.
    a.write_ctl(".ctl/config", "versions.keep 0").unwrap();
    std::fs::write(a.path("k/f"), b"three").unwrap();
    a.wait_recorded("k");
    assert_eq!(versions(&a, "k", "f"), Vec::<Vec<String>>::new());
}

#[test]
fn versions_max_bounds_a_stream_of_edits() {
    let a = Peer::start();
    std::fs::create_dir(a.path("k")).unwrap();
    a.write_ctl(".ctl/config", "versions.max 1M").unwrap();
    for i in 0..12u8 {
        write_file(&a, "k/log", &pattern(300_000, i));
    }
    let kept = versions(&a, "k", "log");
    let total: u64 = kept.iter().map(|f| f[4].parse::<u64>().unwrap()).sum();
    assert!(total <= 1 << 20, "{total} bytes kept");
    assert_eq!(kept.len(), 3, "the newest three of 300 KB fit in 1 MiB");
    // The newest kept one is the version before the current.
    assert_eq!(
        std::fs::read(a.path("k/log")).unwrap(),
        pattern(300_000, 11)
    );
    let newest = kept[0][3].clone();
    a.write_ctl("k/.ctl/ctl", &format!("restore log {newest}"))
        .unwrap();
    assert_eq!(
        std::fs::read(a.path("k/log")).unwrap(),
        pattern(300_000, 10)
    );
}

#[test]
fn a_file_a_peer_overwrote_or_deleted_is_restored_on_the_other_peer() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "s");
    b.write_ctl("s/.ctl/mode", "real").unwrap();
    let one = pattern(3 << 20, 4);
    write_file(&a, "s/doc", &one);
    write_file(&a, "s/gone", b"deleted on a");
    consensus(&a);
    wait_until("b to realize both", || {
        b.real("s/doc").is_file() && b.real("s/gone").is_file()
    });
    let h1 = status_hash(&b, "s", "doc");
    let gone = status_hash(&b, "s", "gone");
    std::fs::write(a.path("s/doc"), b"scrambled").unwrap();
    a.wait_recorded("s");
    std::fs::remove_file(a.path("s/gone")).unwrap();
    consensus(&a);
    wait_until("b to take both changes", || {
        std::fs::read(b.path("s/doc")).ok().as_deref() == Some(&b"scrambled"[..])
            && !b.path("s/gone").exists()
    });
    assert_eq!(versions(&b, "s", "doc")[0][5], "cached");
    b.write_ctl("s/.ctl/ctl", &format!("restore doc {h1}"))
        .unwrap();
    b.write_ctl("s/.ctl/ctl", &format!("restore gone {gone}"))
        .unwrap();
    assert_eq!(std::fs::read(b.path("s/doc")).unwrap(), one);
    assert_eq!(std::fs::read(b.path("s/gone")).unwrap(), b"deleted on a");
    b.wait_recorded("s");
    consensus(&b);
    wait_until("a to get both back", || {
        std::fs::read(a.path("s/gone")).ok().as_deref() == Some(&b"deleted on a"[..])
            && status_hash(&a, "s", "doc") == h1
    });
    assert_eq!(std::fs::read(a.path("s/doc")).unwrap(), one);
}

#[test]
fn a_kept_version_only_a_third_peer_has_is_fetched_from_it() {
    let (a, b, mut c) = (Peer::start(), Peer::start(), Peer::start());
    household(&[&a, &b, &c], "t");
    c.write_ctl("t/.ctl/mode", "real").unwrap();
    a.write_ctl(".ctl/config", "versions.keep 0").unwrap();
    let one = pattern(2 << 20, 8);
    write_file(&a, "t/photo", &one);
    consensus(&a);
    wait_until("c to realize it", || c.real("t/photo").is_file());
    let h1 = status_hash(&c, "t", "photo");
    std::fs::write(a.path("t/photo"), b"overwritten").unwrap();
    a.wait_recorded("t");
    consensus(&a);
    wait_until("b and c to take the overwrite", || {
        status_hash(&b, "t", "photo") == status_hash(&a, "t", "photo")
            && status_hash(&c, "t", "photo") == status_hash(&a, "t", "photo")
    });
    // b never had the old bytes; a kept nothing; c kept them.
    assert_eq!(versions(&b, "t", "photo")[0][5], "peers");
    assert!(versions(&a, "t", "photo").is_empty());
    assert_eq!(versions(&c, "t", "photo")[0][5], "cached");
    // With c away, no peer has the bytes: EHOSTUNREACH after net.timeout.
    c.stop();
    b.write_ctl(".ctl/config", "net.timeout 2s").unwrap();
    let restore = format!("restore photo {h1}");
    assert_eq!(b.ctl_errno("t/.ctl/ctl", &restore), libc::EHOSTUNREACH);
    assert!(b.read(".ctl/errors").contains("restore photo"));
    assert_eq!(std::fs::read(b.path("t/photo")).unwrap(), b"overwritten");
    c.mount();
    let idc = c.id();
    wait_until("b to reconnect to c", || {
        b.state_of(&idc).as_deref() == Some("connected")
    });
    b.write_ctl("t/.ctl/ctl", &restore).unwrap();
    assert_eq!(std::fs::read(b.path("t/photo")).unwrap(), one);
    assert_eq!(state(&b, "t", "photo"), "dirty");
}

/// `YYYY` and `MMDD` of the day (UTC) `days_ago` days before today.
fn day_path(days_ago: u64) -> (String, String) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400 * days_ago);
    let text = humantime::format_rfc3339_seconds(when).to_string();
    (
        text[0..4].to_string(),
        format!("{}{}", &text[5..7], &text[8..10]),
    )
}

#[test]
fn the_dump_shows_a_deleted_directory_as_it_was_and_cp_restores_it() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "p");
    b.write_ctl("p/.ctl/mode", "real").unwrap();
    std::fs::create_dir_all(a.path("p/trip/sub")).unwrap();
    let files = [
        ("trip/one.jpg", pattern(300_000, 1)),
        ("trip/two.jpg", pattern(5 << 20, 2)),
        ("trip/sub/three.txt", b"three".to_vec()),
    ];
    // Written two days ago, as far as their times say.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    for (path, bytes) in &files {
        std::fs::write(a.path(&format!("p/{path}")), bytes).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(a.path(&format!("p/{path}")))
            .unwrap();
        f.set_modified(old).unwrap();
    }
    a.wait_recorded("p/trip");
    a.wait_recorded("p/trip/sub");
    consensus(&a);
    wait_until("b to realize the trip", || {
        files
            .iter()
            .all(|(p, _)| b.real(&format!("p/{p}")).is_file())
    });
    // A mistaken rm -r on a reaches b at the next round.
    std::fs::remove_dir_all(a.path("p/trip")).unwrap();
    consensus(&a);
    wait_until("b to lose the trip", || !b.path("p/trip").exists());
    let (year, yesterday) = day_path(1);
    let (_, today) = day_path(0);
    let days = std::fs::read_dir(b.path(&format!(".ctl/dump/{year}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert!(
        days.contains(&yesterday) && days.contains(&today),
        "{days:?}"
    );
    let dump = format!(".ctl/dump/{year}/{yesterday}/p/trip");
    assert!(!b.path(&format!(".ctl/dump/{year}/{today}/p/trip")).exists());
    // Writes anywhere under the dump: EROFS, logged.
    let errno = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    let new = b.path(&format!("{dump}/new"));
    assert_eq!(errno(std::fs::write(&new, b"x")), Some(libc::EROFS));
    let one = b.path(&format!("{dump}/one.jpg"));
    assert_eq!(errno(std::fs::remove_file(&one)), Some(libc::EROFS));
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .open(&one)
        .map(|_| ());
    assert_eq!(errno(opened), Some(libc::EROFS));
    assert!(b.read(".ctl/errors").contains(".ctl/dump/"));
    // cp -r from the dump restores the directory as it was.
    let cp = std::process::Command::new("cp")
        .arg("-r")
        .arg(b.path(&dump))
        .arg(b.path("p/"))
        .status()
        .unwrap();
    assert!(cp.success());
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(b.path(&format!("p/{path}"))).unwrap(),
            bytes,
            "{path}"
        );
    }
    b.wait_recorded("p/trip");
    consensus(&b);
    wait_until("a to get the trip back", || {
        files
            .iter()
            .all(|(p, bytes)| std::fs::read(a.path(&format!("p/{p}"))).ok().as_ref() == Some(bytes))
    });
}

#[test]
fn a_file_a_peer_renamed_is_unchanged_after_a_crash_and_its_version_kept_when_overwritten() {
    let (mut a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "s");
    write_file(&a, "s/old", b"written on a");
    consensus(&a);
    wait_until("b to list old", || b.path("s/old").exists());
    let h = status_hash(&b, "s", "old");
    std::fs::rename(b.path("s/old"), b.path("s/new")).unwrap();
    consensus(&b);
    wait_until("a to take the rename", || {
        a.real("s/new").is_file() && !a.path("s/old").exists()
    });
    // The bytes moved on a with the namespace's mtime: a reconciliation
    // after kill -9 takes the file for unchanged...
    a.kill9();
    a.mount();
    assert_eq!(state(&a, "s", "new"), "real");
    // ...so overwriting it at once keeps the version it replaces (the only
    // copy of those bytes in the household).
    std::fs::write(a.path("s/new"), b"overwritten").unwrap();
    a.wait_recorded("s");
    let kept = versions(&a, "s", "new");
    assert_eq!(kept_hash(&a, "s", "new", 12), h, "{kept:?}");
    assert_eq!(kept[0][5], "cached", "{kept:?}");
}

#[test]
fn a_file_only_touched_while_unmounted_keeps_its_version_when_overwritten() {
    let mut a = Peer::start();
    std::fs::create_dir(a.path("k")).unwrap();
    write_file(&a, "k/f", b"first bytes");
    let h = status_hash(&a, "k", "f");
    // A long rest keeps it waiting to be recorded after the mount.
    a.write_ctl(".ctl/config", "consensus.rest 1h").unwrap();
    a.stop();
    // Only its mtime changes: the mount takes it for dirty until it is
    // hashed again, but its bytes are still the recorded version.
    let file = std::fs::File::options()
        .write(true)
        .open(a.real("k/f"))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    drop(file);
    a.mount();
    assert_eq!(state(&a, "k", "f"), "dirty");
    std::fs::write(a.path("k/f"), b"second").unwrap();
    a.write_ctl(".ctl/config", "consensus.rest 50ms").unwrap();
    a.wait_recorded("k");
    let kept = versions(&a, "k", "f");
    assert_eq!(kept_hash(&a, "k", "f", 11), h, "{kept:?}");
    assert_eq!(kept[0][5], "cached", "{kept:?}");
}
