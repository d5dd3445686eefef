//! The core without FUSE: two or three in-process cores joined by the in-memory
//! household ([`realize::net::memory::MemoryNet`]) behind the same
//! [`realize::net::core::Core`] trait the QUIC network uses, driven by
//! random operations (writes, appends to files that may be unreal there,
//! renames, deletes, reads, rounds) and compared with a model of the
//! expected tree and bytes, as mountpoint-s3's reftests do.
//!
//! The model is one tree: an operation on one peer is preceded by a round
//! whenever another peer has changes this one has not seen, so that no
//! two changes are concurrent (concurrent changes and their conflicts are
//! the merge's own property tests). After each round every peer must show
//! exactly the model, files read back byte for byte: the other peer's
//! files are unreal and their bytes come through the household.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::Arc;

use proptest::prelude::*;
use realize::data::DataDir;
use realize::fs::waits::{wait_for, wait_for_read};
use realize::fs::{Caller, Fs};
use realize::ids::PeerId;
use realize::net::core::Core;
use realize::net::memory::MemoryNet;
use realize::store::namespace::Kind;

const ME: Caller = Caller { uid: 0, gid: 0 };
use realize::store::{Ino, ROOT};
const AREA: &str = "area";

/// One peer: its core and its DATA.
struct Peer {
    fs: Arc<Fs>,
    id: PeerId,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start(net: &Arc<MemoryNet>, name: &str) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(&dir.path().join("data"), Some(name)).unwrap();
        let real = data.real();
        let (_, identity, store, lock) = data.into_parts();
        std::mem::forget(lock); // held for the test's life
        let id = identity.peer_id();
        // Neither the recorder (the test records with `record_closed`) nor,
        // unless REALIZE_TEST_LIFE is set, the life thread: with it the
        // peers realize and unrealize files while the operations rename,
        // open and remove them, and this test still finds failures there
        // (ENOENT from an open for writing, or a copy-up that no holder
        // serves, in about one run in eight of 96 cases) that are not
        // fixed yet: see the notes of issues 9 and 10.
        let fs = Fs::new(store, real, id).unwrap();
        if std::env::var_os("REALIZE_TEST_LIFE").is_some() {
            fs.start().unwrap();
        }
        net.join(id, fs.tree().clone() as Arc<dyn Core>);
        Peer { fs, id, _dir: dir }
    }

    /// Runs one command on control file `/.ctl/FILE`.
    fn ctl(&self, file: &str, command: &str) -> Result<(), String> {
        let fs = &self.fs;
        let dir = fs.lookup(ROOT, OsStr::new(".ctl")).unwrap().ino;
        let ino = fs.lookup(dir, OsStr::new(file)).unwrap().ino;
        let opened = wait_for(|done| fs.open(ino, libc::O_WRONLY, false, done)).unwrap();
        let written = wait_for(|done| fs.write(opened.fh, 0, command.as_bytes(), done));
        fs.release(opened.fh).unwrap();
        written
            .map(|_| ())
            .map_err(|e| format!("{file} {command}: {e}"))
    }

    /// The inode at `path` of the area.
    fn ino(&self, path: &str) -> Option<Ino> {
        let mut at = self.fs.lookup(ROOT, OsStr::new(AREA)).ok()?.ino;
        for name in path.split('/') {
            at = self.fs.lookup(at, OsStr::new(name)).ok()?.ino;
        }
        Some(at)
    }

    /// The directory holding `path`, made when missing.
    fn parent(&self, path: &str) -> (Ino, String) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut at = self.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            at = match self.fs.lookup(at, OsStr::new(part)) {
                Ok(attr) => attr.ino,
                Err(_) => {
                    self.fs
                        .mkdir(at, OsStr::new(part), 0o755, 0, ME)
                        .unwrap()
                        .ino
                }
            };
        }
        (at, name.to_string())
    }

    /// Writes `bytes` to `path`: from offset 0 of a new or emptied file,
    /// or at its end (an unreal file is copied up first).
    fn write(&self, path: &str, bytes: &[u8], append: bool) {
        let fs = &self.fs;
        let (fh, offset) = match self.ino(path) {
            Some(ino) => {
                let flags = libc::O_WRONLY | if append { 0 } else { libc::O_TRUNC };
                let opened = wait_for(|done| fs.open(ino, flags, false, done)).unwrap();
                let size = if append {
                    fs.getattr(ino).unwrap().size
                } else {
                    0
                };
                (opened.fh, size)
            }
            None => {
                let (dir, name) = self.parent(path);
                let (_, opened) = fs
                    .create(dir, OsStr::new(&name), 0o644, libc::O_WRONLY, ME, false)
                    .unwrap();
                (opened.fh, 0)
            }
        };
        if !bytes.is_empty() {
            wait_for(|done| fs.write(fh, offset, bytes, done)).unwrap();
        }
        fs.release(fh).unwrap();
        fs.tree().record_closed().unwrap();
    }

    /// What this peer knows of `path`: its state and hash.
    fn describe(&self, path: &str) -> String {
        let Some(ino) = self.ino(path) else {
            return format!("{path}: absent");
        };
        let xattr = |name: &str| {
            self.fs
                .getxattr(ino, OsStr::new(name))
                .map(|v| String::from_utf8_lossy(&v).to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        format!(
            "{path}: inode {ino}, {}, {}",
            xattr("user.realize.state"),
            &xattr("user.realize.hash")[..8]
        )
    }

    fn read(&self, ino: Ino) -> Vec<u8> {
        let fs = &self.fs;
        let opened = wait_for(|done| fs.open(ino, libc::O_RDONLY, false, done)).unwrap();
        let mut bytes = Vec::new();
        loop {
            let offset = bytes.len() as u64;
            let part = wait_for_read(|done| fs.read(opened.fh, offset, 1 << 17, done))
                .unwrap_or_else(|e| {
                    let all = DESCRIBE.with_borrow(|d| d.iter().map(|f| f()).collect::<Vec<_>>());
                    panic!("reading inode {ino} at {offset}: {e}\n{}", all.join("\n"))
                });
            if part.is_empty() {
                break;
            }
            bytes.extend_from_slice(&part);
        }
        fs.release(opened.fh).unwrap();
        bytes
    }

    /// Every file of the area with its bytes, and every directory (as
    /// `None`), by path.
    fn tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let area = self.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
        let mut dirs = vec![(area, String::new())];
        while let Some((dir, prefix)) = dirs.pop() {
            let mut entries = Vec::new();
            self.fs
                .readdir(
                    dir,
                    0,
                    |entry, _| {
                        entries.push(entry);
                        true
                    },
                    false,
                )
                .unwrap();
            for entry in entries {
                let name = String::from_utf8(entry.name).unwrap();
                if name == "." || name == ".." {
                    continue;
                }
                let path = format!("{prefix}{name}");
                match entry.kind {
                    Kind::Dir => {
                        out.insert(path.clone(), None);
                        dirs.push((entry.ino, format!("{path}/")));
                    }
                    _ => {
                        out.insert(path, Some(self.read(entry.ino)));
                    }
                }
            }
        }
        out
    }
}

thread_local! {
    /// Describes every peer's view of every path, for failure messages.
    static DESCRIBE: std::cell::RefCell<Vec<Box<dyn Fn() -> String>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Paths the operations pick from.
const PATHS: [&str; 6] = ["f0", "f1", "f2", "d0/f0", "d0/f1", "d1/f0"];

#[derive(Clone, Debug)]
enum Op {
    /// Create or overwrite a file.
    Write {
        peer: usize,
        path: usize,
        bytes: Vec<u8>,
    },
    /// Append to a file (copy-up where it is unreal).
    Append {
        peer: usize,
        path: usize,
        bytes: Vec<u8>,
    },
    /// Rename a file over whatever is at the target.
    Rename { peer: usize, from: usize, to: usize },
    /// Delete a file.
    Delete { peer: usize, path: usize },
    /// Read a file and compare it with the model.
    Read { peer: usize, path: usize },
    /// A round from one peer.
    Round { peer: usize },
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300),
        // Several 64 KiB pieces, the last one short.
        1 => (1usize..4, any::<u8>()).prop_map(|(n, seed)| {
            (0..n * 70_000).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let path = 0..PATHS.len();
    prop_oneof![
        3 => (0..3usize, path.clone(), bytes()).prop_map(|(peer, path, bytes)| Op::Write { peer, path, bytes }),
        2 => (0..3usize, path.clone(), bytes()).prop_map(|(peer, path, bytes)| Op::Append { peer, path, bytes }),
        2 => (0..3usize, path.clone(), path.clone()).prop_map(|(peer, from, to)| Op::Rename { peer, from, to }),
        1 => (0..3usize, path.clone()).prop_map(|(peer, path)| Op::Delete { peer, path }),
        2 => (0..3usize, path).prop_map(|(peer, path)| Op::Read { peer, path }),
        1 => (0..3usize).prop_map(|peer| Op::Round { peer }),
    ]
}

/// The expected tree: files by path (directories follow from them, and
/// stay once made).
#[derive(Default)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: std::collections::BTreeSet<String>,
}

impl Model {
    fn tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out: BTreeMap<_, _> = self.dirs.iter().map(|d| (d.clone(), None)).collect();
        for (path, bytes) in &self.files {
            out.insert(path.clone(), Some(bytes.clone()));
        }
        out
    }

    fn note_dirs(&mut self, path: &str) {
        if let Some((dir, _)) = path.rsplit_once('/') {
            self.dirs.insert(dir.to_string());
        }
    }
}

struct Household {
    peers: Vec<Peer>,
    /// Peers that have not seen the last change.
    behind: std::collections::BTreeSet<usize>,
    _net: Arc<MemoryNet>,
}

impl Household {
    /// `n` peers that know each other, sharing one area between every
    /// pair.
    fn new(n: usize) -> Household {
        // RUST_LOG=realize=debug to follow a failing case.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let net = MemoryNet::new().unwrap();
        let peers: Vec<Peer> = ["a", "b", "c"][..n]
            .iter()
            .map(|name| Peer::start(&net, name))
            .collect();
        peers[0]
            .fs
            .mkdir(ROOT, OsStr::new(AREA), 0o755, 0, ME)
            .unwrap();
        for (i, p) in peers.iter().enumerate() {
            for (j, q) in peers.iter().enumerate().filter(|(j, _)| *j != i) {
                p.ctl("peers", &format!("add {} - p{j}", q.id)).unwrap();
            }
        }
        for p in &peers {
            // Every byte is in this process: a read that waits is a bug,
            // found sooner.
            p.ctl("config", "net.timeout 1s").unwrap();
            for q in peers.iter().filter(|q| q.id != p.id) {
                p.ctl("areas", &format!("share {AREA} {}", q.id)).unwrap();
            }
        }
        let views: Vec<_> = peers.iter().map(|p| (p.fs.clone(), p.id)).collect();
        DESCRIBE.with_borrow_mut(|d| {
            d.clear();
            for (i, (fs, id)) in views.into_iter().enumerate() {
                d.push(Box::new(move || {
                    let p = Peer {
                        fs: fs.clone(),
                        id,
                        _dir: tempfile::tempdir().unwrap(),
                    };
                    let lines: Vec<String> = PATHS.iter().map(|path| p.describe(path)).collect();
                    format!("peer {i}: {}", lines.join("; "))
                }));
            }
        });
        Household {
            peers,
            behind: Default::default(),
            _net: net,
        }
    }

    /// A round from `peer` with every other: it has seen everything after.
    fn round(&mut self, peer: usize) {
        self.peers[peer].ctl("consensus", "now").unwrap();
        self.behind.remove(&peer);
    }

    /// Before a change or a read on `peer`: a round when it is behind.
    fn before(&mut self, peer: usize) {
        if self.behind.contains(&peer) {
            self.round(peer);
        }
    }

    fn changed(&mut self, peer: usize) {
        self.behind = (0..self.peers.len()).filter(|p| *p != peer).collect();
    }

    /// Brings every peer up to date, then compares each with the model.
    fn check(&mut self, model: &Model) -> Result<(), TestCaseError> {
        while let Some(peer) = self.behind.first().copied() {
            self.round(peer);
        }
        let want = model.tree();
        for (i, peer) in self.peers.iter().enumerate() {
            let tree = peer.tree();
            prop_assert_eq!(
                tree.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "peer {} lists",
                i
            );
            for (path, bytes) in &tree {
                let expected = &want[path];
                prop_assert!(
                    bytes == expected,
                    "peer {} has other bytes at {}: {:?} bytes, {:?} expected",
                    i,
                    path,
                    bytes.as_ref().map(Vec::len),
                    expected.as_ref().map(Vec::len)
                );
            }
        }
        Ok(())
    }
}

fn run(peers: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Household::new(peers);
    h.round(0);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Write { peer, path, bytes } => {
                let peer = peer % peers;
                h.before(peer);
                h.peers[peer].write(PATHS[path], &bytes, false);
                model.note_dirs(PATHS[path]);
                model.files.insert(PATHS[path].into(), bytes);
                h.changed(peer);
            }
            Op::Append { peer, path, bytes } => {
                let peer = peer % peers;
                if !model.files.contains_key(PATHS[path]) {
                    continue;
                }
                h.before(peer);
                h.peers[peer].write(PATHS[path], &bytes, true);
                if let Some(file) = model.files.get_mut(PATHS[path]) {
                    file.extend_from_slice(&bytes);
                }
                h.changed(peer);
            }
            Op::Rename { peer, from, to } => {
                let peer = peer % peers;
                if from == to || !model.files.contains_key(PATHS[from]) {
                    continue;
                }
                h.before(peer);
                let p = &h.peers[peer];
                let (old_dir, old_name) = p.parent(PATHS[from]);
                let (new_dir, new_name) = p.parent(PATHS[to]);
                p.fs.rename(
                    old_dir,
                    OsStr::new(&old_name),
                    new_dir,
                    OsStr::new(&new_name),
                    0,
                )
                .unwrap();
                model.note_dirs(PATHS[to]);
                let bytes = model.files.remove(PATHS[from]).unwrap_or_default();
                model.files.insert(PATHS[to].into(), bytes);
                h.changed(peer);
            }
            Op::Delete { peer, path } => {
                let peer = peer % peers;
                if !model.files.contains_key(PATHS[path]) {
                    continue;
                }
                h.before(peer);
                let p = &h.peers[peer];
                let (dir, name) = p.parent(PATHS[path]);
                p.fs.unlink(dir, OsStr::new(&name)).unwrap();
                model.files.remove(PATHS[path]);
                h.changed(peer);
            }
            Op::Read { peer, path } => {
                let peer = peer % peers;
                h.before(peer);
                let p = &h.peers[peer];
                let got = p.ino(PATHS[path]).map(|ino| p.read(ino));
                prop_assert_eq!(
                    got.as_ref(),
                    model.files.get(PATHS[path]),
                    "{}",
                    PATHS[path]
                );
            }
            Op::Round { peer } => {
                h.round(peer % peers);
                h.check(&model)?;
            }
        }
    }
    h.check(&model)
}

proptest! {
    // Failing cases are not saved to a file: theirs hold blobs of up to
    // 210 KB; a failure prints its minimal case instead.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn two_cores_show_the_model_after_every_round(ops in proptest::collection::vec(op(), 1..40)) {
        run(2, ops)?;
    }

    #[test]
    fn three_cores_show_the_model_after_every_round(ops in proptest::collection::vec(op(), 1..40)) {
        run(3, ops)?;
    }
}
