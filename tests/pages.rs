//! Pages of records applied to an in-process core, and the local changes
//! that must reach the pages: pages from a peer that sends what an honest
//! peer never would (issue "Hostile peers and hard faults", point 1: a
//! page is all or nothing in the Real as well as in LMDB, and nothing a
//! page does reaches outside the area), names that are not UTF-8, and
//! unrecorded files renamed over recorded ones.

mod cores;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;

use cores::{AREA, join};
use realize::ids::{PeerId, Seq};
use realize::store::ROOT;
use realize::store::versions::{Content, PathRecord, Version};
use realize::sync::merge::VersionVector;
use realize::sync::remote::Pull;

/// A record of one version of `path` by `author`.
fn record(
    path: &str,
    author: PeerId,
    seq: u64,
    content: Content,
    perm: u16,
) -> (Vec<u8>, PathRecord) {
    let version = Version {
        vv: VersionVector::default().with(author, seq),
        content,
        mtime: 1_790_000_000,
        size: 0,
        perm,
        author,
    };
    let record = PathRecord {
        siblings: vec![version],
        ..Default::default()
    };
    (path.as_bytes().to_vec(), record)
}

#[test]
fn a_page_that_fails_leaves_nothing_in_the_real_and_a_symlink_is_never_taken_for_a_directory() {
    let (peers, _net) = join(2);
    let (a, b) = (&peers[0], &peers[1]);
    let tree = a.fs.tree();
    let area = a.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
    let real = a.real_dir().join(AREA);
    // Outside DATA: what the symlink points at.
    let outside = a
        .real_dir()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let outside_mode = mode(&outside);
    // Something in the Real the namespace does not know (yet): a
    // directory record there fails with ENOTDIR, after the page's
    // symlink and directory were made.
    std::fs::write(real.join("stray"), b"not a directory").unwrap();
    let page = vec![
        record("x", b.id, 1, Content::Symlink(b"../../..".to_vec()), 0o777),
        record("made", b.id, 2, Content::Dir, 0o700),
        record(
            "made/inside",
            b.id,
            3,
            Content::Symlink(b"t".to_vec()),
            0o777,
        ),
        record("stray", b.id, 4, Content::Dir, 0o777),
    ];
    let mut pull = Pull::default();
    let failed = tree.apply_remote(area, b.id, Seq(4), page, &mut pull);
    assert!(failed.is_err(), "the page must fail at stray");
    for name in ["x", "made"] {
        assert!(
            std::fs::symlink_metadata(real.join(name)).is_err(),
            "{name} stayed in the Real after the page failed"
        );
        assert!(
            a.fs.lookup(area, OsStr::new(name)).is_err(),
            "{name} in the namespace"
        );
    }
    assert_eq!(
        std::fs::read(real.join("stray")).unwrap(),
        b"not a directory"
    );
    assert_eq!(pull.applied, 0);

    // A symlink applied for good, then a directory record at its path
    // with mode 0777: the symlink is replaced, never followed.
    let page = vec![record(
        "x",
        b.id,
        5,
        Content::Symlink(b"../../..".to_vec()),
        0o777,
    )];
    tree.apply_remote(area, b.id, Seq(5), page, &mut pull)
        .unwrap();
    assert!(
        std::fs::symlink_metadata(real.join("x"))
            .unwrap()
            .is_symlink()
    );
    let page = vec![record("x", b.id, 6, Content::Dir, 0o777)];
    tree.apply_remote(area, b.id, Seq(6), page, &mut pull)
        .unwrap();
    tree.finish_pull(pull).unwrap();
    assert!(std::fs::symlink_metadata(real.join("x")).unwrap().is_dir());
    assert_eq!(mode(&real.join("x")), 0o777);
    assert_eq!(
        mode(&outside),
        outside_mode,
        "a directory outside DATA changed"
    );

    // A symlink in the Real the namespace does not know, where a page
    // puts a directory: refused, nothing followed.
    std::os::unix::fs::symlink("../../..", real.join("sneaky")).unwrap();
    let page = vec![record("sneaky", b.id, 7, Content::Dir, 0o777)];
    let mut pull = Pull::default();
    assert!(
        tree.apply_remote(area, b.id, Seq(7), page, &mut pull)
            .is_err()
    );
    assert_eq!(
        mode(&outside),
        outside_mode,
        "a directory outside DATA changed"
    );
}

#[test]
fn names_that_are_not_utf8_keep_their_bytes_in_conflict_copies() {
    let (peers, _net) = join(2);
    let (a, b) = (&peers[0], &peers[1]);
    let tree = a.fs.tree();
    let area = a.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
    let path = b"d\xff/f\xfe.txt";
    let one = |author: PeerId, n: u8| {
        let (_, mut r) = record(
            "x",
            author,
            1,
            Content::File(realize::ids::BlobHash([n; 32])),
            0o644,
        );
        r.siblings[0].size = 3;
        r.siblings[0].mtime += i64::from(n);
        (path.to_vec(), r)
    };
    // Two concurrent versions: one wins, the other is a conflict copy.
    let page = vec![one(b.id, 1), one(PeerId([9; 32]), 2)];
    let mut pull = Pull::default();
    tree.apply_remote(area, b.id, Seq(2), page, &mut pull)
        .unwrap();
    tree.finish_pull(pull).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let dir = a.fs.lookup(area, OsStr::from_bytes(b"d\xff")).unwrap().ino;
    let mut names = Vec::new();
    let listed = a.fs.readdir(
        dir,
        0,
        |entry, _| {
            names.push(entry.name);
            true
        },
        false,
    );
    assert!(listed.is_ok());
    assert!(names.iter().any(|n| n == b"f\xfe.txt"), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(b"f\xfe.conflict-") && n.ends_with(b".txt")),
        "{names:?}"
    );
    assert!(a.fs.lookup(area, OsStr::new("d\u{fffd}")).is_err());
}

/// Creates `name` in the area of `p` with `bytes`, closed and not
/// recorded yet.
fn unrecorded(p: &cores::Peer, name: &str, bytes: &[u8]) {
    let area = p.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
    let (_, opened) =
        p.fs.create(
            area,
            OsStr::new(name),
            0o644,
            libc::O_WRONLY,
            cores::ME,
            false,
        )
        .unwrap();
    realize::fs::waits::wait_for(|done| p.fs.write(opened.fh, 0, bytes, done)).unwrap();
    p.fs.release(opened.fh).unwrap();
}

#[test]
fn an_unrecorded_file_renamed_over_a_recorded_one_takes_its_version_along() {
    let (peers, _net) = join(2);
    let (a, b) = (&peers[0], &peers[1]);
    let area = a.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
    b.write("y", b"from b", false);
    b.write("w", b"also from b", false);
    a.ctl("consensus", "now").unwrap();
    assert!(a.ino("y").is_some() && a.ino("w").is_some());
    // Renamed over y, then removed before it was ever recorded (soak seed
    // 257): y goes on every peer.
    unrecorded(a, "x", b"new on a");
    a.fs.rename(area, OsStr::new("x"), area, OsStr::new("y"), 0)
        .unwrap();
    a.fs.unlink(area, OsStr::new("y")).unwrap();
    // Renamed over w, then renamed on to z before it was recorded.
    unrecorded(a, "v", b"more on a");
    a.fs.rename(area, OsStr::new("v"), area, OsStr::new("w"), 0)
        .unwrap();
    a.fs.rename(area, OsStr::new("w"), area, OsStr::new("z"), 0)
        .unwrap();
    a.fs.tree().record_closed().unwrap();
    b.ctl("consensus", "now").unwrap();
    a.ctl("consensus", "now").unwrap();
    assert_eq!(a.tree(), b.tree());
    assert!(b.ino("y").is_none(), "{}", b.describe_all());
    assert!(b.ino("w").is_none(), "{}", b.describe_all());
    assert_eq!(b.read(b.ino("z").unwrap()), b"more on a");
}

#[test]
fn an_unreal_file_no_peer_holds_reads_the_blob_this_peer_holds_at_another_path() {
    let (peers, _net) = join(2);
    let (a, b) = (&peers[0], &peers[1]);
    let tree = a.fs.tree();
    let area = a.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
    let bytes = vec![7u8; 100_000];
    a.write("p", &bytes, false);
    // A record of another path with the same blob, held by nobody (as a
    // conflict copy whose bytes a realize took from the cache, soak seed
    // 556): unreal here.
    let (_, mut q) = record(
        "q",
        b.id,
        1,
        Content::File(realize::blob::hash_bytes(&bytes)),
        0o644,
    );
    q.siblings[0].size = bytes.len() as u64;
    let mut pull = Pull::default();
    tree.apply_remote(area, b.id, Seq(1), vec![(b"q".to_vec(), q)], &mut pull)
        .unwrap();
    tree.finish_pull(pull).unwrap();
    // The pull's end cached it from p; a realize of another file of the
    // blob may take that cache file later: evicted here.
    a.dir_ctl("ctl", "evict q").unwrap();
    assert!(a.describe("q").contains("unreal"), "{}", a.describe("q"));
    assert_eq!(a.read(a.ino("q").unwrap()), bytes);
}
