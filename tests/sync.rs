//! Consensus between peers on real mounts: files written on one peer are
//! listed on the others, unreal, and read over QUIC.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Peer, consensus, household};

#[test]
fn a_file_written_on_one_peer_is_listed_and_read_on_another() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "docs");
    std::fs::create_dir(a.path("docs/notes")).unwrap();
    let text = b"hello from a\n".repeat(1000);
    std::fs::write(a.path("docs/notes/hello.txt"), &text).unwrap();
    let script = a.path("docs/notes/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    a.wait_recorded("docs/notes");
    consensus(&a);
    let on_b = b.path("docs/notes/hello.txt");
    let meta = std::fs::metadata(&on_b).unwrap();
    assert_eq!(meta.len(), text.len() as u64);
    let status = b.read("docs/notes/.ctl/status");
    assert!(status.contains("hello.txt file unreal"), "{status}");
    assert!(!b.real("docs/notes/hello.txt").exists());
    assert_eq!(std::fs::read(&on_b).unwrap(), text);
    // Permission bits travel: a script stays executable.
    let mode = std::fs::metadata(b.path("docs/notes/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o750);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!(b.read("docs/notes/run.sh"), "#!/bin/sh\necho ran\n");
    assert_eq!(b.stat("fetch.blobs"), 2);
    assert_eq!(b.stat("fetch.bytes"), text.len() as u64 + 19);
    assert!(
        b.read("docs/notes/.ctl/status")
            .contains("hello.txt file cached")
    );
    // b accepted the share of an area it lacked: made in mode.remote.
    assert_eq!(
        b.read(".ctl/areas"),
        format!("docs unreal 2 {} {}\n", text.len() + 19, a.id())
    );
    assert_eq!(b.read("docs/.ctl/mode"), "unreal\n");
    // Holders, as the round told: a, by the name b gave it.
    let holders = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.realize.holders"])
        .arg(&on_b)
        .output()
        .unwrap();
    assert_eq!(holders.stdout, b"a", "{holders:?}");
}

/// Lines of a directory's `.ctl/status`, by name: (state, holders).
fn status(p: &Peer, dir: &str) -> std::collections::BTreeMap<String, (String, String)> {
    p.read(&format!("{dir}/.ctl/status"))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), (f[2].to_string(), f[6].to_string()))
        })
        .collect()
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.push(format!("{rel}/"));
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_renamed_directory_is_renamed_on_the_holder_without_transfer() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "photos");
    // b keeps its photos real, a only reads them.
    b.write_ctl("photos/.ctl/mode", "real").unwrap();
    a.write_ctl("photos/.ctl/mode", "unreal").unwrap();
    std::fs::create_dir(b.path("photos/2019")).unwrap();
    for i in 0..1000 {
        std::fs::write(
            b.path(&format!("photos/2019/{i}.jpg")),
            format!("photo {i}"),
        )
        .unwrap();
    }
    b.wait_recorded("photos/2019");
    consensus(&b);
    assert_eq!(a.read("photos/2019/7.jpg"), "photo 7");
    // Reading one small file fetched its neighbours too: wait for them.
    common::wait_until("a's prefetches", || a.read(".ctl/transfers").is_empty());
    let fetched = a.stat("fetch.bytes");
    assert!(fetched > 7, "the neighbours of 7.jpg came with it");
    // a renames what it sees; b holds the bytes and only renames.
    std::fs::rename(a.path("photos/2019"), a.path("photos/old")).unwrap();
    consensus(&a);
    assert!(!b.path("photos/2019").exists());
    assert_eq!(
        std::fs::read_dir(b.path("photos/old")).unwrap().count(),
        1000
    );
    assert_eq!(b.read("photos/old/999.jpg"), "photo 999");
    assert!(b.real("photos/old/999.jpg").is_file(), "still real on b");
    let st = status(&b, "photos/old");
    assert_eq!(st["5.jpg"].0, "real");
    assert_eq!(b.stat("fetch.bytes"), 0, "b fetched nothing");
    assert_eq!(a.stat("fetch.bytes"), fetched, "a fetched nothing more");
    assert_eq!(tree(&a.path("photos")), tree(&b.path("photos")));
}

#[test]
fn concurrent_writes_converge_with_one_conflict_copy() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "w");
    std::fs::write(a.path("w/report.txt"), "first draft\n").unwrap();
    a.wait_recorded("w");
    consensus(&a);
    assert_eq!(b.read("w/report.txt"), "first draft\n");
    // Both change it while apart (no automatic round can run).
    a.write_ctl(".ctl/peers", &format!("disconnect {}", b.id()))
        .unwrap();
    std::fs::write(a.path("w/report.txt"), "a's version\n").unwrap();
    std::fs::write(b.path("w/report.txt"), "b's version, longer\n").unwrap();
    a.wait_recorded("w");
    b.wait_recorded("w");
    a.write_ctl(".ctl/peers", &format!("connect {}", b.id()))
        .unwrap();
    consensus(&a);
    let (ta, tb) = (tree(&a.path("w")), tree(&b.path("w")));
    assert_eq!(ta, tb);
    assert_eq!(ta.len(), 2, "{ta:?}");
    let copy = ta
        .iter()
        .find(|n| n.contains(".conflict-"))
        .expect("a conflict copy")
        .clone();
    assert!(
        copy.starts_with("report.conflict-") && copy.ends_with(".txt"),
        "{copy}"
    );
    let texts = |p: &Peer| {
        let mut t = vec![p.read("w/report.txt"), p.read(&format!("w/{copy}"))];
        t.sort();
        t
    };
    assert_eq!(texts(&a), ["a's version\n", "b's version, longer\n"]);
    assert_eq!(texts(&a), texts(&b));
    assert_eq!(a.read("w/report.txt"), b.read("w/report.txt"));
    let conflicts = a.read(".ctl/conflicts");
    assert_eq!(conflicts.lines().count(), 1, "{conflicts}");
    assert!(conflicts.starts_with("w report.txt "), "{conflicts}");
    assert_eq!(conflicts, b.read(".ctl/conflicts"));
    assert_eq!(status(&a, "w")["report.txt"].0, "conflict");
    // Clearing keeps both files and forgets the conflict, on both peers.
    a.write_ctl(".ctl/conflicts", "clear w report.txt").unwrap();
    assert!(a.read(".ctl/conflicts").is_empty());
    consensus(&a);
    assert!(b.read(".ctl/conflicts").is_empty());
    assert_eq!(tree(&a.path("w")), tree(&b.path("w")));
    assert_eq!(
        a.ctl_errno(".ctl/conflicts", "clear w report.txt"),
        libc::ENOENT
    );
    assert_eq!(a.ctl_errno(".ctl/conflicts", "clear"), libc::EINVAL);
}

#[test]
fn a_deaf_peer_syncs_through_a_listening_one() {
    let (listening, deaf) = (Peer::start(), Peer::start_deaf());
    household(&[&listening, &deaf], "d");
    std::fs::write(
        deaf.path("d/from-deaf"),
        "served over the connection it opened",
    )
    .unwrap();
    deaf.wait_recorded("d");
    consensus(&deaf);
    assert_eq!(
        listening.read("d/from-deaf"),
        "served over the connection it opened"
    );
    // And the other way, started from the listening side.
    std::fs::write(listening.path("d/from-listening"), "back").unwrap();
    listening.wait_recorded("d");
    consensus(&listening);
    assert_eq!(deaf.read("d/from-listening"), "back");
}

#[test]
fn an_unshared_area_never_reaches_a_peer() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "shared");
    std::fs::create_dir(a.path("private")).unwrap();
    std::fs::write(a.path("private/secret"), "not for b").unwrap();
    std::fs::write(a.path("shared/open"), "for b").unwrap();
    a.wait_recorded("private");
    a.wait_recorded("shared");
    consensus(&a);
    assert_eq!(b.read("shared/open"), "for b");
    assert!(!b.path("private").exists());
    // b asks for it: a refuses, b's round fails and says so.
    b.write_ctl(".ctl/areas", &format!("share private {}", a.id()))
        .unwrap();
    assert_eq!(
        b.ctl_errno(".ctl/consensus", "now private"),
        libc::EHOSTUNREACH
    );
    assert!(
        b.read(".ctl/consensus")
            .lines()
            .any(|l| l.contains(" private ") && l.contains(" refused "))
    );
    assert!(
        std::fs::read_dir(b.path("private"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(b.read(".ctl/errors").contains("area not shared"));
}

#[test]
fn a_holder_killed_during_a_read_fails_it_cleanly() {
    use std::io::Read;
    let (mut a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "big");
    b.write_ctl(".ctl/config", "net.timeout 2s").unwrap();
    let data: Vec<u8> = (0..64u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(a.path("big/blob"), &data).unwrap();
    a.wait_recorded("big");
    consensus(&a);
    let mut file = std::fs::File::open(b.path("big/blob")).unwrap();
    let mut got = vec![0; 1 << 20];
    file.read_exact(&mut got).unwrap();
    assert_eq!(got, data[..1 << 20]);
    // The fetch shows in /.ctl/transfers while part of the blob is cached.
    let hash = blake3::hash(&data).to_hex().to_string();
    let line = b.read(".ctl/transfers");
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 7, "{line}");
    assert_eq!((f[0], f[1], f[2]), (hash.as_str(), "big", "blob"));
    let (done, total): (u64, u64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
    assert!(
        done >= 1 << 20 && done < total && total == data.len() as u64,
        "{line}"
    );
    assert_eq!(f[6].trim_end(), a.id());
    assert!(b.read("big/.ctl/status").starts_with("blob file partial:"));
    a.kill9();
    let mut rest = Vec::new();
    let err = file.read_to_end(&mut rest).expect_err("the holder is gone");
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH));
    let read = (1 << 20) + rest.len();
    assert!(read < data.len());
    assert_eq!(
        rest,
        data[1 << 20..read],
        "bytes read before the failure are right"
    );
    // Listed still, and a fresh read fails the same way.
    assert_eq!(
        std::fs::metadata(b.path("big/blob")).unwrap().len(),
        data.len() as u64
    );
}

#[test]
fn rounds_run_on_their_own_after_changes() {
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "auto");
    // No `now`: a recorded write starts a round, and so does a delete.
    std::fs::write(a.path("auto/note"), "by itself").unwrap();
    common::wait_until("the note to reach b", || b.path("auto/note").exists());
    assert_eq!(b.read("auto/note"), "by itself");
    std::fs::remove_file(a.path("auto/note")).unwrap();
    common::wait_until("the delete to reach b", || !b.path("auto/note").exists());
    // b applies the delete before a's round has ended and been counted.
    common::wait_until("a's two rounds to end", || a.stat("consensus.rounds") >= 2);
    // A round that ran is listed with its result.
    assert!(
        a.read(".ctl/consensus")
            .lines()
            .any(|l| l.starts_with(&b.id()) && l.contains(" auto ") && l.contains(" ok "))
    );
}

/// Copies `from` into `to` (files, directories and symlinks); returns the
/// number of files.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> usize {
    std::fs::create_dir_all(to).unwrap();
    let mut files = 0;
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if t.is_dir() {
            files += copy_tree(&src, &dst);
        } else if t.is_file() {
            std::fs::copy(&src, &dst).unwrap();
            files += 1;
        }
    }
    files
}

/// Checks that `copy` holds what `original` holds, byte for byte.
fn same_tree(original: &std::path::Path, copy: &std::path::Path) -> usize {
    let mut files = 0;
    for e in std::fs::read_dir(original).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), copy.join(e.file_name()));
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            assert_eq!(
                std::fs::read_link(&src).unwrap(),
                std::fs::read_link(&dst).unwrap()
            );
        } else if t.is_dir() {
            files += same_tree(&src, &dst);
        } else if t.is_file() {
            let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
            assert!(a == b, "{} differs", dst.display());
            files += 1;
        }
    }
    let names = |d: &std::path::Path| {
        let mut n: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(original), names(copy), "{}", copy.display());
    files
}

/// Waits until every file below `dir` of `p` is recorded.
fn wait_tree_recorded(p: &Peer, dir: &str) {
    p.wait_recorded(dir);
    for e in std::fs::read_dir(p.path(dir)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            wait_tree_recorded(p, &format!("{dir}/{}", e.file_name().to_string_lossy()));
        }
    }
}

#[test]
fn a_real_tree_arrives_byte_for_byte() {
    // Part of /usr/share/doc: real text, gzip files and symlinks, present
    // on any Debian machine.
    let source = std::path::Path::new("/usr/share/doc");
    let mut packages: Vec<_> = std::fs::read_dir(source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    packages.sort();
    packages.truncate(60);
    let staging = tempfile::tempdir().unwrap();
    for p in &packages {
        copy_tree(p, &staging.path().join(p.file_name().unwrap()));
    }
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "doc");
    let files = copy_tree(staging.path(), &a.path("doc"));
    assert!(files > 100, "only {files} files");
    wait_tree_recorded(&a, "doc");
    consensus(&a);
    assert_eq!(same_tree(staging.path(), &b.path("doc")), files);
    // Each distinct content came once, and was verified.
    fn contents(dir: &std::path::Path, into: &mut std::collections::HashSet<[u8; 32]>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                contents(&e.path(), into);
            } else if t.is_file() && e.metadata().unwrap().len() > 0 {
                into.insert(*blake3::hash(&std::fs::read(e.path()).unwrap()).as_bytes());
            }
        }
    }
    let mut blobs = std::collections::HashSet::new();
    contents(staging.path(), &mut blobs);
    assert_eq!(b.stat("fetch.blobs") as usize, blobs.len());
    // Everything b applied, a's history no longer needs.
    assert!(
        a.read(".ctl/history").is_empty(),
        "{}",
        a.read(".ctl/history")
    );
    assert!(b.stat("fetch.blobs") > 100);
    assert_eq!(b.stat("verify.failures"), 0);
}

#[test]
fn three_peers_pass_changes_and_bytes_along() {
    // a and c never meet: b shares the area with both.
    let (a, b, c) = (Peer::start(), Peer::start(), Peer::start());
    household(&[&a, &b], "chain");
    common::introduce(&b, &c);
    b.write_ctl(".ctl/areas", &format!("share chain {}", c.id()))
        .unwrap();
    c.write_ctl(".ctl/areas", &format!("share chain {}", b.id()))
        .unwrap();
    std::fs::write(a.path("chain/from-a"), "made on a").unwrap();
    std::fs::write(c.path("chain/from-c"), "made on c").unwrap();
    a.wait_recorded("chain");
    c.wait_recorded("chain");
    consensus(&a);
    assert_eq!(b.read("chain/from-a"), "made on a"); // fetched from a, cached on b
    consensus(&b);
    // c learnt a's file from b, and reads it from b's cache.
    assert_eq!(c.read("chain/from-a"), "made on a");
    // a reads c's file from b once b has it whole (b serves its cache).
    // b's rounds with a and c run at once: a learns c's file at its own
    // next round with b, not necessarily in b's (realize.7: two passes).
    assert_eq!(b.read("chain/from-c"), "made on c");
    consensus(&a);
    assert_eq!(a.read("chain/from-c"), "made on c");
    for p in [&a, &b, &c] {
        assert_eq!(tree(&p.path("chain")), ["from-a", "from-c"]);
    }
    // c does not know a: its holder is named by the id's first characters.
    assert_eq!(
        status(&c, "chain")["from-a"].1,
        a.id()[..8],
        "holders as b told c"
    );
    assert_eq!(status(&b, "chain")["from-a"].1, "a");
}

#[test]
fn consensus_commands_and_their_errors() {
    let (a, mut b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "e");
    consensus(&a);
    let line = a.read(".ctl/consensus");
    assert!(line.starts_with(&format!("{} e ", b.id())), "{line}");
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 7, "{line}");
    assert!(f[2].ends_with('Z') && f[3] == "ok", "{line}");
    assert_eq!(a.ctl_errno(".ctl/consensus", "later"), libc::EINVAL);
    assert_eq!(a.ctl_errno(".ctl/consensus", "now a b"), libc::EINVAL);
    assert_eq!(a.ctl_errno(".ctl/consensus", "now nowhere"), libc::ENOENT);
    assert_eq!(
        a.ctl_errno(".ctl/consensus", &format!("now {}", "a".repeat(52))),
        libc::ENOENT
    );
    a.write_ctl(".ctl/consensus", &format!("now {}", b.id()))
        .unwrap();
    a.write_ctl(".ctl/consensus", "now e").unwrap();
    // The peer goes away: a round fails with an errno cron can act on, and
    // says why.
    a.write_ctl(".ctl/config", "net.timeout 2s").unwrap();
    assert!(b.stop().success());
    let errno = a.ctl_errno(".ctl/consensus", "now");
    assert!(
        errno == libc::EHOSTUNREACH || errno == libc::ETIMEDOUT,
        "errno {errno}"
    );
    let line = a.read(".ctl/consensus");
    assert!(
        line.contains(" unreachable ") || line.contains(" timeout "),
        "{line}"
    );
    assert!(a.read(".ctl/errors").contains("/.ctl/consensus now: "));
    // The cron script says the same with its exit status.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/realize-consensus");
    let out = std::process::Command::new(script)
        .arg(&a.mnt)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the round failed"));
    b.mount();
    common::wait_until("b back", || {
        a.state_of(&b.id()).as_deref() == Some("connected")
    });
    let out = std::process::Command::new(script)
        .arg(&a.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_peer_killed_during_a_round_catches_up_at_the_next() {
    let (a, mut b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "k");
    a.write_ctl(".ctl/peers", &format!("disconnect {}", b.id()))
        .unwrap();
    for d in 0..10 {
        std::fs::create_dir(a.path(&format!("k/d{d}"))).unwrap();
        for i in 0..200 {
            std::fs::write(a.path(&format!("k/d{d}/f{i}")), format!("{d}/{i}")).unwrap();
        }
    }
    wait_tree_recorded(&a, "k");
    a.write_ctl(".ctl/peers", &format!("connect {}", b.id()))
        .unwrap();
    // b pulls 2,000 records on connect; kill it while it may be at it.
    std::thread::sleep(std::time::Duration::from_millis(30));
    b.kill9();
    b.mount();
    consensus(&b);
    assert_eq!(tree(&a.path("k")), tree(&b.path("k")));
    assert_eq!(b.read("k/d9/f199"), "9/199");
}

#[test]
fn writing_into_an_unreal_file_copies_it_up_first() {
    use std::io::Write;
    let (mut a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "up");
    let first = "line one\n".repeat(1000);
    std::fs::write(a.path("up/log.txt"), &first).unwrap();
    a.wait_recorded("up");
    consensus(&a);
    assert_eq!(status(&b, "up")["log.txt"].0, "unreal");
    // Appending on b fetches the whole file, makes it real, then writes.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(b.path("up/log.txt"))
        .unwrap();
    // With a away, b's history keeps the edit (a pulling it would let b
    // trim it) for the check below.
    a.stop();
    f.write_all(b"line two\n").unwrap();
    drop(f);
    assert!(b.real("up/log.txt").is_file());
    b.wait_recorded("up");
    let expected = format!("{first}line two\n");
    assert_eq!(b.read("up/log.txt"), expected);
    let new = blake3::hash(expected.as_bytes()).to_hex().to_string();
    let history = b.read(".ctl/history");
    assert!(
        history
            .lines()
            .any(|l| l.ends_with(&format!(" edit log.txt {new}"))),
        "{history}"
    );
    a.mount();
    consensus(&b);
    assert_eq!(a.read("up/log.txt"), expected);
    assert!(a.read(".ctl/conflicts").is_empty());
    // Truncating to a size keeps the bytes before it.
    std::fs::write(a.path("up/short"), "0123456789").unwrap();
    a.wait_recorded("up");
    consensus(&a);
    std::fs::OpenOptions::new()
        .write(true)
        .open(b.path("up/short"))
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(b.read("up/short"), "0123");
}

/// The `key value` lines of `/.ctl/cache`.
fn cache(p: &Peer) -> std::collections::BTreeMap<String, u64> {
    p.read(".ctl/cache")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_cache_keeps_its_bound_and_spares_open_files() {
    use std::io::{Read, Seek};
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "c");
    let files: Vec<Vec<u8>> = (0..5u8)
        .map(|k| {
            (0..8u32 << 20)
                .map(|i| (i / 4096) as u8 ^ k.wrapping_mul(37))
                .collect()
        })
        .collect();
    for (k, data) in files.iter().enumerate() {
        std::fs::write(a.path(&format!("c/f{k}")), data).unwrap();
    }
    a.wait_recorded("c");
    b.write_ctl(".ctl/cache", "max 12M").unwrap();
    consensus(&a);
    // A read storm of more than three times the bound.
    for (k, data) in files.iter().enumerate() {
        assert!(
            std::fs::read(b.path(&format!("c/f{k}"))).unwrap() == *data,
            "f{k}"
        );
        let c = cache(&b);
        assert!(c["used"] <= 12 << 20, "{c:?}");
        assert_eq!(c["max"], 12 << 20);
    }
    assert!(cache(&b)["evicted"] >= 3);
    // An open file's blob survives `evict`; the others go.
    let mut open = std::fs::File::open(b.path("c/f0")).unwrap();
    // The kernel kept f0's pages from the first read: drop them, so the
    // read goes through realize and its cache.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&open);
    assert_eq!(
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) },
        0
    );
    let mut got = Vec::new();
    open.read_to_end(&mut got).unwrap();
    assert!(got == files[0]);
    b.write_ctl(".ctl/cache", "evict").unwrap();
    let c = cache(&b);
    assert_eq!(
        (c["blobs"], c["pinned"], c["used"]),
        (1, 1, 8 << 20),
        "{c:?}"
    );
    open.rewind().unwrap();
    got.clear();
    open.read_to_end(&mut got).unwrap();
    assert!(got == files[0]);
    drop(open);
    b.write_ctl(".ctl/cache", "evict").unwrap();
    assert_eq!(cache(&b)["blobs"], 0);
    let st = status(&b, "c");
    assert_eq!(st.len(), 5);
    assert!(st.values().all(|(state, _)| state == "unreal"), "{st:?}");
    // One file at a time: fetch NAME, then evict NAME.
    b.write_ctl("c/.ctl/ctl", "fetch f3").unwrap();
    assert_eq!(status(&b, "c")["f3"].0, "cached");
    assert_eq!(cache(&b)["blobs"], 1);
    b.write_ctl("c/.ctl/ctl", "evict f3").unwrap();
    assert_eq!(status(&b, "c")["f3"].0, "unreal");
    assert_eq!(cache(&b)["blobs"], 0);
    assert_eq!(b.ctl_errno("c/.ctl/ctl", "evict nothing"), libc::ENOENT);
    assert_eq!(a.ctl_errno("c/.ctl/ctl", "evict f3"), libc::EBUSY); // real on a
    assert_eq!(b.ctl_errno(".ctl/cache", "max lots"), libc::EINVAL);
    assert_eq!(b.ctl_errno(".ctl/cache", "flush"), libc::EINVAL);
    assert_eq!(b.ctl_errno(".ctl/cache", "evict now"), libc::EINVAL);
    assert!(b.read(".ctl/errors").contains("/.ctl/cache flush: "));
}

#[test]
fn now_sends_what_was_just_written_and_waits_for_open_files() {
    use std::io::Write;
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "docs");
    // Nothing would be recorded on its own for an hour.
    a.write_ctl(".ctl/config", "consensus.rest 1h").unwrap();
    std::fs::create_dir(a.path("docs/tree")).unwrap();
    for i in 0..50 {
        std::fs::write(a.path(&format!("docs/tree/f{i}")), format!("file {i}")).unwrap();
    }
    let mut open = std::fs::File::create(a.path("docs/open.txt")).unwrap();
    open.write_all(b"half written").unwrap();
    assert_eq!(a.read(".ctl/health"), "docs open.txt pending open\n");
    // One `now`, right after the writes, sends every closed file.
    consensus(&a);
    for i in 0..50 {
        let on_b = std::fs::read_to_string(b.path(&format!("docs/tree/f{i}")));
        assert_eq!(on_b.unwrap(), format!("file {i}"), "f{i} after one round");
    }
    // The open file waits for its writer.
    assert_ne!(
        std::fs::read(b.path("docs/open.txt")).ok().as_deref(),
        Some(&b"half written"[..])
    );
    drop(open);
    consensus(&a);
    assert_eq!(
        std::fs::read(b.path("docs/open.txt")).unwrap(),
        b"half written"
    );
    assert_eq!(a.read(".ctl/health"), "");
}

/// A file larger than one part of an outboard (2 GiB of blob): its
/// outboard comes and is kept a part at a time, and a read far into it
/// fetches that outboard and one chunk, not the file.
#[test]
fn a_read_deep_in_a_file_of_several_outboard_parts_fetches_little() {
    use std::os::unix::fs::FileExt;
    let (a, b) = (Peer::start(), Peer::start());
    household(&[&a, &b], "big");
    let size = (2u64 << 30) + (1 << 20);
    let file = std::fs::File::create(a.path("big/sparse")).unwrap();
    file.set_len(size).unwrap();
    file.write_all_at(b"head", 0).unwrap();
    file.write_all_at(b"deep in the second part", (2 << 30) + 100)
        .unwrap();
    drop(file);
    a.wait_recorded("big");
    consensus(&a);
    common::wait_until("the file on b", || b.path("big/sparse").exists());
    let on_b = std::fs::File::open(b.path("big/sparse")).unwrap();
    assert_eq!(on_b.metadata().unwrap().len(), size);
    let mut buf = [0u8; 23];
    on_b.read_exact_at(&mut buf, (2 << 30) + 100).unwrap();
    assert_eq!(&buf, b"deep in the second part");
    // Of the blob, one chunk (the last: 1 MiB); its outboard (1 MiB and
    // 512 bytes, in two parts, checked against the hash) is not counted.
    let fetched = b.stat("fetch.bytes");
    assert_eq!(fetched, 1 << 20);
    let mut head = [0u8; 4];
    on_b.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"head");
}
