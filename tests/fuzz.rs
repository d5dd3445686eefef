//! Fuzz targets on the stable toolchain (issue "Hostile peers and hard
//! faults", point 5), as proptest properties over bytes and over
//! structured inputs built from bytes: nothing a peer or a control file
//! sends makes realize panic, and a page of records never leaves the
//! area. `scripts/fuzz SECONDS` runs them with fresh seeds until the time
//! is up and counts the inputs tried; CI runs a short pass (the case
//! counts below, or `PROPTEST_CASES`).
//!
//! cargo-afl and honggfuzz need an instrumenting build of the crate (and
//! AFL++ or honggfuzz built from source) in every CI run; proptest's
//! byte-level generators run in the ordinary test build instead.

mod cores;

use std::ffi::OsStr;
use std::sync::Arc;

use proptest::prelude::*;
use realize::ids::{BlobHash, PeerId, Seq};
use realize::net::core::Core;
use realize::net::protocol::{self, BlobRange, Message};
use realize::store::ROOT;
use realize::store::versions::{Content, Holding, PathRecord, Version};
use realize::sync::merge::VersionVector;
use realize::sync::remote::Pull;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Each case opens LMDB environments: keep shrinking short.
        max_shrink_iters: 256,
        // A failure prints its shrunk input: kept as a test by hand.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Decodes `bytes` as frames until they run out, validating each as the
/// network does; returns how many decoded.
fn decode_all(bytes: &[u8]) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut reader = bytes;
        let mut n = 0;
        while let Ok((message, _)) = protocol::recv(&mut reader).await {
            let _ = message.validate();
            n += 1;
        }
        n
    })
}

/// A frame of `message` (length and body), as `protocol::send` writes it.
fn frame(message: &Message) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut out = Vec::new();
        protocol::send(&mut out, message).await.unwrap();
        out
    })
}

/// A path of a few components from a small alphabet, with the odd bad
/// one (`..`, `.ctl`, empty, NUL, `/`).
fn path() -> impl Strategy<Value = Vec<u8>> {
    let component = prop_oneof![
        40 => prop::sample::select(vec!["a", "b", "d", "x", "é", "f.txt"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(b"..".to_vec()),
        1 => Just(b".ctl".to_vec()),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 1..8),
        1 => Just(vec![b'n'; 300]),
    ];
    prop::collection::vec(component, 1..4).prop_map(|c| c.join(&b'/'))
}

fn peer() -> impl Strategy<Value = PeerId> {
    (0u8..4).prop_map(|i| PeerId([i; 32]))
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        3 => (0u8..4).prop_map(|i| Content::File(BlobHash([i; 32]))),
        2 => Just(Content::Dir),
        1 => Just(Content::Deleted),
        2 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Content::Symlink),
        1 => prop::sample::select(vec!["../../..", "/etc", ".."])
            .prop_map(|t| Content::Symlink(t.as_bytes().to_vec())),
    ]
}

fn version() -> impl Strategy<Value = Version<PeerId>> {
    (
        prop::collection::btree_map(peer(), 0u64..6, 0..3),
        content(),
        prop_oneof![Just(0i64), Just(1_790_000_000), any::<i64>()],
        prop_oneof![Just(0u64), Just(5), any::<u64>()],
        any::<u16>(),
        peer(),
    )
        .prop_map(|(vv, content, mtime, size, perm, author)| {
            let vv = vv
                .into_iter()
                .fold(VersionVector::default(), |v, (p, s)| v.with(p, s));
            Version {
                vv,
                content,
                mtime,
                size,
                perm,
                author,
            }
        })
}

fn record() -> impl Strategy<Value = (Vec<u8>, PathRecord)> {
    (
        path(),
        prop::collection::vec(version(), 0..3),
        prop::collection::btree_map(peer(), (any::<u64>(), any::<bool>()), 0..3),
    )
        .prop_map(|(path, siblings, holders)| {
            let holders = holders
                .into_iter()
                .map(|(p, (clock, held))| {
                    let hash = held.then_some(BlobHash([1; 32]));
                    (p, Holding { clock, hash })
                })
                .collect();
            let record = PathRecord {
                siblings,
                holders,
                ..Default::default()
            };
            (path, record)
        })
}

/// Every path under `dir`, with whether it is a symlink (nothing is
/// followed).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any bytes: frames decode or are refused, never a panic.
    #[test]
    fn frames_from_any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    /// A valid page's frame with bytes flipped: decoded and validated, or
    /// refused.
    #[test]
    fn mutated_pages_decode_or_are_refused(
        records in prop::collection::vec(record(), 0..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut bytes = frame(&Message::Page { records, last: Seq(3), more: true });
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= byte;
        }
        decode_all(&bytes);
    }
}

proptest! {
    #![proptest_config(cases(32))]

    /// Pages of any records that pass validation, applied to a core:
    /// applied or refused whole, never a panic, and nothing made, changed
    /// or followed outside the area's directory in the Real.
    #[test]
    fn pages_never_leave_the_area(pages in prop::collection::vec(prop::collection::vec(record(), 1..6), 1..4)) {
        let (peers, _net) = cores::join(2);
        let (a, b) = (&peers[0], &peers[1]);
        let tree = a.fs.tree();
        let area = a.fs.lookup(ROOT, OsStr::new(cores::AREA)).unwrap().ino;
        let data = a.real_dir().parent().unwrap().to_path_buf();
        let outside: Vec<_> = walk(&data)
            .into_iter()
            .filter(|p| !p.starts_with(a.real_dir()))
            .filter(|p| !p.starts_with(data.join("db")))
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).unwrap();
                (p, m.permissions(), m.len())
            })
            .collect();
        let mut pull = Pull::default();
        for (i, page) in pages.into_iter().enumerate() {
            let message = Message::Page { records: page.clone(), last: Seq(i as u64 + 1), more: true };
            if message.validate().is_err() {
                continue;
            }
            let _ = tree.apply_remote(area, b.id, Seq(i as u64 + 1), page, &mut pull);
        }
        let _ = tree.finish_pull(pull);
        // Nothing in the Real outside the area; every symlink in the area
        // is one a record made, inside the area's directory.
        for p in walk(&a.real_dir()) {
            prop_assert!(p.starts_with(a.real_dir().join(cores::AREA)), "{} outside the area", p.display());
        }
        for (p, perm, len) in outside {
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                prop_assert_eq!(m.permissions(), perm, "{}", p.display());
                if m.is_file() && !p.starts_with(data.join("stash")) && !p.starts_with(data.join("cache")) {
                    prop_assert_eq!(m.len(), len, "{}", p.display());
                }
            }
        }
        // The mount still lists its area.
        prop_assert!(a.fs.lookup(ROOT, OsStr::new(cores::AREA)).is_ok());
    }

    /// Every request handler with any fields (as the network would call
    /// them once the message validated, and without validation too):
    /// answered or refused, never a panic.
    #[test]
    fn request_handlers_answer_or_refuse(
        areas in prop::collection::vec(path(), 1..4),
        paths in prop::collection::vec(path(), 1..4),
        since in any::<u64>(),
        offset in any::<u64>(),
        len in prop_oneof![Just(0u64), 1u64..100_000, any::<u64>()],
        hash in (0u8..4).prop_map(|i| BlobHash([i; 32])),
        who in prop_oneof![Just(None), peer().prop_map(Some)],
    ) {
        let (peers, _net) = cores::join(2);
        let (a, b) = (&peers[0], &peers[1]);
        a.write("f", b"some bytes", false);
        let core: Arc<dyn Core> = a.fs.tree().clone();
        let asker = who.unwrap_or(b.id);
        let mut areas = areas;
        areas.push(cores::AREA.as_bytes().to_vec());
        for area in &areas {
            let _ = core.changes(asker, area, Seq(since));
            let _ = core.offers(asker);
            let _ = core.round_needed(asker, area, Seq(since));
            for path in &paths {
                let range = BlobRange { area: area.clone(), path: path.clone(), hash, offset, len: len.min(protocol::MAX_READ) };
                let _ = core.read_blob(asker, &range, false);
                let _ = core.read_blob(asker, &range, true);
                let _ = core.holds(asker, area, path, hash);
            }
            if let Ok(pull) = core.begin_pull(asker, area) {
                let _ = pull.finish();
            }
        }
    }

    /// Any text into every control file: done or refused with an errno,
    /// never a panic; the mount answers afterwards.
    #[test]
    fn control_commands_are_done_or_refused(
        commands in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                (prop::sample::select(vec![
                    "add", "remove", "share", "unshare", "now", "evict", "real", "unreal", "inherit",
                    "fetch", "restore", "connect", "disconnect", "net.timeout", "cache.max",
                    "versions.keep", "consensus.rest", "name",
                ]), prop::collection::vec(prop::sample::select(vec![
                    "area", "f", "x", "-", "0", "1s", "99999999999999999999", "10%", "é", "a b",
                    "5k2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "127.0.0.1:1", "\0",
                ]), 0..4))
                    .prop_map(|(w, args)| format!("{w} {}", args.join(" "))),
            ],
            1..6,
        ),
        files in prop::collection::vec(prop::sample::select(vec![
            "peers", "areas", "config", "consensus", "cache", "errors", "stats", "history",
            "conflicts", "health", "id", "transfers",
        ]), 1..6),
    ) {
        let (peers, _net) = cores::join(1);
        let a = &peers[0];
        a.write("f", b"x", false);
        for (command, file) in commands.iter().zip(files.iter().cycle()) {
            let _ = a.ctl(file, command);
            let _ = a.dir_ctl("ctl", command);
            let _ = a.dir_ctl("mode", command);
        }
        prop_assert!(a.fs.lookup(ROOT, OsStr::new(cores::AREA)).is_ok());
    }
}
