//! In-process cores for tests/core.rs and tests/core_converge.rs: peers
//! made of an [`Fs`] each, joined by the in-memory household
//! ([`realize::net::memory::MemoryNet`]) behind the same
//! [`realize::net::core::Core`] trait the QUIC network uses, and driven
//! through the calls the FUSE adapter makes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::Arc;

use realize::data::DataDir;
use realize::fs::waits::{wait_for, wait_for_read};
use realize::fs::{Caller, Fs};
use realize::ids::PeerId;
use realize::net::core::Core;
use realize::net::identity::Identity;
use realize::net::memory::MemoryNet;
use realize::store::namespace::Kind;
use realize::store::{Ino, ROOT};

/// The caller of every operation: root.
pub const ME: Caller = Caller { uid: 0, gid: 0 };
/// The one area the peers share.
pub const AREA: &str = "area";

/// One peer: its core and its DATA.
#[derive(Clone)]
pub struct Peer {
    pub fs: Arc<Fs>,
    pub id: PeerId,
    _dir: Arc<tempfile::TempDir>,
}

impl Peer {
    pub fn start(net: &Arc<MemoryNet>, name: &str) -> Peer {
        let (peer, _) = Peer::open(name);
        net.join(peer.id, peer.fs.tree().clone() as Arc<dyn Core>);
        peer
    }

    /// A core of its own, in no household yet, and its identity (for a
    /// network of its own: tests/hostile.rs).
    pub fn open(name: &str) -> (Peer, Identity) {
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
        let peer = Peer {
            fs,
            id,
            _dir: Arc::new(dir),
        };
        (peer, identity)
    }

    /// The Real of this peer: `DATA/real`.
    pub fn real_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data/real")
    }

    /// Runs one command on control file `/.ctl/FILE`.
    pub fn ctl(&self, file: &str, command: &str) -> Result<(), String> {
        self.ctl_in(ROOT, file, command)
    }

    /// Runs one command on the area's control file `AREA/.ctl/FILE`.
    pub fn dir_ctl(&self, file: &str, command: &str) -> Result<(), String> {
        let area = self.fs.lookup(ROOT, OsStr::new(AREA)).unwrap().ino;
        self.ctl_in(area, file, command)
    }

    /// Writes `command` to control file `.ctl/FILE` of directory `dir`.
    fn ctl_in(&self, dir: Ino, file: &str, command: &str) -> Result<(), String> {
        let fs = &self.fs;
        let ctl = fs.lookup(dir, OsStr::new(".ctl")).unwrap().ino;
        let ino = fs.lookup(ctl, OsStr::new(file)).unwrap().ino;
        let opened = wait_for(|done| fs.open(ino, libc::O_WRONLY, false, done))
            .map_err(|e| format!("{file}: {e}"))?;
        let written = wait_for(|done| fs.write(opened.fh, 0, command.as_bytes(), done));
        fs.release(opened.fh).unwrap();
        written
            .map(|_| ())
            .map_err(|e| format!("{file} {command}: {e}"))
    }

    /// The inode at `path` of the area.
    pub fn ino(&self, path: &str) -> Option<Ino> {
        let mut at = self.fs.lookup(ROOT, OsStr::new(AREA)).ok()?.ino;
        for name in path.split('/') {
            at = self.fs.lookup(at, OsStr::new(name)).ok()?.ino;
        }
        Some(at)
    }

    /// The directory holding `path`, made when missing.
    pub fn parent(&self, path: &str) -> (Ino, String) {
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
    pub fn write(&self, path: &str, bytes: &[u8], append: bool) {
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
    pub fn describe(&self, path: &str) -> String {
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

    /// Every entry this peer lists in the area: [`Peer::describe`].
    pub fn describe_all(&self) -> String {
        self.hashes()
            .keys()
            .map(|path| self.describe(path))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every file of the area with its hash (`user.realize.hash`, no byte
    /// read), and every directory (as `None`), by path.
    pub fn hashes(&self) -> BTreeMap<String, Option<String>> {
        self.walk(|ino| {
            self.fs
                .getxattr(ino, OsStr::new("user.realize.hash"))
                .map(|v| String::from_utf8_lossy(&v).to_string())
                .unwrap_or_else(|e| format!("({e})"))
        })
    }

    /// Reads the whole file `ino`.
    pub fn read(&self, ino: Ino) -> Vec<u8> {
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
    pub fn tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        self.walk(|ino| self.read(ino))
    }

    /// Every entry of the area by path: `file(ino)` for a file (or a
    /// symbolic link), `None` for a directory.
    fn walk<T>(&self, file: impl Fn(Ino) -> T) -> BTreeMap<String, Option<T>> {
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
                        out.insert(path, Some(file(entry.ino)));
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

/// `n` peers (at most three) that know each other, sharing [`AREA`]
/// between every pair, with the household that joins them (keep it alive
/// as long as the peers).
pub fn join(n: usize) -> (Vec<Peer>, Arc<MemoryNet>) {
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
    // Weak: a failure message must not keep a core (and the household's
    // runtime, through its commands) alive after the test.
    let views: Vec<_> = peers
        .iter()
        .map(|p| (Arc::downgrade(&p.fs), p.id, Arc::clone(&p._dir)))
        .collect();
    DESCRIBE.with_borrow_mut(|d| {
        d.clear();
        for (i, (fs, id, dir)) in views.into_iter().enumerate() {
            d.push(Box::new(move || match fs.upgrade() {
                Some(fs) => {
                    let p = Peer {
                        fs,
                        id,
                        _dir: Arc::clone(&dir),
                    };
                    format!("peer {i}: {}", p.describe_all())
                }
                None => format!("peer {i}: gone"),
            }));
        }
    });
    (peers, net)
}
